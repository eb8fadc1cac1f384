"""reprolib.report: the scoreboard is the run records' numbers next to the published ones."""
import json

import pandas as pd
import pytest

from reprolib import report, study


def _record(tmp_path, study_name, profile, metrics, stale=False, claims=None):
    params = {"profile": profile, "seed": 0}
    run = study.Run(study_name, {**params, "overridden": []}, notebook=f"{study_name}.ipynb")
    path = study.write_record(run, metrics=metrics, dataset={"name": "x", "fingerprint": "f"}, claims=claims)
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
    # a mini number is a miniature on synthetic data: no delta against the paper's real-data number
    assert psnr["paper"] == 28.88 and pd.isna(psnr["delta vs paper"]) and psnr["scale"] == "mini"
    assert report.style_scoreboard(board).loc[board["key"] == "sid/sony/psnr", "delta vs paper"].item() == ""
    assert "28.55" in psnr["public reproductions"]
    ap = board[board["key"] == "genisp/nikon/ap"].iloc[0]
    assert ap["paper"] is None or ap["paper"] != ap["paper"]  # not available, never invented
    assert "not available" in report.style_scoreboard(board).loc[board["key"] == "genisp/nikon/ap", "paper"].item()
    assert 5.0 not in board["ours (mini)"].tolist()


def test_delta_vs_paper_only_for_full_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    _record(tmp_path, "sid", "mini", SID_MINI)
    _record(tmp_path, "sid", "full", [{"key": "sid/sony/psnr", "model": "SID U-Net", "metric": "PSNR (dB)",
                                       "value": 28.5}])
    board = report.scoreboard(study.load_records(tmp_path))
    psnr = board[board["key"] == "sid/sony/psnr"].iloc[0]
    assert (psnr["ours (mini)"], psnr["ours (full)"], psnr["scale"]) == (20.97, 28.5, "full")
    assert psnr["delta vs paper"] == pytest.approx(28.5 - 28.88)
    assert pd.isna(board[board["key"] == "sid/sony/ssim"].iloc[0]["delta vs paper"])  # mini only


#: an efficiency record: parameters, GMACs and a speed-up are like for like at any scale; seconds are not
EFFICIENCY_MINI = [
    {"key": "efficiency/sid/params_m", "model": "SID U-Net", "metric": "Parameters (M)", "value": 7.760268},
    {"key": "efficiency/lle/gmacs_sony", "model": "Lamba & Mitra", "metric": "GMACs", "value": 59.5751},
    {"key": "efficiency/speedup_cpu", "model": "Lamba & Mitra", "metric": "CPU speed-up (x)", "value": 13.089},
    {"key": "efficiency/sid/cpu_s", "model": "SID U-Net", "metric": "CPU inference (s)", "value": 25.5755},
    {"key": "efficiency/sid/memory_gb", "model": "SID U-Net", "metric": "Memory (GB)", "value": 3.03}]


def test_the_front_page_figure_compares_like_for_like_only(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    _record(tmp_path, "sid", "mini", SID_MINI)
    _record(tmp_path, "efficiency", "mini", EFFICIENCY_MINI)
    board = report.scoreboard(study.load_records(tmp_path))
    rows = report.comparable(board)
    assert sorted(rows["key"]) == ["efficiency/lle/gmacs_sony", "efficiency/sid/params_m", "efficiency/speedup_cpu"]
    assert rows.set_index("key").loc["efficiency/speedup_cpu", "ours / paper"] == pytest.approx(13.089 / 8.0)
    # a full run of SID on the real data joins the figure; its mini miniature never does
    _record(tmp_path, "sid", "full", [{"key": "sid/sony/psnr", "model": "SID U-Net", "metric": "PSNR (dB)",
                                       "value": 28.5}])
    rows = report.comparable(report.scoreboard(study.load_records(tmp_path)))
    assert "sid/sony/psnr" in set(rows["key"]) and "sid/sony/ssim" not in set(rows["key"])
    fig = report.comparable_figure(report.scoreboard(study.load_records(tmp_path)))
    assert len(fig.axes[0].patches) == len(rows)


def test_claims_table_reads_the_verdicts_from_the_records(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    bn = report.claim("sid/batchnorm-hurts", 3.06, "PSNR gap (dB)")
    _record(tmp_path, "sid_batchnorm", "mini", [], claims=[bn])
    table = report.claims_table(study.load_records(tmp_path))
    assert list(table["claim"]) == [text for _, text in report.CLAIMS.values()]  # one row per claim, in order
    row = table.set_index("claim").loc["BatchNorm hurts SID's U-Net"]
    assert row["verdict (mini)"] == "holds (1 seed)" and row["verdict (full)"] == "not run"
    assert row["measured"] == "PSNR gap (dB): 3.06 (mini)" and row["evidence"] == "notebooks/sid_batchnorm"
    others = table[table["claim"] != "BatchNorm hurts SID's U-Net"]
    assert set(others["verdict (mini)"]) == {"not run"} and set(others["verdict (full)"]) == {"not run"}
    # the record's verdict changes: so does the table (the same run id replaces its record)
    _record(tmp_path, "sid_batchnorm", "mini", [], claims=[report.claim("sid/batchnorm-hurts", -0.4, "PSNR gap (dB)")])
    row = report.claims_table(study.load_records(tmp_path)).set_index("claim").loc["BatchNorm hurts SID's U-Net"]
    assert row["verdict (mini)"] == "does not hold (1 seed)"
    # several seeds inside their spread, at full scale, from a stale record
    _record(tmp_path, "lle_rdb", "full", [], stale=True, claims=[
        report.claim("lle/rdb-star-beats-rdb", 0.05, "PSNR gain (dB)", seeds=3, spread=0.2)])
    row = report.claims_table(study.load_records(tmp_path)).set_index("claim").loc["RDB* beats the canonical RDB"]
    assert row["verdict (full)"] == "within noise (3 seeds, stale)" and row["verdict (mini)"] == "not run"


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


def test_the_front_page_builds_before_any_run():
    claims = report.claims_table([])
    assert len(claims) == len(report.CLAIMS) and set(claims["verdict (mini)"]) == {"not run"}
    board = report.scoreboard([])
    assert board.empty and report.headline([]).empty and report.comparable(board).empty
    assert not report.comparable_figure(board).axes[0].patches
