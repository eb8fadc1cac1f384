"""reprolib.study: parameter validation, run records, staleness."""
import json

import pytest

from reprolib import study
from reprolib.study import Parameter

SPEC = {
    "profile": Parameter((str,), choices=study.PROFILES),
    "seed": Parameter((int,), profiles={"smoke": 0, "mini": 0, "full": 0}),
    "epochs": Parameter((int, None), profiles={"smoke": 1, "mini": 20, "full": 4000}, check=study.positive),
    "lr": Parameter((float,), profiles={"smoke": 1e-3, "mini": 1e-3, "full": 1e-4}),
    "norm": Parameter((str,), profiles={"smoke": "none", "mini": "none", "full": "none"},
                      choices=("none", "single", "double")),
    "data_root": Parameter((str,), profiles={"smoke": "", "mini": "", "full": ""}),
}


def test_profile_defaults_and_overrides():
    p = study.resolve_parameters("t", {"profile": "full", "epochs": None, "lr": 1}, SPEC)
    assert p["epochs"] == 4000 and p["lr"] == 1.0 and isinstance(p["lr"], float)
    assert p["overridden"] == ["lr"]
    p = study.resolve_parameters("t", {"profile": "smoke"}, SPEC)
    assert p["epochs"] == 1 and p["norm"] == "none"


def test_unknown_and_bad_values_raise_all_at_once():
    with pytest.raises(ValueError) as e:
        study.resolve_parameters("sid", {"profile": "mini", "epoch": 3, "norm": "batch", "seed": "0",
                                         "epochs": -1}, SPEC)
    msg = str(e.value)
    assert "unknown parameter 'epoch' (did you mean 'epochs'?)" in msg
    assert "norm must be one of" in msg and "seed must be int" in msg and "epochs: must be > 0" in msg
    with pytest.raises(ValueError, match="profile must be one of"):
        study.resolve_parameters("sid", {"profile": "huge"}, SPEC)
    with pytest.raises(ValueError, match="seed must be int"):
        study.resolve_parameters("sid", {"profile": "mini", "seed": True}, SPEC)


def test_namespace_filter():
    import math

    ns = {"In": [], "Out": {}, "_i1": "", "get_ipython": print, "math": math, "profile": "mini", "seed": 1}
    assert study.parameters_from_namespace(ns) == {"profile": "mini", "seed": 1}


def test_record_round_trip_and_staleness(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    params = study.resolve_parameters("t", {"profile": "smoke"}, SPEC)
    run = study.Run("toy", params)
    assert run.dir.parent == tmp_path / "toy"
    path = study.write_record(run, metrics=[{"metric": "PSNR", "value": 20.5}],
                              dataset={"name": "x", "fingerprint": "abc"})
    rec = json.loads(path.read_text())
    assert rec["metrics"][0]["value"] == 20.5 and rec["parameters"]["epochs"] == 1
    assert rec["code"]["library"] == study.code_fingerprint()["library"]
    assert "torch" in rec["environment"]["packages"]
    (records,) = study.load_records(tmp_path)
    assert records["stale"] is False
    rec["code"]["library"] = "0" * 16
    path.write_text(json.dumps(rec))
    (records,) = study.load_records(tmp_path)
    assert records["stale"] is True
    # the same configuration maps to the same run folder (resume, replace)
    assert study.Run("toy", params).dir == run.dir


def test_parameter_table_infers_types_and_carries_checks():
    spec = study.parameter_table(
        *study.common_parameters("a folder"),
        ("epochs", 1, 22, 4000, "epochs", study.positive),
        ("lr", 1e-3, 1e-3, 1e-4, "learning rate"),
        ("tile", None, None, None, "tile side", {"types": (int, None)}),
        ("norm", "none", "none", "none", "normalisation", ("none", "single")),
    )
    assert list(spec)[:4] == ["profile", "data_root", "device", "seed"]
    assert spec["epochs"].types == (int,) and spec["epochs"].profiles["full"] == 4000
    assert spec["tile"].types == (int, None) and spec["norm"].choices == ("none", "single")
    p = study.resolve_parameters("t", {"profile": "full", "lr": 1, "tile": 512}, spec)
    assert p["epochs"] == 4000 and p["lr"] == 1.0 and p["tile"] == 512 and p["device"] == "cpu"
    with pytest.raises(ValueError) as e:
        study.resolve_parameters("t", {"profile": "mini", "epochs": 0, "device": "gpu0", "norm": "x"}, spec)
    assert "epochs: must be > 0" in str(e.value) and "not a torch device" in str(e.value)
    assert "norm must be one of" in str(e.value)
    cpu_only = study.parameter_table(*study.common_parameters("unused", device_choices=("cpu",)))
    with pytest.raises(ValueError, match="device must be one of"):
        study.resolve_parameters("t", {"profile": "mini", "device": "cuda"}, cpu_only)


def test_parameter_frame_shows_the_profiles_and_this_run():
    spec = study.parameter_table(("epochs", 1, 22, 4000, "epochs of training"))
    P = study.resolve_parameters("t", {"profile": "mini", "epochs": 3}, spec)
    frame = study.parameter_frame(spec, P)
    assert frame.loc["epochs", "full (paper)"] == "4000" and frame.loc["epochs", "mini"] == "22"
    assert frame.loc["epochs", "this run"] == "3 *" and frame.loc["profile", "this run"] == "'mini'"


def test_start_validates_seeds_and_opens_the_run(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    spec = study.parameter_table(*study.common_parameters("a folder"))
    P, run = study.start("toy", {"profile": "smoke", "seed": 3, "In": []}, spec)
    first = torch.rand(1)
    study.start("toy", {"profile": "smoke", "seed": 3}, spec)
    assert torch.equal(first, torch.rand(1)) and P["seed"] == 3 and run.dir.parent == tmp_path / "toy"
    with pytest.raises(ValueError, match="unknown parameter 'sead'"):
        study.start("toy", {"profile": "smoke", "sead": 3}, spec)


def test_claim_verdicts_follow_the_numbers():
    from reprolib import report

    assert report.claim("sid/batchnorm-hurts", 1.3, "dB")["verdict"] == "holds"
    assert report.claim("sid/batchnorm-hurts", -0.2, "dB")["verdict"] == "does not hold"
    assert report.claim("sid/batchnorm-hurts", 0.1, "dB", seeds=3, spread=0.3)["verdict"] == "within noise"
    assert report.claim("sid/batchnorm-hurts", 0.5, "dB", seeds=3, spread=0.3)["verdict"] == "holds"
    assert report.claim("sid/batchnorm-hurts", None, "dB")["verdict"] == "not testable here"
    assert report.claim("lle/faster-than-sid", 7.0, "×", threshold=6.4)["verdict"] == "holds"
    assert report.claim("lle/faster-than-sid", 6.0, "×", threshold=6.4)["verdict"] == "does not hold"
    with pytest.raises(KeyError, match="unknown claim"):
        report.claim("sid/nonsense", 1.0, "dB")


def test_published_value_of_an_absent_key():
    from reprolib import published

    assert published.published_value("sid/sony/psnr") == 28.88
    with pytest.raises(KeyError, match="no published paper value"):
        published.published_value("sid/no/such/key")
    assert published.published_value("sid/no/such/key", strict=False) is None
