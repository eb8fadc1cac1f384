"""Lamba & Mitra's Table 1 (``notebooks/efficiency.ipynb``): record rows, table and figure beside
the published values; the measuring itself is :mod:`reprolib.efficiency`."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import study
from .efficiency import EFFICIENCY_MODELS, FULL_FRAME, README_FRAME, frame_label, speedup
from .published import published_value

__all__ = ["efficiency_rows", "efficiency_table", "efficiency_figure", "PARAMETERS"]


def _suffix(frame: tuple[int, int]) -> str:
    """Key suffix of a timed frame: none at the paper's frame, the README's, or ``_<W>x<H>``."""
    return {FULL_FRAME: "", README_FRAME: "_2048x4096"}.get(tuple(frame), f"_{frame_label(frame, 'x')}")


def efficiency_rows(costs: pd.DataFrame | None, timed: dict | None, memory: dict | None,
                    frame: tuple[int, int]) -> list[dict]:
    """Run-record rows keyed like ``published.yaml`` (``efficiency/<model key>/<quantity>``) from
    ``costs`` (:func:`cost_table` at both frames), ``timed`` (:func:`side_by_side_latency`; adds the
    speed-ups SID / ours) and ``memory`` (:func:`peak_memory_table`, GB), each optional (None), the
    last two at ``frame`` (H × W); timings match a published key only at 4256×2848 or 2048×4096."""
    label_to_name = {v[0]: n for n, v in EFFICIENCY_MODELS.items()}
    rows, tag, suffix = [], frame_label(frame, "x"), _suffix(frame)

    def row(key, name, metric, value, protocol, **extra):
        rows.append({"key": f"efficiency/{key}", "model": EFFICIENCY_MODELS[name][0], "metric": metric,
                     "value": value, "protocol": protocol, **extra})

    for label in ([] if costs is None else costs.index):
        name, key = label_to_name[label], EFFICIENCY_MODELS[label_to_name[label]][4]
        row(f"{key}/params_m", name, "Parameters (M)", round(float(costs.loc[label, "M (ours)"]), 6),
            "count of the module's parameters", parameters=int(costs.loc[label, "parameters"]))
        for (h, w), quantity in ((FULL_FRAME, "gmacs_sony"), (README_FRAME, "gmacs_2048x4096")):
            if f"GMACs {w}×{h}" in costs.columns:
                row(f"{key}/{quantity}", name, f"GMACs ({w}x{h} Bayer)", round(float(costs.loc[label, f"GMACs {w}×{h}"]), 4),
                    f"torch.utils.flop_counter, meta device, input {costs.loc[label, f'input {w}×{h}']}")
    if timed:
        first = next(iter(timed.values()))
        timing = f"CPU, {first['threads']} threads, median of {len(first['times_s'])} interleaved rounds at {tag}"
        for name, r in timed.items():
            row(f"{EFFICIENCY_MODELS[name][4]}/cpu_s{suffix}", name, f"CPU inference (s, {tag})",
                round(r["median_s"], 4), timing, times_s=r["times_s"])
        speed_key = {"": "speedup_cpu", "_2048x4096": "speedup_cpu_readme"}.get(suffix, f"speedup_cpu{suffix}")
        for name, key in (("lle_fused", speed_key), ("lle", f"speedup_cpu_weight_norm{suffix}")):
            if "sid" in timed and name in timed:
                ratio = speedup(timed, name)
                row(key, name, f"CPU speed-up SID / ours (x, {tag})", round(ratio["median"], 3),
                    timing + "; median of the per-round ratios (each round times both models back to back)",
                    per_round=ratio["per_round"], of_minima=ratio["of_minima"])
    for name, gb in (memory or {}).items():
        row(f"{EFFICIENCY_MODELS[name][4]}/memory_gb{suffix}", name, f"Memory (GB, {tag})", round(gb, 4),
            "extra peak resident CPU memory of one inference, fresh process")
    return rows


def efficiency_table(rows: list[dict], frame: tuple[int, int] = FULL_FRAME) -> pd.DataFrame:
    """Table 1's efficiency rows (parameters (M), GMACs at 4256×2848, median CPU s and memory (GB)
    at ``frame``) of the SID U-Net and both forms of Lamba & Mitra's network: ours from ``rows``
    (:func:`efficiency_rows`) beside the published (timings only at 4256×2848 and 2048×4096)."""
    ours = {r["key"]: r["value"] for r in rows}
    tag, suffix = frame_label(frame), _suffix(frame)
    quantities = {"Parameters (M)": "params_m", f"GMACs ({frame_label(FULL_FRAME)})": "gmacs_sony",
                  f"CPU inference (s, {tag})": f"cpu_s{suffix}", f"Memory (GB, {tag})": f"memory_gb{suffix}"}
    columns = {}
    for name, paper in (("sid", "sid"), ("lle", "lle"), ("lle_fused", None)):
        label, key = EFFICIENCY_MODELS[name][0], EFFICIENCY_MODELS[name][4]
        columns[f"{label}: ours"] = {q: ours.get(f"efficiency/{key}/{k}") for q, k in quantities.items()}
        if paper:
            columns[f"{label.split(' (')[0]}: paper"] = {q: published_value(f"efficiency/{paper}/{k}", strict=False) for q, k in quantities.items()}
    return pd.DataFrame(columns)


def efficiency_figure(rows: list[dict], threshold: float | None = None):
    """Figure of parameters (M) and GMACs at 4256×2848 (log scale) beside the published values and
    the CPU speed-up SID / ours at each timed frame, from ``rows`` (:func:`efficiency_rows` or a
    record's ``metrics``); ``threshold``: the speed-up the claim needs (dotted line), if any."""
    values = {r["key"]: r["value"] for r in rows if r.get("key")}
    names = [n for n, v in EFFICIENCY_MODELS.items() if f"efficiency/{v[4]}/params_m" in values]
    ratios = [r for r in rows if r.get("key", "").startswith("efficiency/speedup_cpu")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), width_ratios=[max(len(names), 1)] * 2 + [max(len(ratios), 1)])
    x = np.arange(len(names))
    for ax, quantity, what in ((axes[0], "params_m", "parameters (M)"),
                               (axes[1], "gmacs_sony", f"GMACs at {frame_label(FULL_FRAME)}")):
        paper = [published_value(f"efficiency/{n}/{quantity}", strict=False) if n in ("sid", "lle") else None for n in names]
        ax.bar(x - 0.2, [values.get(f"efficiency/{EFFICIENCY_MODELS[n][4]}/{quantity}", np.nan) for n in names], 0.4,
               label="ours")
        ax.bar(x + 0.2, [np.nan if p is None else p for p in paper], 0.4, label="paper")
        ax.set_xticks(x, [EFFICIENCY_MODELS[n][1] for n in names], fontsize=8)
        ax.set(ylabel=what, yscale="log")
    short = {v[0]: v[1] for v in EFFICIENCY_MODELS.values()}
    bars = axes[2].bar(np.arange(len(ratios)), [r["value"] for r in ratios], 0.6, label="ours (median of rounds)")
    axes[2].bar_label(bars, fmt="%.1f×", fontsize=8)
    axes[2].set_xticks(np.arange(len(ratios)), [f"{short[r['model']]}\n{r['metric'].rsplit(', ', 1)[-1][:-1]}"
                                                 for r in ratios], fontsize=8)
    axes[2].axhline(published_value("efficiency/speedup_cpu", strict=False), color="k", ls="--", lw=1, label=f"paper ({frame_label(FULL_FRAME)})")
    if threshold is not None:
        axes[2].axhline(threshold, color="tab:red", ls=":", lw=1, label=f"claim holds above {threshold:g}×")
    axes[2].set(ylabel="CPU speed-up SID / ours (×)")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


#: parameters of ``notebooks/efficiency.ipynb`` (CPU only: Table 1's CPU column)
PARAMETERS = study.parameter_table(
    *study.common_parameters("not used: a network's cost does not depend on the data", device_choices=("cpu",)),
    ("threads", None, None, None, "intra-op CPU threads for the timings (None: torch's default)",
     {"types": (int, None), "check": study.positive}),
    ("latency_frame", "256x384", "2848x4256", "2848x4256", "H x W raw pixels of the timed frame (paper: 2848x4256)",
     study.frames_check),
    # mini: two rounds at the full frame, as a SID U-Net forward pass takes ~16 s on two cores
    ("rounds", 1, 2, 7, "timed rounds (each times every model once, interleaved)", study.positive),
    ("warmup", 0, 0, 1, "untimed rounds first", study.non_negative),
    ("memory", False, True, True, "measure peak memory of one inference (fresh process per model)"),
    ("other_models", True, True, True, "also count GenISP and PyNET (parameters, GMACs, latency at all_models_frame)"),
    ("all_models_frame", "64x96", "256x384", "512x768", "H x W raw pixels at which all four studies' networks are timed "
     "side by side (PyNET is too costly for the full frame on a CPU)", study.frames_check))
