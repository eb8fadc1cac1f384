"""The figures every study draws the same way: training curves, image grids (each returns a
:class:`matplotlib.figure.Figure`), and the camera-RGB view of a raw input.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["training_curves", "image_grid", "camera_rgb"]


def training_curves(histories: dict, panels: Sequence[tuple] = (("loss", "training loss", True),),
                    xlabel: str = "step", x_scale: float = 1.0, sequential: bool = False,
                    colours: Sequence | None = None):
    """Logged curves against the step, one line per run, one panel per curve name.

    Args:
        histories: label → :class:`reprolib.train.History`.
        panels: ``(curve name, y-axis label, log scale)`` per panel, left to right.
        xlabel: the x-axis label; ``x_scale`` divides the steps (e.g. steps per epoch → epochs).
        sequential: runs one after another on the x axis (PyNET's levels), a line where each ends.
        colours: one colour per run (default: matplotlib's cycle).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) if len(panels) > 1 else 9, 3.6),
                             squeeze=False)
    for ax, (name, ylabel, log) in zip(axes[0], panels):
        offset = 0.0
        for j, (label, h) in enumerate(histories.items()):
            c = h.curves.get(name, [])
            if not c:
                continue
            steps = np.array([p["step"] for p in c], dtype=float)
            ax.plot((offset + steps) / x_scale, [p["value"] for p in c], label=label,
                    marker="o" if len(c) < 30 else None, ms=3,
                    color=None if colours is None else colours[j])
            if sequential:
                offset += steps[-1]
                ax.axvline(offset / x_scale, color="0.85", lw=0.8)
        ax.set(xlabel=xlabel, ylabel=ylabel, yscale="log" if log else "linear")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def image_grid(images: Sequence[Sequence[np.ndarray]], col_titles: Sequence[str],
               row_labels: Sequence[str] | None = None, cell_notes: Sequence[Sequence[str]] | None = None,
               cell_size: tuple[float, float] = (2.6, 2.8), title: str | None = None):
    """A grid of images: one row per example, one column per method.

    Args:
        images: ``rows × columns`` arrays, each ``H×W×3`` float in ``[0, 1]`` (clipped for display).
        col_titles: a title per column (above the first row). row_labels: a label per row.
        cell_notes: ``rows × columns`` notes under each image's title (e.g. its PSNR; ``""``: none).
        cell_size: inches per image (width, height). title: a title above the grid.
    """
    n_rows, n_cols = len(images), len(col_titles)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_size[0] * n_cols, cell_size[1] * n_rows),
                             squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(np.clip(images[r][c], 0, 1))
            lines = [col_titles[c]] if r == 0 else []
            if cell_notes is not None and cell_notes[r][c]:
                lines.append(cell_notes[r][c])
            ax.set_title("\n".join(lines), fontsize=8)
            ax.set(xticks=[], yticks=[])
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def camera_rgb(packed, order: str = "RGGB") -> np.ndarray:
    """A packed raw image as camera RGB for display (what a network receives): ``4×h×w`` or
    ``1×4×h×w`` (numpy or torch, channels in ``order``, e.g. SID's ``"RGBG"``) → ``2h×2w×3``
    float32 R, mean of the greens, B, nearest-upsampled, clipped to ``[0, 1]``; no white balance
    or gamma."""
    x = packed.detach().cpu().numpy() if hasattr(packed, "detach") else np.asarray(packed)
    x = x.reshape(x.shape[-3:])
    planes = {ch: [] for ch in "RGB"}
    for ch, plane in zip(order, x):
        planes[ch].append(plane)
    rgb = np.stack([np.mean(planes[ch], axis=0) for ch in "RGB"], -1).astype(np.float32)
    return np.clip(rgb.repeat(2, 0).repeat(2, 1), 0, 1)
