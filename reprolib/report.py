"""The book's tables and figures: the claims and their verdicts, the headline numbers, the
scoreboard, the runs. Our numbers (run records, :mod:`reprolib.study`) meet the published ones
(:mod:`reprolib.published`) by ``key``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from .published import PUBLISHED_FILE, published, published_table, published_value  # noqa: F401 (the notebooks' entry)
from .study import variant

__all__ = ["published", "published_value", "published_table", "CLAIMS", "VERDICTS", "claim",
           "claims_table", "latest_records", "record_variant", "RESULTS", "scoreboard", "style_scoreboard", "headline",
           "comparable", "comparable_figure", "runs_table", "other_runs", "readme_summary", "update_readme"]

# --------------------------------------------------------------------------- claims

#: each paper's claim that a study tests: id → (study, the claim in one line); the verdicts come
#: from the run records (:func:`claim`)
CLAIMS = {
    "sid/beats-traditional": ("sid", "SID's U-Net beats the traditional pipeline on dark raw images"),
    "sid/batchnorm-hurts": ("sid_batchnorm", "BatchNorm hurts SID's U-Net"),
    "lle/rdb-star-beats-rdb": ("lle_rdb", "RDB* beats the canonical RDB"),
    "lle/l1-ms-ssim-best": ("lle_loss", "L1 + MS-SSIM is the best training loss"),
    "lle/faster-than-sid": ("efficiency", "Lamba & Mitra's network is about 8× faster than SID's on a CPU"),
    "genisp/beats-conventional": ("genisp", "GenISP beats a conventional ISP on an unseen camera"),
    "pynet/beats-naive": ("pynet", "PyNET beats the naive rendering of the raw input"),
}

#: the verdict words, in the order the front page explains them
VERDICTS = ("holds", "does not hold", "within noise", "not testable here")


def claim(claim_id: str, difference: float | None, measure: str, seeds: int = 1,
          spread: float | None = None, threshold: float = 0.0) -> dict:
    """The verdict on one claim: a run record's ``claims`` row, whose ``verdict`` a chapter glues.

    Args:
        claim_id: a key of :data:`CLAIMS`.
        difference: the measured quantity in the claim's direction (e.g. a PSNR gap in dB, or a
            speed-up ratio), or ``None`` when this run could not test it.
        measure: what ``difference`` is, in words with units. seeds: how many seeds it averages.
        spread: its spread over the seeds (e.g. standard deviation); ignored with one seed.
        threshold: the value ``difference`` must exceed (0: any improvement; 8: "8× faster").

    Returns ``{"claim", "verdict", "measure", "value", "seeds"}``, verdict ``"holds"``
    (``difference > threshold``), ``"does not hold"``, ``"within noise"`` (several seeds and
    ``|difference − threshold| ≤ spread``) or ``"not testable here"`` (``difference`` None).

    >>> claim("sid/batchnorm-hurts", 1.31, "PSNR gap (dB)")["verdict"]
    'holds'
    >>> claim("sid/batchnorm-hurts", 0.1, "PSNR gap (dB)", seeds=3, spread=0.2)["verdict"]
    'within noise'
    """
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim {claim_id!r}; known: {', '.join(CLAIMS)}")
    if difference is None:
        verdict = "not testable here"
    elif seeds > 1 and spread is not None and abs(difference - threshold) <= spread:
        verdict = "within noise"
    else:
        verdict = "holds" if difference > threshold else "does not hold"
    return {"claim": claim_id, "verdict": verdict, "measure": measure,
            "value": None if difference is None else round(float(difference), 4), "seeds": int(seeds)}


# --------------------------------------------------------------------------- scoreboard

#: each study's title in the book's tables, in the book's order
STUDY_TITLES = {"sid": "SID (Chen et al. 2018)", "sid_batchnorm": "SID BatchNorm ablation",
                "lle_rdb": "Lamba & Mitra: RDB / RDB*", "lle_loss": "Lamba & Mitra: loss ablation",
                "efficiency": "Efficiency (Lamba & Mitra Table 1)", "genisp": "GenISP (Morawski et al. 2022)",
                "pynet": "PyNET (Ignatov et al. 2020)"}

#: the profiles the book reports (``smoke`` runs are tests, never shown)
SCALES = ("mini", "full")
#: the results the book shows: column → (profile, variant) of its records. Our numbers are the
#: profiles' own recipes; any other record (``debug``, ``smoke``…) is only on the runs page (:func:`other_runs`)
RESULTS = {"mini": ("mini", "miniature"), "full": ("full", "paper"),
           "authors' weights (full)": ("full", "official-weights")}
#: the scoreboard's columns of :data:`RESULTS`
OURS = {c: f"ours ({c})" if c in SCALES else c for c in RESULTS}


def record_variant(r: dict) -> str:
    """The record's ``variant``, computed for records written before it was stored."""
    return r.get("variant") or variant(r.get("parameters") or {"profile": r.get("profile")}, r.get("overridden", []))


