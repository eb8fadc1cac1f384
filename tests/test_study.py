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


def _spec():
    return study.parameter_table(
        *study.common_parameters("a folder"),
        ("epochs", 1, 22, 4000, "epochs", study.positive),
        ("weights", "trained", "trained", "trained", "trained or official", ("trained", "official")),
        ("keep_last", 2, 2, 2, "checkpoints kept", {"recipe": False}),
        ("steps", [2] * 2, [150] * 2, None, "steps per level", {"types": (list, None)}))


def test_variant_is_computed_from_the_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    spec = _spec()
    assert [name for name, p in spec.items() if not p.recipe] == [
        "data_root", "device", "seed", "deterministic", "keep_last"]

    def variant(**given):
        P = study.resolve_parameters("t", given, spec)
        return study.Run("toy", P, spec=spec).variant

    assert (variant(profile="full"), variant(profile="mini"), variant(profile="smoke")) == ("paper", "miniature", "smoke")
    # where and how it runs is not the recipe; the profile's own value given explicitly changes nothing
    assert variant(profile="full", seed=3, device="cpu", keep_last=5, data_root="/d", epochs=4000) == "paper"
    assert variant(profile="full", epochs=1) == "debug" and variant(profile="mini", steps=[1, 1]) == "debug"
    assert variant(profile="full", weights="official") == "official-weights"
    assert variant(profile="full", weights="official", epochs=1) == "debug"
    # the record carries it, and exactly the names that were given
    P = study.resolve_parameters("t", {"profile": "full", "epochs": 1, "device": None, "seed": None}, spec)
    rec = json.loads(study.write_record(study.Run("toy", P, spec=spec), metrics=[], dataset={}).read_text())
    assert rec["variant"] == "debug" and rec["overridden"] == ["epochs"]


def test_the_notebooks_parameters_cells_override_nothing():
    """Every name of a study notebook's ``parameters`` cell is None but ``profile``: ``overridden`` then lists
    exactly what papermill injected."""
    from pathlib import Path

    notebooks = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
        namespace = {}
        exec("".join(cell["source"]), namespace)
        given = study.parameters_from_namespace(namespace)
        assert {k for k, v in given.items() if v is not None} == {"profile"}, path.name
        assert {"device", "seed"} <= set(given), path.name
        P = study.resolve_parameters("t", {k: v for k, v in given.items() if k in _spec()}, _spec())
        assert P["overridden"] == [], path.name


def test_the_record_keeps_the_code_the_run_started_with(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    run = study.Run("toy", study.resolve_parameters("t", {"profile": "smoke"}, SPEC))
    started_with = study.code_fingerprint()
    monkeypatch.setattr(study, "code_fingerprint", lambda notebook=None: {"library": "edited while it ran"})
    rec = json.loads(study.write_record(run, metrics=[], dataset={}).read_text())
    assert rec["code"] == started_with


def test_start_checks_the_device_and_resolves_determinism(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    seeded = []
    monkeypatch.setattr(study, "seed_everything", lambda seed, deterministic: seeded.append(deterministic))
    spec = study.parameter_table(*study.common_parameters("a folder"))
    P, run = study.start("toy", {"profile": "smoke"}, spec)
    assert P["deterministic"] is True and seeded == [True]
    rows = study.parameter_table(*study.TRAINING_ROWS)
    assert rows["num_workers"].profiles["full"] == 4 and not rows["num_workers"].recipe and rows["max_steps"].recipe
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"CUDA is not available.*-p device cpu.*CUDA driver"):
        study.start("toy", {"profile": "full", "device": "cuda"}, spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"'cuda:2' does not exist.*2 CUDA device"):
        study.start("toy", {"profile": "full", "device": "cuda:2"}, spec)
    assert seeded == [True]  # nothing was seeded (nor decoded) before the check
    P, run = study.start("toy", {"profile": "full", "device": "cuda:1"}, spec)
    assert P["deterministic"] is False and seeded[-1] is False
    P, run = study.start("toy", {"profile": "full", "device": "cuda", "deterministic": True}, spec)
    assert P["deterministic"] is True and seeded[-1] is True
    rec = json.loads(study.write_record(run, metrics=[], dataset={}).read_text())
    assert rec["parameters"]["deterministic"] is True and rec["variant"] == "paper"


def test_a_list_given_as_text_says_how_to_pass_it():
    spec = study.parameter_table(("epochs", 1, 22, 4000, "epochs"),  # as pynet_study's lists per level
                                 ("steps", [2] * 2, [150] * 2, None, "steps per level", {"types": (list, None)}))
    with pytest.raises(ValueError) as e:
        study.resolve_parameters("pynet", {"profile": "mini", "steps": "[1, 2]"}, spec)
    assert "-y \"steps: [1, 2]\"" in str(e.value) and "YAML" in str(e.value)
    with pytest.raises(ValueError) as e:
        study.resolve_parameters("pynet", {"profile": "mini", "epochs": "[1, 2]"}, spec)
    assert "-y" not in str(e.value)  # an int parameter: no list hint
