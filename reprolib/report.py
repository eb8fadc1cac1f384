"""Published numbers, tables and figures for the book.

Published numbers live in ``reprolib/published.yaml`` (one cited data file); our numbers come
from run records (:mod:`reprolib.study`). The two are joined by ``key``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["published", "published_value"]

PUBLISHED_FILE = Path(__file__).with_name("published.yaml")


@lru_cache(maxsize=1)
def _published_rows() -> tuple:
    data = yaml.safe_load(PUBLISHED_FILE.read_text())
    return tuple(data["results"])


def published(key: str | None = None, study: str | None = None, kind: str | None = None) -> list[dict]:
    """Rows of ``published.yaml`` (each: key, study, metric, model, dataset, value or None, kind,
    source), filtered by ``key`` prefix, ``study`` and/or ``kind`` (``paper`` / ``reproduction``)."""
    rows = [dict(r) for r in _published_rows()]
    if key is not None:
        rows = [r for r in rows if r["key"] == key or r["key"].startswith(key.rstrip("/") + "/")]
    if study is not None:
        rows = [r for r in rows if r["study"] == study]
    if kind is not None:
        rows = [r for r in rows if r["kind"] == kind]
    return rows


def published_value(key: str, kind: str = "paper") -> float | None:
    """The single published value for ``key`` of ``kind`` (None when not available)."""
    rows = [r for r in published(kind=kind) if r["key"] == key]
    if not rows:
        raise KeyError(f"no published {kind} value with key {key!r} in {PUBLISHED_FILE.name}")
    return rows[0]["value"]


# --------------------------------------------------------------------------- scoreboard

STUDY_TITLES = {
    "sid": "SID (Chen et al. 2018)",
    "sid_batchnorm": "SID BatchNorm ablation",
    "lle_rdb": "Lamba & Mitra: RDB / RDB*",
    "lle_loss": "Lamba & Mitra: loss ablation",
    "efficiency": "Efficiency (Lamba & Mitra Table 1)",
    "genisp": "GenISP (Morawski et al. 2022)",
    "pynet": "PyNET (Ignatov et al. 2020)",
}


def latest_records(records: list[dict]) -> list[dict]:
    """The newest record per (study, profile, notebook) — what the book shows as current."""
    best: dict = {}
    for r in records:
        k = (r.get("study"), r.get("profile"), r.get("notebook"))
        if k not in best or r.get("started_at", "") > best[k].get("started_at", ""):
            best[k] = r
    return sorted(best.values(), key=lambda r: (r.get("study", ""), r.get("profile", "")))


def _fmt(v) -> str:
    if v is None:
        return "not available"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def scoreboard(records: list[dict]):
    """One table of every reproduced number: study, metric, model, the paper's value (or "not
    available"), the public reproductions' values, ours at mini and full scale, the delta to the
    paper, and whether our record is stale.

    Built from run records (``metrics`` rows with a ``key``) and ``published.yaml``; a record row
    whose key has no published counterpart is listed too (paper column "not available").
    Returns a pandas DataFrame (numbers as floats; None where absent).
    """
    import pandas as pd

    rows: dict = {}
    for rec in latest_records(records):
        scale = "full" if rec.get("profile") == "full" else "mini" if rec.get("profile") == "mini" else None
        if scale is None:
            continue
        for m in rec.get("metrics", []):
            key = m.get("key")
            if not key or m.get("value") is None or m.get("scoreboard") is False:
                continue
            row_key = (rec["study"], key, m.get("model", ""))
            row = rows.setdefault(row_key, {
                "study": rec["study"], "key": key, "metric": m.get("metric", ""),
                "model": m.get("model", ""), "ours (mini)": None, "ours (full)": None,
                "stale": False, "record": None})
            row[f"ours ({scale})"] = float(m["value"])
            row["stale"] = row["stale"] or bool(rec.get("stale"))
            row["record"] = rec.get("run_id")
    out = []
    for (study, key, model), row in rows.items():
        paper = [p for p in published(kind="paper") if p["key"] == key]
        repro = [p for p in published(kind="reproduction") if p["key"] == key]
        paper_value = paper[0]["value"] if paper else None
        ours = row["ours (full)"] if row["ours (full)"] is not None else row["ours (mini)"]
        out.append({
            "study": STUDY_TITLES.get(study, study), "metric": row["metric"], "model": model,
            "paper": paper_value,
            "paper source": paper[0]["source"] if paper else "",
            "public reproductions": "; ".join(f"{_fmt(p['value'])} ({p['model']})" for p in repro) or "",
            "ours (mini)": row["ours (mini)"], "ours (full)": row["ours (full)"],
            "delta vs paper": (ours - paper_value) if (ours is not None and paper_value is not None) else None,
            "scale": "full" if row["ours (full)"] is not None else "mini",
            "stale": row["stale"], "key": key,
        })
    cols = ["study", "metric", "model", "paper", "paper source", "public reproductions", "ours (mini)",
            "ours (full)", "delta vs paper", "scale", "stale", "key"]
    return pd.DataFrame(out, columns=cols)


def scoreboard_figure(table):
    """Paper vs ours for every scoreboard row that has both: ours / paper as horizontal bars
    (1 = reproduced exactly; mini rows are miniatures on synthetic data, not the paper's setting)."""
    import matplotlib.pyplot as plt
    import numpy as np

    t = table[table["paper"].notna() & table[["ours (mini)", "ours (full)"]].notna().any(axis=1)]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(t), 3) + 1.2))
    if len(t) == 0:
        ax.text(0.5, 0.5, "no run has a published counterpart yet", ha="center", va="center")
        ax.axis("off")
        return fig
    ours = t["ours (full)"].where(t["ours (full)"].notna(), t["ours (mini)"]).astype(float)
    ratio = ours.to_numpy() / t["paper"].astype(float).to_numpy()
    labels = [f"{s.split(' (')[0]} · {m} · {mo}"[:70] for s, m, mo in zip(t["study"], t["metric"], t["model"])]
    colours = ["tab:blue" if sc == "full" else "tab:orange" for sc in t["scale"]]
    y = np.arange(len(t))
    ax.barh(y, ratio, color=colours)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ours / paper (1 = the paper's number)")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="tab:orange", label="mini (synthetic, CPU)"),
                       Patch(color="tab:blue", label="full (real data)")], loc="lower right", fontsize=8)
    ax.set_title("Paper vs ours, per reproduced number")
    fig.tight_layout()
    return fig