def _column(r: dict) -> str | None:
    return next((c for c, pv in RESULTS.items() if pv == (r.get("profile"), record_variant(r))), None)


def latest_records(records: list[dict], columns: Sequence[str] | None = None) -> list[dict]:
    """The book's one selection rule (scoreboard, claims table, headline, README, figure): the newest
    record (``started_at``) per (study, notebook, profile, variant); with ``columns`` (keys of
    :data:`RESULTS`), only those results — so a ``debug`` run never replaces a ``paper`` one."""
    wanted = {RESULTS[c] for c in columns} if columns is not None else None
    best: dict = {}
    for r in records:
        k = (r.get("study"), r.get("notebook"), r.get("profile"), record_variant(r))
        if (wanted is None or k[2:] in wanted) and (k not in best or r.get("started_at", "") > best[k].get("started_at", "")):
            best[k] = r
    return sorted(best.values(), key=lambda r: (r.get("study", ""), r.get("profile", "")))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "not available" if v is None else str(v)


def claims_table(records: list[dict], columns: Sequence[str] = SCALES) -> pd.DataFrame:
    """The front page's claims table, one row per claim of :data:`CLAIMS` with the verdicts of the
    :func:`latest_records` of ``columns`` (keys of :data:`RESULTS`; default our runs at mini and full):
    ``claim``; ``verdict (<column>)`` (e.g. ``"holds (1 seed)"``, ``"within noise (3 seeds, stale)"``,
    ``"not testable here"``, ``"not run"``); ``measured`` (``"<measure>: <value> (<column>)"``);
    ``evidence`` (``notebooks/<study>``)."""
    found = {(c.get("claim"), _column(rec)): (rec, c)  # the newest record wins
             for rec in sorted(latest_records(records, columns), key=lambda r: r.get("started_at", ""))
             for c in rec.get("claims") or []}
    rows = []
    for claim_id, (study_name, text) in CLAIMS.items():
        row, measured = {"claim": text}, []
        for col in columns:
            rec, c = found.get((claim_id, col), (None, None))
            if c is None:
                row[f"verdict ({col})"] = "not run"
                continue
            n = int(c.get("seeds") or 1)
            notes = [] if c["verdict"] == "not testable here" else [f"{n} seed{'s' if n != 1 else ''}"]
            notes += ["stale"] if rec.get("stale") else []
            row[f"verdict ({col})"] = c["verdict"] + (f" ({', '.join(notes)})" if notes else "")
            if c.get("value") is not None:
                measured.append(f"{c.get('measure', '')}: {_fmt(c['value'])} ({col})")
        rows.append({**row, "measured": "; ".join(measured), "evidence": f"notebooks/{study_name}"})
    return pd.DataFrame(rows, columns=["claim", *[f"verdict ({c})" for c in columns], "measured", "evidence"])


