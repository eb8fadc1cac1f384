"""Sphinx glue for the study book.

* The pages that summarise run records (the front page with the claims table, the scoreboard,
  the runs page) are re-read on every build, so they always reflect ``results/``.
* A study chapter whose newest run record was computed with another ``reprolib`` than the
  checkout's (or that has no record at all) gets a warning at its top: its outputs come from
  the execution cache and are never shown as current.
* A study chapter for which ``results/`` holds runs at another profile than the book's (``full``
  runs made with papermill on the real data) lists them at its top, newest first, with their
  numbers; the scoreboard shows them too.

Study chapters are re-read on every build (from the execution cache: nothing is re-executed), so
both notes always reflect ``results/`` and the checkout.
"""
from __future__ import annotations

from docutils import nodes

ALWAYS_REREAD = ("report", "scoreboard", "runs", "data")
STUDY_PREFIX = "notebooks/"


def _chapter_status(docname: str) -> tuple[bool, str]:
    """(stale, message) for the study notebook ``docname``."""
    from reprolib import study

    notebook = docname[len(STUDY_PREFIX):] + ".ipynb"
    records = [r for r in study.load_records() if r.get("notebook") == notebook and r.get("profile") == "mini"
               and r.get("variant", "miniature") == "miniature"]
    if not records:
        return True, (f"No run record of {notebook} was found in results/: the outputs on this page "
                      "come from the execution cache and cannot be traced to a run. Rebuild after "
                      "clearing the cache (make clean-book) to recompute them.")
    newest = max(records, key=lambda r: r.get("started_at", ""))
    if newest.get("stale"):
        current = study.code_fingerprint()["library"]
        return True, (f"STALE: the results on this page were computed on {newest.get('started_at')} "
                      f"with reprolib {newest.get('code', {}).get('library')}, but the checkout's "
                      f"reprolib is {current}. They are not current: re-run the notebook "
                      "(make clean-book && make book) to recompute them.")
    return False, ""


def _other_runs(docname: str, limit: int = 3) -> list[dict]:
    """Records of the study notebook ``docname`` at profiles other than mini and smoke, newest first."""
    from reprolib import study

    notebook = docname[len(STUDY_PREFIX):] + ".ipynb"
    records = [r for r in study.load_records() if r.get("notebook") == notebook
               and r.get("profile") not in ("mini", "smoke")]
    return sorted(records, key=lambda r: r.get("started_at", ""), reverse=True)[:limit]


def _other_runs_note(records: list[dict], max_rows: int = 12) -> nodes.Element:
    note = nodes.note()
    note += nodes.paragraph(text=f"Runs of this notebook found in results/ at another profile than the "
                                 f"book's mini ({len(records)} shown, newest first). The page below is the "
                                 "mini run; the scoreboard shows only the runs of the paper's recipe or the "
                                 "authors' weights, the others (variant debug) are on the runs page.")
    for rec in records:
        flag = " — STALE: computed with other code than the checkout's" if rec.get("stale") else ""
        data = rec.get("dataset", {}).get("name", "?")
        items = nodes.bullet_list()
        for m in [m for m in rec.get("metrics", []) if m.get("value") is not None][:max_rows]:
            items += nodes.list_item("", nodes.paragraph(
                text=f"{m.get('model', '')} · {m.get('metric', '')}: {m['value']}"))
        note += nodes.paragraph(text=f"{rec.get('run_id')} (profile {rec.get('profile')}, variant "
                                     f"{rec.get('variant', '?')}, data {data}, "
                                     f"started {rec.get('started_at')}){flag}")
        note += items
    note["classes"].append("other-profile-runs")
    return note


def _outdated(app, env, added, changed, removed):
    # re-read from the execution cache (never re-executed): the notes follow results/ and the code
    return [d for d in env.found_docs
            if (d in ALWAYS_REREAD or d.startswith(STUDY_PREFIX)) and d not in added and d not in changed]


def _mark_stale(app, doctree):
    docname = app.env.docname
    if not docname.startswith(STUDY_PREFIX):
        return
    notes = []
    stale, message = _chapter_status(docname)
    if stale:
        warning = nodes.warning()
        warning += nodes.paragraph(text=message)
        warning["classes"].append("stale-results")
        notes.append(warning)
    others = _other_runs(docname)
    if others:
        notes.append(_other_runs_note(others))
    section = next(iter(doctree.findall(nodes.section)), None)
    for note in reversed(notes):
        if section is not None:
            # after the title, before the content
            index = 1 if section.children and isinstance(section.children[0], nodes.title) else 0
            section.insert(index, note)
        else:
            doctree.insert(0, note)


def setup(app):
    app.connect("env-get-outdated", _outdated)
    app.connect("doctree-read", _mark_stale)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