def runs_table(records: list[dict]):
    """Compute and environment per run: study, profile, device, threads, wall time, torch,
    code fingerprint and whether it is stale."""
    import pandas as pd

    rows = []
    for r in sorted(records, key=lambda r: (r.get("study", ""), r.get("started_at", ""))):
        env = r.get("environment", {})
        rows.append({
            "study": r.get("study"), "notebook": r.get("notebook"), "profile": r.get("profile"),
            "run": r.get("run_id"), "started (UTC)": r.get("started_at"),
            "wall time (s)": r.get("wall_time_s"),
            "device": r.get("parameters", {}).get("device", ""),
            "threads": env.get("torch_threads"), "cpus": env.get("cpu_count"),
            "python": env.get("python"), "torch": env.get("packages", {}).get("torch"),
            "data set": r.get("dataset", {}).get("name"),
            "data fingerprint": str(r.get("dataset", {}).get("fingerprint", ""))[:12],
            "reprolib": r.get("code", {}).get("library"),
            "git commit": (r.get("code", {}).get("git_commit") or "")[:10],
            "stale": r.get("stale"),
        })
    return pd.DataFrame(rows)


def style_scoreboard(table):
    """HTML-ready view of :func:`scoreboard`: numbers formatted, missing paper values spelled out,
    stale rows flagged."""
    view = table.drop(columns=["key"]).copy()
    for c in ("paper", "ours (mini)", "ours (full)", "delta vs paper"):
        view[c] = [(_fmt(v) if v is not None and v == v else ("not available" if c == "paper" else ""))
                   for v in table[c]]
    view["stale"] = ["STALE: computed with older code" if s else "" for s in table["stale"]]
    return view


# --------------------------------------------------------------------------- README summary

#: the scoreboard keys summarised on the README's first screen (the full table is the book's)
HEADLINE_KEYS = (
    "sid/sony/psnr", "sid_batchnorm/none/psnr", "sid_batchnorm/double/psnr", "lle/sony/psnr",
    "efficiency/lle/gmacs_sony", "efficiency/speedup_cpu", "genisp/nikon/ap50", "pynet/zurich/psnr",
)
README_START = "<!-- results: generated from the run records by `python -m reprolib report readme --write`; do not edit -->"
README_END = "<!-- /results -->"


def readme_summary(records: list[dict], keys=HEADLINE_KEYS) -> str:
    """A short Markdown table of the headline numbers for the README, generated from the run
    records (newest per study and profile) and ``published.yaml`` — the same join as the book's
    scoreboard, restricted to ``keys`` (in that order)."""
    table = scoreboard(records)
    table = table[table["key"].isin(keys)].copy()
    table["_order"] = [keys.index(k) for k in table["key"]]
    table = table.sort_values(["_order", "model"], kind="stable")
    runs = sorted({r.get("started_at", "")[:10] for r in latest_records(records)
                   if r.get("profile") in ("mini", "full")} - {""})

    def cell(v, missing=""):
        return missing if v is None or v != v else _fmt(v)  # None or NaN

    lines = ["| study | metric | model | paper | public reproductions | ours (mini) | ours (full) |",
             "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cells = [r["study"], r["metric"], r["model"], cell(r["paper"], "not available"),
                 r["public reproductions"] or "", cell(r["ours (mini)"]), cell(r["ours (full)"])]
        if r["stale"]:
            cells[5] += " (stale)"
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    when = f"runs of {runs[0]}" + (f" to {runs[-1]}" if runs[-1] != runs[0] else "") if runs else "no runs yet"
    lines.append("")
    lines.append(f"*{len(table)} of the scoreboard's numbers ({when}); mini = synthetic data on a CPU, "
                 "not comparable with the papers' real-data numbers — the book explains each.*")
    return "\n".join(lines)


def update_readme(path: str | Path, summary: str) -> bool:
    """Replace the block between :data:`README_START` and :data:`README_END` in ``path`` with
    ``summary``; returns whether the file changed. Raises ``ValueError`` when the markers are
    missing."""
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