def scoreboard(records: list[dict]) -> pd.DataFrame:
    """Every reproduced number (keyed ``metrics`` rows of the :func:`latest_records` of :data:`RESULTS`)
    next to ``published.yaml``: study, metric, model, paper, public reproductions, ours (mini), ours
    (full), authors' weights (full), delta vs paper (ours at ``full`` only), scale (of ``ours``:
    ``"full"``, ``"mini"``, or ``""``), stale, key. Numbers are floats or None."""
    rows: dict = {}
    for rec in latest_records(records, RESULTS):
        for m in rec.get("metrics", []):
            key = m.get("key")
            if not key or m.get("value") is None or m.get("scoreboard") is False:
                continue
            row = rows.setdefault((rec["study"], key, m.get("model", "")), {
                "metric": m.get("metric", ""), **dict.fromkeys(OURS.values()), "stale": False})
            row[OURS[_column(rec)]] = float(m["value"])
            row["stale"] = row["stale"] or bool(rec.get("stale"))
    out = []
    for (study_name, key, model), row in rows.items():
        paper = [p for p in published(kind="paper") if p["key"] == key]
        repro = [p for p in published(kind="reproduction") if p["key"] == key]
        paper_value = paper[0]["value"] if paper else None
        full = row["ours (full)"]
        out.append({
            "study": STUDY_TITLES.get(study_name, study_name), "metric": row["metric"], "model": model,
            "paper": paper_value, "paper source": paper[0]["source"] if paper else "",
            "public reproductions": "; ".join(f"{_fmt(p['value'])} ({p['model']})" for p in repro),
            **{c: row[c] for c in OURS.values()},
            "delta vs paper": full - paper_value if full is not None and paper_value is not None else None,
            "scale": "full" if full is not None else "mini" if row["ours (mini)"] is not None else "",
            "stale": row["stale"], "key": key,
        })
    cols = ["study", "metric", "model", "paper", "paper source", "public reproductions", *OURS.values(),
            "delta vs paper", "scale", "stale", "key"]
    return pd.DataFrame(out, columns=cols)


