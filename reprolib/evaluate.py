"""Evaluation: padded and tiled inference, per-image metrics over SID-layout pairs (the traditional
pipeline scored by the same code), summaries, run-record rows (:func:`metric_rows`, every study),
and :func:`detection_row` (GenISP). Protocol (:func:`reprolib.metrics.protocol`): the output
clamped to ``[0, 1]`` vs the whole ground truth, per image; ``*_8bit``: both quantised to 8 bits.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import detect, metrics, plots, raw
from .data.sid import AMPLIFICATION_CAP, SID_INPUT, DecodedCache, InputConvention, SIDImages, SIDPair, \
    amplification, ratio_label

__all__ = ["tile_spans", "infer_tiled", "infer", "image_row", "evaluate", "conventional_output",
           "evaluate_conventional", "METRIC_COLUMNS", "summarise", "by_ratio", "SID_METRICS",
           "metric_rows", "DETECTION_PROTOCOL", "detection_row"]


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 16) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(start, stop, keep_start, keep_stop)`` each. Starts are multiples of
    ``multiple`` (the pooling grid of the whole image); tiles overlap by at least ``overlap`` and
    keep their output up to the middle of the overlap (≥ ``overlap / 2`` of context inside).

    >>> tile_spans(100, 64, 32)
    [(0, 64, 0, 48), (32, 100, 48, 100)]
    >>> tile_spans(40, 64, 32)
    [(0, 40, 0, 40)]
    """
    step = tile - overlap
    if tile <= 0 or overlap < 0 or step <= 0 or step % multiple:
        raise ValueError(f"need tile > overlap ≥ 0 with tile − overlap a multiple of {multiple}, "
                         f"got tile {tile}, overlap {overlap}")
    if length <= tile:
        return [(0, length, 0, length)]
    starts = list(range(0, length - tile, step))
    last = max(0, (length - tile) // multiple * multiple)
    if last > starts[-1]:
        starts.append(last)
    stops = [min(s + tile, length) for s in starts]
    stops[-1] = length  # the last tile runs to the end (it may be up to multiple − 1 longer)
    return [(a, b, 0 if i == 0 else (a + stops[i - 1]) // 2,
             length if i == len(starts) - 1 else (starts[i + 1] + b) // 2)
            for i, (a, b) in enumerate(zip(starts, stops))]


def _pad_call(model, x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        # reflect keeps the statistics at the border and, on a mosaic, the CFA phase (even shift)
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
    y = model(x)
    s = y.shape[-1] // x.shape[-1]
    return y[..., : h * s, : w * s]


@torch.no_grad()
def infer_tiled(model: torch.nn.Module, x: torch.Tensor, tile: int = 512, overlap: int = 64,
                multiple: int = 16) -> torch.Tensor:
    """Run an image-to-image network over a large input in overlapping tiles (:func:`tile_spans`,
    padded by reflection at the border): peak memory is one tile plus the input and output.

    Args:
        model: maps ``1×C×h×w`` to ``1×3×(s·h)×(s·w)`` (SID U-Net: ``s = 2``); run in eval mode.
        x: ``1×C×H×W`` float32 input (e.g. packed, amplified, in ``[0, 1]``), on any device.
        tile, overlap: in input pixels; ``tile − overlap`` must be a multiple of ``multiple``.
        multiple: the network's size divisor (SID U-Net 16, Lamba & Mitra 32).

    Returns ``1×3×(s·H)×(s·W)`` float32 on the CPU, the network's raw (unclamped) output.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a 1×C×H×W input, got {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    h, w = x.shape[-2:]
    out, scale = None, None
    try:
        for ya, yb, ky0, ky1 in tile_spans(h, tile, overlap, multiple):
            for xa, xb, kx0, kx1 in tile_spans(w, tile, overlap, multiple):
                y = _pad_call(model, x[..., ya:yb, xa:xb].to(device), multiple).float().cpu()
                if out is None:
                    scale = y.shape[-1] // (xb - xa)
                    out = torch.empty((1, y.shape[1], h * scale, w * scale), dtype=torch.float32)
                out[..., scale * ky0:scale * ky1, scale * kx0:scale * kx1] = \
                    y[..., scale * (ky0 - ya):scale * (ky1 - ya), scale * (kx0 - xa):scale * (kx1 - xa)]
                del y
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def infer(model: torch.nn.Module, x: torch.Tensor, tile: int | None = None, overlap: int = 64,
          multiple: int = 16) -> torch.Tensor:
    """The network's output for a whole ``1×C×H×W`` input, padded to ``multiple`` and cropped back,
    tiled (:func:`infer_tiled`) when larger than ``tile``: ``1×3×(s·H)×(s·W)`` float32 on the CPU,
    unclamped."""
    if tile is not None and max(x.shape[-2:]) > tile:
        return infer_tiled(model, x, tile=tile, overlap=overlap, multiple=multiple)
    was_training = model.training
    model.eval()
    try:
        return _pad_call(model, x.to(next(model.parameters()).device), multiple).float().cpu()
    finally:
        model.train(was_training)


def image_row(pair: SIDPair, pred: torch.Tensor, target: torch.Tensor) -> dict:
    """One evaluated image (``1×3×H×W`` in ``[0, 1]`` each): ``scene``, ``short`` (file name),
    ``ratio`` (100 / 250 / 300), :func:`reprolib.metrics.image_metrics`, and ``brightness`` =
    mean(pred) / mean(target) (1 = as bright as the ground truth)."""
    values = metrics.image_metrics(pred, target)
    return {"scene": pair.scene, "short": Path(pair.short).name, "ratio": ratio_label(pair),
            **{k: v[0] for k, v in values.items()},
            "brightness": float(pred.mean() / target.mean().clamp_min(1e-6))}


def evaluate(model: torch.nn.Module, pairs: Sequence[SIDPair], cache: DecodedCache, *,
             convention: InputConvention = SID_INPUT, tile: int | None = None, overlap: int = 64,
             progress: bool = True, desc: str = "evaluate") -> pd.DataFrame:
    """One :func:`image_row` per pair: the network on whole test images in its input
    ``convention`` (tiles of ``tile`` input pixels when given), output clamped to ``[0, 1]``; the
    metrics on the network's device (a full frame's SSIM takes 42 s and 6 GB on one CPU thread)."""
    images = SIDImages(pairs, cache, convention)
    device, rows = next(model.parameters()).device, []
    for pair in tqdm(images.pairs, desc=desc, disable=not progress, leave=False, mininterval=2.0):
        pred = infer(model, images.input(pair), tile=tile, overlap=overlap, multiple=convention.multiple)
        rows.append(image_row(pair, pred.to(device).clamp_(0, 1), images.target(pair).to(device)))
        del pred
    return pd.DataFrame(rows)


def conventional_output(pair: SIDPair, cap: float | None = AMPLIFICATION_CAP) -> torch.Tensor:
    """The SID paper's "traditional pipeline" for one pair: the short exposure amplified by
    ``min(ratio, 300)`` and rendered by LibRaw (camera white balance, no auto-brightening), as
    float32 ``1×3×H×W`` in ``[0, 1]``."""
    rgb = raw.conventional_pipeline(pair.short_path, amplification=amplification(pair, cap))
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]


def evaluate_conventional(pairs: Sequence[SIDPair], cache: DecodedCache, cap: float | None = AMPLIFICATION_CAP,
                          progress: bool = True, desc: str = "traditional pipeline") -> pd.DataFrame:
    """:func:`conventional_output` scored as :func:`evaluate` scores a network (same columns)."""
    images = SIDImages(pairs, cache)
    return pd.DataFrame([image_row(pair, conventional_output(pair, cap), images.target(pair))
                         for pair in tqdm(images.pairs, desc=desc, disable=not progress, leave=False, mininterval=2.0)])


#: the per-image metric columns of :func:`evaluate`
METRIC_COLUMNS = ("psnr", "ssim", "psnr_8bit", "ssim_8bit")


def crop_panels(models: dict, pairs: Sequence[SIDPair], cache: DecodedCache, crop: int,
                convention: InputConvention = SID_INPUT, tile: int | None = None) -> dict:
    """Keyword arguments of :func:`reprolib.plots.image_grid` for test crops: per pair, the centre
    ``crop``² (even offsets) of the amplified input as camera RGB, the traditional pipeline, each of
    ``models`` (label → network) and the ground truth, ``H×W×3`` in ``[0, 1]``, outputs noted with
    their PSNR."""
    images, grid, notes = SIDImages(pairs, cache, convention), [], []
    for pair in pairs:
        x, target = images.input(pair), images.target(pair)
        cy, cx = (max(0, (n - crop) // 2) // 2 * 2 for n in target.shape[-2:])
        window = (slice(None), slice(None), slice(cy, cy + crop), slice(cx, cx + crop))
        outputs = [conventional_output(pair)] + [
            infer(m, x, tile=tile, multiple=convention.multiple).clamp(0, 1) for m in models.values()]
        shown = plots.camera_rgb(x, "RGBG") if convention.representation == "packed" else \
            plots.camera_rgb(raw.pack(x, "RGGB"))
        grid.append([shown[cy:cy + crop, cx:cx + crop]] + [o[window][0].permute(1, 2, 0).numpy() for o in [*outputs, target]])
        notes.append(["", *(f"{metrics.psnr(o[window], target[window]).item():.2f} dB" for o in outputs), ""])
    return {"images": grid, "col_titles": ["amplified raw input", "traditional pipeline", *models, "ground truth"],
            "row_labels": [f"scene {p.scene}, ×{p.ratio:.0f}" for p in pairs], "cell_notes": notes}


def summarise(results: dict) -> pd.DataFrame:
    """Per-method means over the test images (``results``: name → :func:`evaluate` frame), one row
    a method: ``images``, ``PSNR``, ``SSIM``, ``PSNR 8-bit``, ``SSIM 8-bit``, ``brightness``."""
    return pd.DataFrame([{"method": name, "images": len(df), "PSNR": df["psnr"].mean(), "SSIM": df["ssim"].mean(),
                          "PSNR 8-bit": df["psnr_8bit"].mean(), "SSIM 8-bit": df["ssim_8bit"].mean(),
                          "brightness": df["brightness"].mean()} for name, df in results.items()]).set_index("method")


def by_ratio(results: dict, metric: str = "psnr") -> pd.DataFrame:
    """Mean ``metric`` per exposure-ratio group: rows = methods, columns ``×100``, ``×250``,
    ``×300`` (those present), and a last row ``images`` (images per group)."""
    out = pd.DataFrame({name: df.groupby("ratio")[metric].mean() for name, df in results.items()}).T
    out.loc["images"] = next(iter(results.values())).groupby("ratio").size()
    out.columns = [f"×{c}" for c in out.columns]
    return out


#: ``(column, key suffix, metric label)`` of a :func:`summarise` table: the 8-bit values carry the
#: published keys (the SID authors evaluated saved 8-bit PNGs), the float ones ``…_float``
SID_METRICS = (("PSNR 8-bit", "psnr", "PSNR (dB), 8-bit"), ("SSIM 8-bit", "ssim", "SSIM, 8-bit"),
               ("PSNR", "psnr_float", "PSNR (dB), float"), ("SSIM", "ssim_float", "SSIM, float"))


def metric_rows(summary: pd.DataFrame, method: str, model_label: str, key_prefix: str | None, protocol: str,
                columns: Sequence[tuple[str, str, str]] = SID_METRICS, *, split: str = "test",
                count: str | None = "images", digits: int = 4) -> list[dict]:
    """Run-record ``metrics`` rows ``[{"key", "model", "metric", "value", "protocol", "split"[,
    "images"]}]`` for row ``method`` of ``summary`` (one row per method, one column per metric).

    Args:
        model_label: the rows' ``model``. key_prefix: keys are ``<key_prefix>/<suffix>`` (as in
            ``published.yaml``); ``None``: no key (not on the scoreboard). protocol: its text.
        columns: ``(column, key suffix, metric label)`` per row; a missing or NaN column gives none.
        split: the data split. count: the column of the number of images (``None``: no
            ``images``). digits: rounding of the values.
    """
    s = summary.loc[method]
    rows = []
    for col, suffix, label in columns:
        if col not in s.index or pd.isna(s[col]):
            continue
        rows.append({"key": f"{key_prefix}/{suffix}" if key_prefix else None, "model": model_label, "metric": label,
                     "value": round(float(s[col]), digits), "protocol": protocol, "split": split})
        if count:
            rows[-1]["images"] = int(s[count])
    return rows


# --------------------------------------------------------------- detection (GenISP study)

#: what :func:`detection_row` measures
DETECTION_PROTOCOL = ("Protocol: COCO AP (IoU 0.50:0.05:0.95), AP50, AP75 over the three RAW-NOD classes "
                      "(person, bicycle, car) with torchmetrics MeanAveragePrecision (pycocotools backend, "
                      "boxes xyxy, ≤ 100 detections per image, all object sizes); detections of other "
                      "classes dropped; ground-truth boxes with zero width or height dropped.")


@torch.no_grad()
def detection_row(detector, dataset, isp=None, device: str = "cpu", batch_size: int = 8, keep: int = 4) -> dict:
    """Score a frozen detector, optionally behind an image-to-image ``isp`` (1×3×h×w → 1×3×h×w,
    eval mode). ``dataset`` items: ``(float32 3×h×w pre-processed image, {"boxes": N×4 xyxy
    pixels, "labels": N})``. Returns ``AP``, ``AP50``, ``AP75`` (as
    :func:`reprolib.detect.average_precision`), ``input_mean`` / ``input_std`` of the detector's
    inputs, ``predictions`` and ``targets`` (per image), ``examples`` (first ``keep`` inputs)."""
    predictions, targets, examples = [], [], []
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        inputs = [im.to(device) for im, _ in items]
        if isp is not None:
            isp.eval()
            inputs = [isp(im[None])[0] for im in inputs]
        for x in inputs:
            total += float(x.sum())
            total_sq += float((x.double() ** 2).sum())
            count += x.numel()
            if len(examples) < keep:
                examples.append(x.cpu())
        predictions += detect.detect(detector, inputs)
        targets += [t for _, t in items]
    metrics_ = detect.average_precision(predictions, targets)
    mean = total / count
    return {**metrics_, "input_mean": mean, "input_std": math.sqrt(max(total_sq / count - mean ** 2, 0.0)),
            "predictions": predictions, "targets": targets, "examples": examples}
