"""reprolib.report: the scoreboard is the run records' numbers next to the published ones."""
import json

import pytest

from reprolib import report, study


def _record(tmp_path, study_name, profile, metrics, stale=False):
    params = {"profile": profile, "seed": 0}
    run = study.Run(study_name, {**params, "overridden": []}, notebook=f"{study_name}.ipynb")
    path = study.write_record(run, metrics=metrics, dataset={"name": "x", "fingerprint": "f"})
    if stale:
        rec = json.loads(path.read_text())
        rec["code"]["library"] = "0" * 16
        path.write_text(json.dumps(rec))
    return path


def test_scoreboard_numbers_equal_the_records(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    _record(tmp_path, "sid", "mini", [
        {"key": "sid/sony/psnr", "model": "SID U-Net", "metric": "PSNR (dB)", "value": 20.97},
        {"key": "sid/sony/ssim", "model": "SID U-Net", "metric": "SSIM", "value": 0.502}])
    _record(tmp_path, "genisp", "mini", [
        {"key": "genisp/nikon/ap", "model": "GenISP", "metric": "AP", "value": 0.103}], stale=True)
    _record(tmp_path, "sid", "smoke", [  # smoke runs never reach the scoreboard
        {"key": "sid/sony/psnr", "model": "SID U-Net", "metric": "PSNR (dB)", "value": 5.0}])
    board = report.scoreboard(study.load_records(tmp_path))
    for rec in study.load_records(tmp_path):
        if rec["profile"] != "mini":
            continue
        for m in rec["metrics"]:
            row = board[(board["key"] == m["key"]) & (board["model"] == m["model"])]
            assert len(row) == 1
            assert row["ours (mini)"].item() == m["value"]
            assert bool(row["stale"].item()) == rec["stale"]
    psnr = board[board["key"] == "sid/sony/psnr"].iloc[0]
    assert psnr["paper"] == 28.88 and psnr["delta vs paper"] == pytest.approx(20.97 - 28.88)
    assert "28.55" in psnr["public reproductions"]
    ap = board[board["key"] == "genisp/nikon/ap"].iloc[0]
    assert ap["paper"] is None or ap["paper"] != ap["paper"]  # not available, never invented
    assert "not available" in report.style_scoreboard(board).loc[board["key"] == "genisp/nikon/ap", "paper"].item()
    assert 5.0 not in board["ours (mini)"].tolist()