def style_scoreboard(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`scoreboard` to show: numbers formatted, missing values spelled out, stale flagged."""
    view = table.drop(columns=["key"]).copy()
    for c in ("paper", *OURS.values(), "delta vs paper"):
        view[c] = [(_fmt(v) if v is not None and v == v else ("not available" if c == "paper" else ""))
                   for v in table[c]]
    view["stale"] = ["STALE: computed with older code" if s else "" for s in table["stale"]]
    return view


#: scoreboard keys that compare like for like with the paper at any scale: they do not depend on
#: the data (parameter counts, GMACs) or are ratios of two networks timed side by side (speed-up)
LIKE_FOR_LIKE = re.compile(r"^efficiency/(?:[^/]+/)?(?:params_m|gmacs_|speedup_)")


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    """The :func:`scoreboard` rows with a paper value that are :data:`LIKE_FOR_LIKE` or ``full``,
    with ``ours`` (full if run, else mini) and ``ours / paper``."""
    has_paper = pd.to_numeric(table["paper"], errors="coerce").fillna(0) != 0
    t = table[has_paper & (table["key"].str.contains(LIKE_FOR_LIKE) | table["ours (full)"].notna())].copy()
    t["ours"] = pd.to_numeric(t["ours (full)"].where(t["ours (full)"].notna(), t["ours (mini)"]), errors="coerce")
    t = t[t["ours"].notna()]
    t["ours / paper"] = t["ours"] / t["paper"].astype(float)
    return t


def comparable_figure(table: pd.DataFrame):
    """The front page's figure: ours / paper as bars for the :func:`comparable` rows."""
    t = comparable(table)
    fig, ax = plt.subplots(figsize=(8, 0.32 * max(len(t), 3) + 1.3))
    y = range(len(t))
    ax.barh(y, t["ours / paper"], color=["tab:blue" if s == "full" else "tab:green" for s in t["scale"]])
    for i, (r, o, p) in enumerate(zip(t["ours / paper"], t["ours"], t["paper"])):
        ax.annotate(f" ours {_fmt(float(o))}, paper {_fmt(float(p))}", (r, i), va="center", fontsize=7)
    ax.set_xlim(0, 1.45 * max([1.0, *t["ours / paper"]]))
    ax.axvline(1.0, color="k", lw=1)
    if t.empty:
        ax.text(0.5, 0.5, "no like-for-like number has been measured yet", ha="center", transform=ax.transAxes)
    ax.set_yticks(list(y), [f"{mo.split(' (')[0]} · {m}"[:60] for m, mo in zip(t["metric"], t["model"])], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ours / paper (1 = the paper's number)")
    ax.set_title("Like for like: quantities that do not depend on the data, and full-scale runs", fontsize=10)
    fig.tight_layout()
    return fig


def runs_table(records: list[dict]) -> pd.DataFrame:
    """Compute and environment per run (the runs page): variant and what was overridden, device,
    threads, wall time, versions, fingerprints, staleness."""
    rows = []
    for r in sorted(records, key=lambda r: (r.get("study", ""), r.get("started_at", ""))):
        env, data, code = r.get("environment", {}), r.get("dataset", {}), r.get("code", {})
        rows.append({
            "study": r.get("study"), "notebook": r.get("notebook"), "profile": r.get("profile"),
            "variant": record_variant(r), "overridden": ", ".join(f"{n}={r.get('parameters', {}).get(n)!r}"
                                                            for n in r.get("overridden", [])),
            "run": r.get("run_id"), "started (UTC)": r.get("started_at"), "wall time (s)": r.get("wall_time_s"),
            "device": r.get("parameters", {}).get("device", ""), "threads": env.get("torch_threads"),
            "cpus": env.get("cpu_count"), "python": env.get("python"), "torch": env.get("packages", {}).get("torch"),
            "data set": data.get("name"), "data fingerprint": str(data.get("fingerprint", ""))[:12],
            "reprolib": code.get("library"), "git commit": (code.get("git_commit") or "")[:10],
            "stale": r.get("stale")})
    return pd.DataFrame(rows)


def other_runs(records: list[dict]) -> pd.DataFrame:
    """The runs page's "other runs: not results": the :func:`runs_table` rows of the records at mini
    or full that are no column of :data:`RESULTS` (``debug`` runs; the authors' weights at mini)."""
    others = [r for r in records if r.get("profile") in SCALES and _column(r) is None]
    return runs_table(others).reindex(columns=["study", "notebook", "profile", "variant", "overridden",
                                               "started (UTC)", "run", "stale"])


# --------------------------------------------------------------------------- headline numbers

#: the scoreboard keys summarised on the README's and the front page's first screen
HEADLINE_KEYS = ("sid/sony/psnr", "sid_batchnorm/none/psnr", "sid_batchnorm/double/psnr", "lle/sony/psnr",
                 "efficiency/lle/gmacs_sony", "efficiency/speedup_cpu", "genisp/nikon/ap50", "pynet/zurich/psnr")
README_START = "<!-- results: generated from the run records by `python -m reprolib report readme --write`; do not edit -->"
README_END = "<!-- /results -->"


def headline(records: list[dict], keys: Sequence[str] = HEADLINE_KEYS) -> pd.DataFrame:
    """The :func:`scoreboard` rows of ``keys``, in that order (then by model)."""
    table = scoreboard(records)
    table = table[table["key"].isin(keys)].copy()
    table["_order"] = [list(keys).index(k) for k in table["key"]]
    return table.sort_values(["_order", "model"], kind="stable").drop(columns="_order")


def readme_summary(records: list[dict], keys: Sequence[str] = HEADLINE_KEYS) -> str:
    """A short Markdown table of the headline numbers (:func:`headline`) for the README."""
    table = headline(records, keys)
    runs = sorted({r.get("started_at", "")[:10] for r in latest_records(records, RESULTS)} - {""})
    columns = ["study", "metric", "model", "paper", "public reproductions", "ours (mini)", "ours (full)",
               *(["authors' weights (full)"] if table["authors' weights (full)"].notna().any() else [])]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for (_, r), stale in zip(style_scoreboard(table).iterrows(), table["stale"]):
        cells = [str(r[c]) for c in columns]
        cells[5:] = [c + (" (stale)" if stale and c else "") for c in cells[5:]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    when = f"runs of {runs[0]}" + (f" to {runs[-1]}" if runs[-1] != runs[0] else "") if runs else "no runs yet"
    lines += ["", f"*{len(table)} of the scoreboard's numbers ({when}); mini = synthetic data on a CPU, "
              "not comparable with the papers' real-data numbers — the book explains each.*"]
    return "\n".join(lines)


def update_readme(path: str | Path, summary: str) -> bool:
    """Replace the block between :data:`README_START` and :data:`README_END` in ``path`` with
    ``summary``; returns whether the file changed (ValueError: no markers)."""
    path = Path(path)
    text = path.read_text()
    try:
        head, rest = text.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
    except ValueError:
        raise ValueError(f"{path}: the markers {README_START!r} … {README_END!r} are missing") from None
    new = f"{head}{README_START}\n{summary}\n{README_END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text
