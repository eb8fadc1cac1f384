"""Sphinx glue for the study book.

* The pages that summarise run records (the scoreboard, the runs page) are re-read on every
  build, so they always reflect ``results/``.
* A study chapter whose newest run record was computed with another ``reprolib`` than the
  checkout's (or that has no record at all) is re-read and gets a warning at its top: its
  outputs come from the execution cache and are never shown as current.
"""
from __future__ import annotations

from docutils import nodes

ALWAYS_REREAD = ("report", "runs", "data")
STUDY_PREFIX = "notebooks/"


def _chapter_status(docname: str) -> tuple[bool, str]:
    """(stale, message) for the study notebook ``docname``."""
    from reprolib import study

    notebook = docname[len(STUDY_PREFIX):] + ".ipynb"
    records = [r for r in study.load_records() if r.get("notebook") == notebook and r.get("profile") == "mini"]
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


def _outdated(app, env, added, changed, removed):
    docs = [d for d in env.found_docs if d in ALWAYS_REREAD]
    for d in env.found_docs:
        if d.startswith(STUDY_PREFIX) and d not in added and d not in changed:
            try:
                stale, _ = _chapter_status(d)
            except Exception:  # never break the build over the status check
                stale = False
            if stale:
                docs.append(d)
    return docs


def _mark_stale(app, doctree):
    docname = app.env.docname
    if not docname.startswith(STUDY_PREFIX):
        return
    stale, message = _chapter_status(docname)
    if not stale:
        return
    warning = nodes.warning()
    warning += nodes.paragraph(text=message)
    warning["classes"].append("stale-results")
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None:
        # after the title, before the content
        index = 1 if section.children and isinstance(section.children[0], nodes.title) else 0
        section.insert(index, warning)
    else:
        doctree.insert(0, warning)


def setup(app):
    app.connect("env-get-outdated", _outdated)
    app.connect("doctree-read", _mark_stale)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
