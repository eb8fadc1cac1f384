"""scripts/compare_results.py: two results/ trees, value by value (the "no number changes" check)."""
import importlib.util
import io
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compare_results():
    spec = importlib.util.spec_from_file_location("compare_results", REPO / "scripts" / "compare_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(root: Path, study: str, run_id: str, metrics: list, started: str = "2026-01-01T00:00:00",
           profile: str = "smoke") -> None:
    folder = root / study / run_id
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({
        "study": study, "profile": profile, "notebook": f"{study}.ipynb", "started_at": started,
        "metrics": metrics}))


SID = [{"key": "sid/sony/psnr", "model": "SID U-Net", "metric": "PSNR (dB)", "value": 20.41},
       {"key": "sid/sony/ssim", "model": "SID U-Net", "metric": "SSIM", "value": 0.5},
       {"model": "traditional", "metric": "PSNR (dB)", "value": 15.0},  # no key: model + metric
       {"key": "efficiency/sid/cpu_s", "model": "SID U-Net", "metric": "CPU inference (s)", "value": 25.5}]


def test_identical_trees_compare_equal(compare_results, tmp_path):
    _write(tmp_path / "a", "sid", "smoke-1", SID)
    _write(tmp_path / "b", "sid", "smoke-1", SID)
    out = io.StringIO()
    totals = compare_results.compare(tmp_path / "a", tmp_path / "b", out=out)
    assert totals["compared"] == 4 and totals["differ"] == 0
    assert compare_results.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0


def test_a_changed_value_fails_and_is_listed(compare_results, tmp_path):
    _write(tmp_path / "a", "sid", "smoke-1", SID)
    changed = [dict(m) for m in SID]
    changed[0]["value"] = 20.410001
    changed[2]["value"] = 15.5
    changed[3]["value"] = 30.1  # timing: differs run to run
    changed.append({"key": "sid/sony/extra", "model": "SID U-Net", "metric": "x", "value": 1.0})
    # an older record of the same notebook on side B is not the one compared
    _write(tmp_path / "b", "sid", "smoke-old", SID, started="2025-01-01T00:00:00")
    _write(tmp_path / "b", "sid", "smoke-1", changed)
    out = io.StringIO()
    totals = compare_results.compare(tmp_path / "a", tmp_path / "b", out=out)
    text = out.getvalue()
    assert (totals["compared"], totals["differ"], totals["one_side_rows"]) == (4, 3, 1)
    assert "differs: sid/sony/psnr: A = 20.41, B = 20.410001" in text
    assert "differs: traditional · PSNR (dB)" in text and "only in B: sid/sony/extra" in text
    assert compare_results.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    # timing rows ignored and a tolerance: only the real change is left
    totals = compare_results.compare(tmp_path / "a", tmp_path / "b", tolerance=1e-5,
                                     ignore="cpu_s|seconds|latency|memory|GB", out=io.StringIO())
    assert (totals["compared"], totals["differ"], totals["ignored"]) == (3, 1, 1)
    assert compare_results.main([str(tmp_path / "a"), str(tmp_path / "b"), "--ignore-timing",
                                 "--ignore", "psnr|PSNR"]) == 0  # both patterns apply


def test_records_on_one_side_are_reported(compare_results, tmp_path):
    _write(tmp_path / "a", "sid", "smoke-1", SID)
    _write(tmp_path / "a", "pynet", "smoke-1", [{"key": "pynet/psnr", "model": "PyNET", "metric": "PSNR", "value": 1.0}])
    _write(tmp_path / "b", "sid", "smoke-1", SID)
    out = io.StringIO()
    totals = compare_results.compare(tmp_path / "a", tmp_path / "b", out=out)
    assert totals["one_side_records"] == 1 and "pynet (smoke, pynet.ipynb): record only in A" in out.getvalue()
    args = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert compare_results.main(args) == 0 and compare_results.main([*args, "--strict"]) == 1
