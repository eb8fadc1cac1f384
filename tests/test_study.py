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
