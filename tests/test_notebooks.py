"""Every study notebook: committed stripped, a valid parameters cell, and a smoke run through
papermill (``profile='smoke'``) that writes a run record."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_source_is_stripped_and_has_a_parameters_cell(path):
    cells = _cells(path)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        f"{path.name}: commit notebooks with outputs stripped"
    first = code[0]
    assert "parameters" in first.get("metadata", {}).get("tags", []), \
        f"{path.name}: the first code cell must be tagged 'parameters'"
    import ast

    source = "".join(first["source"])
    tree = ast.parse(source)
    for node in tree.body:  # plain literals only
        assert isinstance(node, ast.Assign), f"{path.name}: parameters cell holds only assignments"
        ast.literal_eval(node.value)
    assert "#" not in source, f"{path.name}: the parameters' help lives once, in the study's parameter table"
    second = "".join(code[1]["source"])
    assert "study.start(" in second and "study.parameter_frame(" in second, \
        f"{path.name}: the second cell validates with study.start and shows study.parameter_frame"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_smoke_run(path, tmp_path, monkeypatch):
    import papermill as pm

    results = tmp_path / "results"
    monkeypatch.setenv("REPROLIB_RESULTS", str(results))
    out = tmp_path / path.name
    t0 = time.perf_counter()
    pm.execute_notebook(str(path), str(out), parameters={"profile": "smoke"}, cwd=str(path.parent),
                        kernel_name="python3", progress_bar=False, log_output=False)
    seconds = time.perf_counter() - t0
    records = list(results.glob("*/*/record.json"))
    assert records, f"{path.name}: the smoke run wrote no run record"
    rec = json.loads(records[0].read_text())
    assert rec["profile"] == "smoke" and rec["metrics"]
    _check_claims(rec)
    _check_glued_numbers(path, out)
    print(f"{path.name}: smoke run {seconds:.1f} s")


def _check_claims(rec):
    """A study that tests one of the papers' claims records a verdict on it (the front page reads it)."""
    from reprolib import report

    expected = {c for c, (study, _) in report.CLAIMS.items() if study == rec["study"]}
    got = {c["claim"]: c for c in rec.get("claims", [])}
    assert expected <= set(got), f"{rec['study']}: no verdict recorded for {sorted(expected - set(got))}"
    for c in got.values():
        assert c["verdict"] in report.VERDICTS and c["measure"], c


def _check_glued_numbers(source, executed):
    """Every value the narrative formats as a number (``{glue:text}`name:.2f```) must be glued as
    one: myst-nb parses the glued text/plain, and ``np.float64(…)`` fails the book's build."""
    import re

    formatted = {m.group(1) for c in _cells(source) if c["cell_type"] == "markdown"
                 for m in re.finditer(r"\{glue:text\}`([A-Za-z0-9_]+):[^`]+`", "".join(c["source"]))}
    glued = {}
    for c in _cells(executed):
        for o in c.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                glued[name] = o["data"].get("application/papermill.record/text/plain", "")
    assert formatted <= set(glued), f"{source.name}: formatted but never glued: {sorted(formatted - set(glued))}"
    referenced = {m.group(1) for c in _cells(source) if c["cell_type"] == "markdown"
                  for m in re.finditer(r"\{glue:text\}`([A-Za-z0-9_]+)[:`]", "".join(c["source"]))}
    assert referenced <= set(glued), f"{source.name}: referenced but never glued: {sorted(referenced - set(glued))}"
    for name in formatted:
        try:
            float(glued[name])
        except ValueError:
            raise AssertionError(f"{source.name}: glue {name!r} is formatted as a number but its text is "
                                 f"{glued[name]!r}; glue a Python float") from None


@pytest.mark.parametrize("path", NOTEBOOKS[:1], ids=lambda p: p.name)
def test_unknown_parameter_fails_the_notebook(path, tmp_path, monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    with pytest.raises(PapermillExecutionError, match="unknown parameter"):
        pm.execute_notebook(str(path), str(tmp_path / "out.ipynb"),
                            parameters={"profile": "smoke", "no_such_parameter": 1},
                            cwd=str(path.parent), kernel_name="python3", progress_bar=False)
