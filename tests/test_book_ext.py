"""The book's Sphinx extension (``book/_ext/reprobook.py``): a study chapter whose run record was
computed with another ``reprolib`` than the checkout's is marked stale, never shown as current."""
import importlib.util
import json
from pathlib import Path

import pytest

from reprolib import study

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def reprobook():
    spec = importlib.util.spec_from_file_location("reprobook", REPO / "book" / "_ext" / "reprobook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(root: Path, run_id: str, library: str, started: str, profile: str = "mini") -> None:
    folder = root / "sid" / run_id
    folder.mkdir(parents=True)
    folder.joinpath("record.json").write_text(json.dumps({
        "study": "sid", "notebook": "sid.ipynb", "profile": profile, "started_at": started,
        "code": {"library": library}, "metrics": []}))


def test_chapter_without_a_record_is_flagged(reprobook, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    stale, message = reprobook._chapter_status("notebooks/sid")
    assert stale and "No run record of sid.ipynb" in message


def test_chapter_is_current_only_when_its_newest_record_matches_the_checkout(reprobook, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    current = study.code_fingerprint()["library"]
    _record(tmp_path, "mini-old", "0" * 64, "2026-01-01T00:00:00")
    _record(tmp_path, "mini-new", current, "2026-02-01T00:00:00")
    assert reprobook._chapter_status("notebooks/sid") == (False, "")
    # a newer record computed with other code: the chapter's outputs are no longer current
    _record(tmp_path, "mini-newer", "f" * 64, "2026-03-01T00:00:00")
    stale, message = reprobook._chapter_status("notebooks/sid")
    assert stale and message.startswith("STALE") and current in message
    # full-profile records do not decide the status of the mini chapter
    _record(tmp_path, "full-x", current, "2026-04-01T00:00:00", profile="full")
    assert reprobook._chapter_status("notebooks/sid")[0]


def test_changing_one_library_line_changes_the_fingerprint(tmp_path, monkeypatch):
    """What staleness is judged on: any edit of a reprolib source file changes the library hash."""
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(REPO / "reprolib", copy / "reprolib", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(study, "repo_root", lambda: copy)
    before = study.code_fingerprint()["library"]
    metrics = copy / "reprolib" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n# one more line\n")
    assert study.code_fingerprint()["library"] != before


def test_full_runs_are_listed_on_their_chapter(reprobook, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    current = study.code_fingerprint()["library"]
    _record(tmp_path, "mini-a", current, "2026-02-01T00:00:00")
    assert reprobook._other_runs("notebooks/sid") == []
    _record(tmp_path, "full-a", current, "2026-03-01T00:00:00", profile="full")
    rec = json.loads((tmp_path / "sid" / "full-a" / "record.json").read_text())
    rec["metrics"] = [{"key": "sid/sony/psnr", "model": "SID U-Net", "metric": "PSNR (dB)", "value": 28.1}]
    (tmp_path / "sid" / "full-a" / "record.json").write_text(json.dumps(rec))
    runs = reprobook._other_runs("notebooks/sid")
    assert len(runs) == 1 and runs[0]["profile"] == "full"
    text = reprobook._other_runs_note(runs).astext()
    assert "SID U-Net · PSNR (dB): 28.1" in text and "profile full" in text


def test_pages_that_read_the_records_are_in_the_book_and_reread_on_every_build(reprobook):
    pages = {p.stem for p in (REPO / "book").glob("*.md") if "load_records" in p.read_text()}
    assert {"report", "scoreboard", "runs"} <= pages
    assert pages <= set(reprobook.ALWAYS_REREAD), "a page showing results/ would be served from the cache"
    toc = (REPO / "book" / "_toc.yml").read_text()
    assert "root: report" in toc and all(f"file: {page}" in toc for page in pages - {"report"})


def test_config_cites_only_files_that_exist():
    import re

    cited = re.findall(r"book/[\w/.]+\.\w+", (REPO / "_config.yml").read_text())
    assert [c for c in cited if not (REPO / c).exists()] == []


def test_the_scoreboard_page_has_a_section_per_study():
    from reprolib import report

    page = (REPO / "book" / "scoreboard.md").read_text()
    for name, title in report.STUDY_TITLES.items():
        assert f'study_table("{name}")' in page, f"scoreboard.md has no table for {name}"
        assert f"## {title.replace('*', chr(92) + '*')}" in page, f"scoreboard.md has no heading {title!r}"
    notebooks = {p.stem for p in (REPO / "notebooks").glob("*.ipynb")}
    assert notebooks <= set(report.STUDY_TITLES), "a study notebook without a title (report.STUDY_TITLES)"
    assert {study for study, _ in report.CLAIMS.values()} <= notebooks, "a claim whose evidence chapter is missing"
