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


#: a mini SID record's metrics (headline PSNR and an SSIM that only the scoreboard shows)
SID_MINI = [{"key": "sid/sony/psnr", "model": "SID U-Net", "metric": "PSNR (dB)", "value": 20.97},
            {"key": "sid/sony/ssim", "model": "SID U-Net", "metric": "SSIM", "value": 0.502}]


def test_scoreboard_numbers_equal_the_records(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    _record(tmp_path, "sid", "mini", SID_MINI)
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


def test_readme_summary_is_the_records_headline_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    _record(tmp_path, "sid", "mini", SID_MINI)
    _record(tmp_path, "pynet", "mini", [
        {"key": "pynet/zurich/psnr", "model": "PyNET (ours)", "metric": "PSNR (dB)", "value": 17.7172}], stale=True)
    summary = report.readme_summary(study.load_records(tmp_path))
    lines = [line for line in summary.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(lines) == 2  # headline keys only (SSIM is on the scoreboard, not in the README)
    assert lines[0].split(" | ")[3] == "28.88" and lines[0].split(" | ")[5] == "20.97" and "PyNET" in lines[1]
    assert "28.55" in lines[0].split(" | ")[4]  # the public reproductions' values
    assert "17.72 (stale)" in lines[1]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_START}\nold\n{report.README_END}\nrest\n")
    assert report.update_readme(readme, summary) and not report.update_readme(readme, summary)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "old" not in text and summary in text
    with pytest.raises(ValueError, match="markers"):
        report.update_readme(_no_markers(tmp_path), summary)


def _no_markers(tmp_path):
    p = tmp_path / "plain.md"
    p.write_text("no block here\n")
    return p


def test_the_readme_carries_the_generated_block():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert report.README_START in text and report.README_END in text
    assert text.index(report.README_START) < 3000, "the results table belongs on the README's first screen"
