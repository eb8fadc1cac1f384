"""reprolib.report: the scoreboard is the run records' numbers next to the published ones."""
import json

import pandas as pd
import pytest

from reprolib import report, study


def _record(tmp_path, study_name, profile, metrics, stale=False, claims=None, overrides=None, started=None):
    params = {"profile": profile, "seed": 0, **(overrides or {})}
    run = study.Run(study_name, {**params, "overridden": list(overrides or [])}, notebook=f"{study_name}.ipynb")
    path = study.write_record(run, metrics=metrics, dataset={"name": "x", "fingerprint": "f"}, claims=claims)
    if stale or started:
        rec = json.loads(path.read_text())
        rec["code"]["library"] = "0" * 16 if stale else rec["code"]["library"]
        rec["started_at"] = started or rec["started_at"]
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


def _psnr(value):
    return [{"key": "sid/sony/psnr", "model": "SID U-Net", "metric": "PSNR (dB)", "value": value}]


def _sid_claim(gap):
    return [report.claim("sid/beats-traditional", gap, "PSNR gain over the traditional pipeline (dB)")]


def test_a_test_run_never_replaces_the_result(tmp_path, monkeypatch):
    """A newer 1-epoch ``full`` run (variant ``debug``) is on the runs page only: the scoreboard, the
    claims table, the headline, the README and the figure keep the ``paper`` run, or show nothing."""
    paper = tmp_path / "paper"
    monkeypatch.setenv("REPROLIB_RESULTS", str(paper))
    _record(paper, "sid", "full", _psnr(28.5), claims=_sid_claim(6.2), started="2026-01-01T00:00:00+00:00")
    debug = _record(paper, "sid", "full", _psnr(10.71), claims=_sid_claim(-1.5), overrides={"epochs": 1},
                    started="2026-02-01T00:00:00+00:00")
    records = study.load_records(paper)
    assert sorted(r["variant"] for r in records) == ["debug", "paper"]
    board = report.scoreboard(records)
    assert board.set_index("key").loc["sid/sony/psnr", "ours (full)"] == 28.5
    assert 10.71 not in board[["ours (mini)", "ours (full)", "authors' weights (full)"]].stack().tolist()
    assert "10.71" not in report.readme_summary(records) and "28.5" in report.readme_summary(records)
    assert report.headline(records).set_index("key").loc["sid/sony/psnr", "ours (full)"] == 28.5
    assert report.comparable(board).set_index("key").loc["sid/sony/psnr", "ours"] == 28.5
    row = report.claims_table(records).set_index("claim").loc[report.CLAIMS["sid/beats-traditional"][1]]
    assert row["verdict (full)"] == "holds (1 seed)" and "-1.5" not in row["measured"]
    others = report.other_runs(records)
    assert list(others["variant"]) == ["debug"] and list(others["overridden"]) == ["epochs=1"]
    assert list(others["run"]) == [json.loads(debug.read_text())["run_id"]]
    # only the debug run at full: "ours (full)" is empty, the claim "not run" at full
    only = tmp_path / "only"
    (only / "sid").mkdir(parents=True)
    debug.parent.rename(only / "sid" / debug.parent.name)
    records = study.load_records(only)
    board = report.scoreboard(records)
    assert board.empty and report.comparable(board).empty and "10.71" not in report.readme_summary(records)
    assert set(report.claims_table(records)["verdict (full)"]) == {"not run"}


def test_the_authors_weights_are_their_own_column(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    lle = [{"key": "lle/sony/psnr", "model": "Lamba & Mitra", "metric": "PSNR (dB)", "value": 27.0}]
    _record(tmp_path, "lle_rdb", "full", lle, started="2026-01-01T00:00:00+00:00")
    _record(tmp_path, "lle_rdb", "full", [{**lle[0], "value": 28.6}], overrides={"weights": "official"},
            claims=[report.claim("lle/rdb-star-beats-rdb", None, "PSNR gain (dB)")], started="2026-02-01T00:00:00+00:00")
    records = study.load_records(tmp_path)
    row = report.scoreboard(records).set_index("key").loc["lle/sony/psnr"]
    # neither hides the other; the delta vs paper is ours
    assert (row["ours (full)"], row["authors' weights (full)"]) == (27.0, 28.6)
    assert row["delta vs paper"] == pytest.approx(27.0 - 28.66) and row["scale"] == "full"
    summary = report.readme_summary(records)
    assert "authors' weights (full)" in summary and "28.6" in summary
    official = report.claims_table(records, columns=["authors' weights (full)"]).set_index("claim")
    assert official.loc["RDB* beats the canonical RDB", "verdict (authors' weights (full))"] == "not testable here"
    assert set(report.claims_table(records)["verdict (full)"]) == {"not run"}  # not ours
    assert report.other_runs(records).empty


def test_a_full_record_is_never_labelled_mini(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    _record(tmp_path, "pynet", "full", [
        {"key": "pynet/zurich/psnr", "model": "PyNET (ours)", "metric": "PSNR (dB)", "value": 20.5}], stale=True)
    _record(tmp_path, "lle_rdb", "full", [{"key": "lle/sony/psnr", "model": "Lamba & Mitra", "metric": "PSNR (dB)",
                                           "value": 28.6}], overrides={"weights": "official"})
    records = study.load_records(tmp_path)
    board = report.scoreboard(records)
    assert "mini" not in set(board["scale"]) and board["ours (mini)"].isna().all()
    lines = [line.split(" | ") for line in report.readme_summary(records).splitlines() if "PyNET" in line]
    assert lines[0][5] == "" and lines[0][6].startswith("20.5 (stale)")  # ours (mini) empty, ours (full) stale
    assert set(report.runs_table(records)["variant"]) == {"paper", "official-weights"}
