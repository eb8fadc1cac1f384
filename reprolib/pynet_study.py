"""The PyNET study: "Replacing Mobile Camera ISP with a Single Deep Learning Model" (Ignatov,
Van Gool, Timofte, CVPR Workshops 2020).

The Zurich RAW-to-RGB format, PyNET's level-wise training with the official losses, evaluation
with the official PSNR / MS-SSIM, and a naive rendering of the raw input as the baseline. Used by
``notebooks/pynet.ipynb``.

What the official PyTorch code (aiff22/PyNET-PyTorch: ``load_data.py``, ``train_model.py``,
``utils.py``, ``vgg.py``, ``msssim.py``) does, and this module repeats:

* data: ``<split>/huawei_raw/<i>.png`` (the Huawei P20's Bayer mosaic, 10-bit values in a 16-bit
  PNG, black level *not* subtracted) and ``<split>/canon/<i>.jpg`` (the Canon 5D Mark IV photo of
  the same scene), ``i = 0 … N−1``, splits ``train`` and ``test``;
* input: the mosaic packed by slice position ``[1::2,1::2], [0::2,1::2], [0::2,0::2],
  [1::2,0::2]`` and divided by ``4·255 = 1020`` — no black subtraction, no clipping;
* target of level ``L``: the JPEG (8-bit) resized by ``1/2^L`` (bilinear, through PIL as
  ``scipy.misc.imresize`` did), divided by 255;
* training: levels 5 → 0, each level starting from the previous level's weights with a new Adam
  (lr 5e-5); epochs 8, 8, 17, 17, 25, 50 and batch sizes 50, 50, 50, 50, 16, 12 (levels 5 … 0);
  losses MSE (levels 5, 4), ``10·MSE + content`` (3, 2, 1), ``MSE + content + 0.4·(1 − MS-SSIM)``
  (0); content = MSE between VGG-19 ``relu5_4`` features of the ImageNet-normalised images;
* evaluation: per test patch (batch 1) ``PSNR = 20·log10(1 / √MSE)`` and MS-SSIM (their own
  implementation, :func:`ms_ssim_official`), averaged over the patches.

The Zurich reader (:data:`~reprolib.data.ZURICH_LAYOUT`, :func:`~reprolib.data.pack_zurich`,
:class:`~reprolib.data.ZurichRawToRGB`) lives with the other readers in :mod:`reprolib.data`; its
names are imported here too.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import data, metrics, report, study, train
from .data import (PACKING_SLICES, RAW_SCALE, ZURICH_LAYOUT, ZurichRawToRGB, pack_zurich,  # noqa: F401
                   read_zurich_raw, read_zurich_target)
from .models.pynet import INPUT_MULTIPLE, LEVELS, MIN_INPUT_SIZE, PyNET

__all__ = [
    "ZURICH_LAYOUT", "RAW_SCALE", "PACKING_SLICES", "ZURICH_BLACK_LEVEL", "ZURICH_WHITE_LEVEL",
    "OFFICIAL_EPOCHS", "OFFICIAL_BATCH_SIZES", "OFFICIAL_LR", "CONTENT_LOSSES", "SMOKE_DATA",
    "PARAMETERS", "read_zurich_raw", "pack_zurich", "read_zurich_target", "ZurichRawToRGB",
    "prepare_dataset", "naive_rendering", "ms_ssim_official", "content_network", "pynet_loss",
    "level_plan", "train_levels", "train_level", "evaluate", "evaluate_naive", "summarise",
    "mean_colour_psnr", "gradient_ratio", "content_ablation", "content_sensitivity", "vgg_weights", "check_sizes", "results_table", "level_table", "metric_rows",
    "plot_level_curves", "image_grid", "findings", "pynet_protocol", "parameter_count",
]

#: black and white level of the P20's 10-bit raw (digital numbers) that the naive rendering
#: assumes; the official pipeline never subtracts a black level (the network absorbs it)
ZURICH_BLACK_LEVEL = 64
ZURICH_WHITE_LEVEL = 1023

#: official epochs and batch sizes per level (README commands; ``utils.py`` defaults)
OFFICIAL_EPOCHS = {5: 8, 4: 8, 3: 17, 2: 17, 1: 25, 0: 50}
OFFICIAL_BATCH_SIZES = {5: 50, 4: 50, 3: 50, 2: 50, 1: 16, 0: 12}
OFFICIAL_LR = 5e-5

#: how the VGG-19 content term is computed: the paper's ImageNet network (weights from the data
#: manifest entry ``vgg19-imagenet``), the same network with random weights, or no content term
CONTENT_LOSSES = ("vgg19-imagenet", "vgg19-random", "none")

#: VGG-19's ``relu5_4`` sits behind four 2×2 poolings: images below this side give no feature map
CONTENT_MIN_SIDE = 16

#: the small synthetic set of the smoke profile (``data.prepare('zurich-mini', params=...)``)
SMOKE_DATA = {"n_train": 16, "n_test": 3}


def prepare_dataset(profile: str, data_root: str = "") -> tuple[Path, str, bool]:
    """The data root for a profile: ``(root, data set name, synthetic?)``. Used by the PyNET study.

    Empty ``data_root``: the synthetic ``zurich-mini`` generated into the data cache (``smoke``:
    a smaller copy, :data:`SMOKE_DATA`). ``full`` needs ``data_root`` (the real Zurich RAW-to-RGB
    folder, checked by ``data.prepare('zurich-raw-to-rgb', data_root)``). A ``data_root`` given at
    another profile is used as it is (any folder in the Zurich layout).
    """
    if data_root:
        root = Path(data_root).expanduser()
        if profile == "full":
            return data.prepare("zurich-raw-to-rgb", root), "zurich-raw-to-rgb", False
        ZurichRawToRGB(root, "test")  # checks the layout
        return root, root.name, (root / data.STAMP_NAME).is_file()
    if profile == "full":
        raise ValueError("profile 'full' runs on the real Zurich RAW-to-RGB data: pass data_root "
                         "(e.g. -p data_root /data/zurich); see: python -m reprolib data prepare "
                         "zurich-raw-to-rgb --root ROOT")
    params = SMOKE_DATA if profile == "smoke" else None
    return data.prepare("zurich-mini", params=params), "zurich-mini", True


# ------------------------------------------------------------------------------------------------
# The naive rendering (baseline)
# ------------------------------------------------------------------------------------------------

def naive_rendering(packed: torch.Tensor, black_level: float = ZURICH_BLACK_LEVEL,
                    white_level: float = ZURICH_WHITE_LEVEL, gamma: float = 2.2) -> torch.Tensor:
    """The simplest rendering of a packed Zurich raw: the baseline PyNET has to beat.

    Used by the PyNET study (baseline row and the grid's first column). No demosaicking and no
    colour matrix: black level subtracted and the range normalised; R, the mean of the two
    greens, and B taken from their slice positions (:data:`PACKING_SLICES`, R G / G B tile);
    gray-world white balance per image (R and B scaled to the green mean); bilinear ×2
    upsampling to the mosaic's size; gamma ``1/gamma``; clipped to ``[0, 1]``.

    Args:
        packed: ``float32`` B×4×h×w as :func:`pack_zurich` returns it (digital numbers / 1020).
        black_level, white_level: raw levels in digital numbers.

    Returns:
        ``float32`` B×3×2h×2w sRGB-like in ``[0, 1]``.
    """
    x = (packed * RAW_SCALE - black_level).clamp(min=0) / (white_level - black_level)
    blue, green_r, red, green_b = x.unbind(1)
    green = (green_r + green_b) / 2
    mean_g = green.mean(dim=(-2, -1), keepdim=True)
    red = red * mean_g / red.mean(dim=(-2, -1), keepdim=True).clamp(min=1e-6)
    blue = blue * mean_g / blue.mean(dim=(-2, -1), keepdim=True).clamp(min=1e-6)
    rgb = torch.stack([red, green, blue], 1)
    rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
    return rgb.clamp(0, 1) ** (1 / gamma)


# ------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------

def _gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).to(torch.float32)


def ms_ssim_official(pred: torch.Tensor, target: torch.Tensor, normalize: str | None = None,
                     reduction: str = "none") -> torch.Tensor:
    """MS-SSIM as PyNET's own code computes it (``msssim.py``): the PyNET study's level-0 loss
    and its evaluation metric (the 0.8623 of the published model).

    Differences from torchmetrics' MS-SSIM (:func:`reprolib.metrics.ms_ssim`), all kept because
    they define the published number: the Gaussian window (11, σ 1.5) shrinks to the image when
    the image is smaller (so 64-pixel patches work at five scales); no padding ('valid'
    filtering); the contrast-structure term of each scale is the mean of the ratio map; the
    five scales use the weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333 and 2×2 average pooling.
    Dynamic range 1 (images in ``[0, 1]``).

    Args:
        pred, target: ``float32`` B×3×H×W in ``[0, 1]``.
        normalize: ``None`` as the official code (a negative scale term gives NaN), or
            ``'relu'`` to clamp each scale's terms at 0 (used for the training loss so that an
            early anti-correlated patch cannot stop training).
        reduction: ``'none'``: one value per image, ``(B,)``; ``'batch'``: one value for the
            whole batch with the means taken over the batch *before* the product, as the official
            loss does with its batches.

    Returns:
        ``(B,)`` or a scalar.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"pred and target must be B×C×H×W of one shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    weights = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333], device=pred.device)
    dims = (0, 1, 2, 3) if reduction == "batch" else (1, 2, 3)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    channels = pred.shape[1]
    sims, css = [], []
    a, b = pred, target
    for scale in range(len(weights)):
        size = min(11, a.shape[-2], a.shape[-1])
        window = _gaussian_window(size).to(a.device, a.dtype).expand(channels, 1, size, size)

        def blur(t):
            return F.conv2d(t, window, groups=channels)

        mu_a, mu_b = blur(a), blur(b)
        var_a = blur(a * a) - mu_a ** 2
        var_b = blur(b * b) - mu_b ** 2
        cov = blur(a * b) - mu_a * mu_b
        v1, v2 = 2 * cov + c2, var_a + var_b + c2
        css.append((v1 / v2).mean(dim=dims))
        sims.append((((2 * mu_a * mu_b + c1) * v1) / ((mu_a ** 2 + mu_b ** 2 + c1) * v2)).mean(dim=dims))
        if scale < len(weights) - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    sim, cs = torch.stack(sims), torch.stack(css)
    if normalize == "relu":
        sim, cs = sim.clamp(min=0), cs.clamp(min=0)
    elif normalize is not None:
        raise ValueError(f"normalize must be None or 'relu', got {normalize!r}")
    w = weights.view(-1, *([1] * (cs.ndim - 1)))
    return torch.prod(cs[:-1] ** w[:-1], dim=0) * sim[-1] ** w[-1]


class _VGGContent(torch.nn.Module):
    """VGG-19 features up to ``relu5_4`` of ImageNet-normalised ``[0, 1]`` images (frozen)."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, features: torch.nn.Sequential, kind: str):
        super().__init__()
        self.features = features
        self.kind = kind
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always frozen, whatever the caller's mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


def content_network(kind: str, weights: str | Path | None = None, seed: int = 0) -> torch.nn.Module | None:
    """The network of PyNET's content loss. Used by the PyNET study.

    VGG-19's convolutional part up to ``relu5_4`` (torchvision's ``vgg19().features[:36]``, the
    official ``CONTENT_LAYER = 'relu_16'``), fed ImageNet-normalised images, frozen.

    Args:
        kind: one of :data:`CONTENT_LOSSES`. ``'vgg19-imagenet'``: the paper's network, weights
            from ``weights`` (torchvision's ``vgg19-dcbb9e9d.pth``, the manifest entry
            ``vgg19-imagenet``; read from disk, never downloaded here). ``'vgg19-random'``: the
            same network with torchvision's own initialisation (Kaiming normal, fan-out) drawn
            from ``seed`` — a random-feature perceptual loss. ``'none'``: no content term.
        weights: the state-dict file for ``'vgg19-imagenet'``.

    Returns:
        A module mapping B×3×H×W in ``[0, 1]`` to B×512×H/16×W/16 features, or None for ``'none'``.
    """
    from torchvision.models.vgg import cfgs, make_layers

    if kind not in CONTENT_LOSSES:
        raise ValueError(f"content loss must be one of {CONTENT_LOSSES}, got {kind!r}")
    if kind == "none":
        return None
    features = make_layers(cfgs["E"])[:36]
    for m in features:
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    if kind == "vgg19-imagenet":
        if not weights:
            raise ValueError("content loss 'vgg19-imagenet' needs the weights file "
                             "(python -m reprolib data prepare vgg19-imagenet)")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        own = features.state_dict()
        features.load_state_dict({k: state[f"features.{k}"] for k in own})
    else:
        g = torch.Generator().manual_seed(seed)
        for m in features:
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
                torch.nn.init.zeros_(m.bias)
    return _VGGContent(features, kind)


def pynet_loss(level: int, pred: torch.Tensor, target: torch.Tensor,
               content: torch.nn.Module | None = None) -> torch.Tensor:
    """PyNET's training loss at ``level``, as the official ``train_model.py``. Used by the PyNET study.

    * levels 5, 4: ``MSE``;
    * levels 3, 2, 1: ``10·MSE + content``;
    * level 0: ``MSE + content + 0.4·(1 − MS-SSIM)`` (:func:`ms_ssim_official` over the batch,
      scale terms clamped at 0).

    ``content`` is ``MSE(vgg(pred), vgg(target))`` with :func:`content_network`; it is left out
    when ``content`` is None, and when the images are smaller than :data:`CONTENT_MIN_SIDE`
    (``relu5_4`` would be empty — only possible with patches far smaller than the official 448).

    Args:
        pred, target: ``float32`` B×3×H×W in ``[0, 1]``.
    """
    mse = F.mse_loss(pred, target)
    if level >= 4:
        return mse
    term = 0.0
    if content is not None and min(pred.shape[-2:]) >= CONTENT_MIN_SIDE:
        with torch.no_grad():
            target_features = content(target)
        term = F.mse_loss(content(pred), target_features)
    if level >= 1:
        return 10 * mse + term
    ms = ms_ssim_official(pred, target, normalize="relu", reduction="batch")
    return mse + term + 0.4 * (1 - ms)


# ------------------------------------------------------------------------------------------------
# Level-wise training
# ------------------------------------------------------------------------------------------------

def level_plan(P: dict, n_train: int) -> dict[int, dict]:
    """Steps and batch size of each level (5 → 0). Used by the PyNET study.

    ``P["steps"]`` (six numbers, levels 5 … 0) when given; otherwise ``P["epochs"]`` × the
    number of whole batches in the training set (the official loop drops the last partial batch).

    Returns:
        ``{level: {"steps", "batch", "epochs"}}`` (``epochs`` None when steps were given).
    """
    plan = {}
    for i, level in enumerate(LEVELS):
        batch = int(P["batch_size"][i])
        if batch > n_train:
            raise ValueError(f"batch size {batch} of level {level} exceeds the {n_train} training pairs")
        if P.get("steps") is not None:
            plan[level] = {"steps": int(P["steps"][i]), "batch": batch, "epochs": None}
        else:
            epochs = int(P["epochs"][i])
            plan[level] = {"steps": epochs * (n_train // batch), "batch": batch, "epochs": epochs}
    return plan


def _batch_indices(n: int, batch: int, seed: int, level: int, step: int) -> np.ndarray:
    """The training pairs of ``step``: epoch-wise shuffles without replacement, dropping the last
    partial batch (as the official ``DataLoader(shuffle=True, drop_last=True)``); a function of
    the step alone, so a resumed run replays the same batches."""
    per_epoch = n // batch
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, level, epoch]).permutation(n)
    return order[k * batch:(k + 1) * batch]


def train_level(model: PyNET, level: int, train_set: ZurichRawToRGB, test_set: ZurichRawToRGB | None,
                steps: int, batch: int, lr: float, seed: int, checkpoint: str | Path | None,
                content: torch.nn.Module | None, key: str, device: str = "cpu",
                desc: str | None = None, eval_patches: int = 0) -> train.History:
    """Train one level of ``model`` from its current weights. Used by the PyNET study.

    ``model`` is switched to ``level``; the training targets are resized to that level's output
    size. A new Adam (as the official script starts one per level). At the end the test-set PSNR
    of the level is logged as ``test_psnr`` (official formula, targets at the level's size; on
    the first ``eval_patches`` test patches, 0: all).

    Args:
        key: identifies the configuration (and everything trained before this level); a
            checkpoint saved under another key is not resumed.
    """
    model.set_level(level)
    train_set.set_level(level)

    def batch_fn(step):
        x, y = train_set.batch(_batch_indices(len(train_set), batch, seed, level, step))
        return x.to(device), y.to(device)

    def loss_fn(m, b):
        return pynet_loss(level, m(b[0]), b[1], content)

    def evaluate_fn(m):
        df = evaluate(m, test_set, level=level, ms_ssim=False, device=device, limit=eval_patches)
        return {"test_psnr": float(df["psnr"].mean())}

    cfg = train.TrainConfig(steps=steps, lr=lr, log_every=max(1, min(10, steps // 10)),
                            checkpoint_every=max(1, min(200, steps)))
    return train.train(model, batch_fn, loss_fn, cfg, checkpoint=checkpoint,
                       evaluate_fn=evaluate_fn if test_set is not None else None,
                       desc=desc or f"PyNET level {level}", config_key=key)


def train_levels(model: PyNET, train_set: ZurichRawToRGB, test_set: ZurichRawToRGB, P: dict,
                 run: study.Run, content: torch.nn.Module | None, data_fingerprint: str) -> dict[int, train.History]:
    """Train PyNET coarse to fine, levels 5 → 0, each from the previous level's weights.

    Used by the PyNET study. Each level checkpoints into ``run.path('pynet_level_<L>.pt')``; a
    level's configuration key chains the keys of all coarser levels, so changing level 5 retrains
    every level after it, and a finished chain is reloaded rather than retrained.

    Returns:
        ``{level: History}`` in training order (5 first).
    """
    plan = level_plan(P, len(train_set))
    histories, key = {}, json.dumps({"width": P["width"], "seed": P["seed"], "data": data_fingerprint,
                                     "content": P["content_loss"]}, sort_keys=True)
    for level in LEVELS:
        p = plan[level]
        key = hashlib.sha256(f"{key}|{level}|{p['steps']}|{p['batch']}|{P['lr']}".encode()).hexdigest()
        histories[level] = train_level(model, level, train_set, test_set, p["steps"], p["batch"], P["lr"],
                                       P["seed"], run.path(f"pynet_level_{level}.pt"), content, key,
                                       device=P["device"], eval_patches=P["eval_patches"])
    return histories


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------

def _official_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    return 20 * torch.log10(1.0 / torch.sqrt(mse))


def evaluate(model: PyNET, dataset: ZurichRawToRGB, level: int = 0, ms_ssim: bool = True,
             device: str = "cpu", limit: int = 0) -> "pd.DataFrame":
    """Per test patch metrics of ``model`` at ``level`` (batch 1, as the official evaluation).

    Used by the PyNET study. ``psnr``: ``20·log10(1/√MSE)`` of the sigmoid output against the
    8-bit target at the level's size; ``ms_ssim``: :func:`ms_ssim_official` (when ``ms_ssim``);
    ``ms_ssim_torchmetrics``: torchmetrics' 5-scale MS-SSIM (only when both sides are ≥ 176 px).
    ``limit``: only the first ``limit`` patches (0: all).

    Returns:
        DataFrame, one row per patch (``index``, ``psnr`` and the MS-SSIM columns).
    """
    import pandas as pd

    was_training, old_level = model.training, model.level
    model.eval()
    model.set_level(level)
    rows = []
    with torch.no_grad():
        for i in range(min(limit, len(dataset)) if limit else len(dataset)):
            x = dataset.raw(i)[None].to(device)
            y = dataset.target(i, level)[None].to(device)
            out = model(x)
            rows.append(_metrics_row(i, out, y, ms_ssim))
    model.set_level(old_level)
    model.train(was_training)
    return pd.DataFrame(rows)


def _metrics_row(i: int, out: torch.Tensor, y: torch.Tensor, ms_ssim: bool) -> dict:
    row = {"index": i, "psnr": float(_official_psnr(out, y))}
    if ms_ssim:
        row["ms_ssim"] = float(ms_ssim_official(y, out))  # argument order of the official evaluation
        if min(y.shape[-2:]) >= 176:
            row["ms_ssim_torchmetrics"] = float(metrics.ms_ssim(out, y))
    return row


def evaluate_naive(dataset: ZurichRawToRGB) -> "pd.DataFrame":
    """:func:`evaluate` for :func:`naive_rendering` (full-size targets). Used by the PyNET study."""
    import pandas as pd

    rows = []
    for i in range(len(dataset)):
        out = naive_rendering(dataset.raw(i)[None])
        rows.append(_metrics_row(i, out, dataset.target(i, 0)[None], True))
    return pd.DataFrame(rows)


def summarise(results: dict) -> "pd.DataFrame":
    """Mean of each metric per method (rows) with the number of patches. Used by the PyNET study."""
    import pandas as pd

    out = {}
    for name, df in results.items():
        row = {c: df[c].mean() for c in ("psnr", "ms_ssim", "ms_ssim_torchmetrics") if c in df}
        row["patches"] = len(df)
        out[name] = row
    return pd.DataFrame(out).T


def mean_colour_psnr(train_set: ZurichRawToRGB, test_set: ZurichRawToRGB, level: int, limit: int = 0) -> float:
    """PSNR of the simplest prediction: the training targets' mean colour at every pixel.

    Used by the PyNET study as a reference for the per-level test PSNR (same test patches,
    targets at ``level``'s size): an output that cannot depend on the patch's own colour and
    brightness scores about this.
    """
    mean = torch.stack([train_set.target(i, 5).mean(dim=(1, 2)) for i in range(len(train_set))]).mean(0)
    n = min(limit, len(test_set)) if limit else len(test_set)
    values = []
    for i in range(n):
        y = test_set.target(i, level)[None]
        values.append(float(_official_psnr(mean.view(1, 3, 1, 1).expand_as(y), y)))
    return float(np.mean(values))


def gradient_ratio(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute image gradient of ``pred`` over that of ``target`` (B×3×H×W): below 1 the
    output is smoother than the target (lost texture), above 1 it adds detail or noise.
    Used by the PyNET study's content-loss comparison."""
    def energy(t):
        return ((t[..., 1:, :] - t[..., :-1, :]).abs().mean() + (t[..., :, 1:] - t[..., :, :-1]).abs().mean())

    return float(energy(pred) / energy(target).clamp(min=1e-8))


def content_ablation(train_set: ZurichRawToRGB, test_set: ZurichRawToRGB, P: dict,
                     run: study.Run, histories: dict, data_fingerprint: str) -> tuple["pd.DataFrame", dict]:
    """Level 1 trained from the same level-2 weights with each content term, same steps and data.

    Used by the PyNET study to show what the content term does in the miniature. The chain's own
    level-1 run is one arm (content = ``P['content_loss']``); every other setting of
    ``P['ablation']`` is trained here from the level-2 checkpoint. Evaluated at level 1 (the
    packed input's resolution) on the test set.

    Returns:
        ``(table, histories)``: a DataFrame indexed by content term with ``PSNR``, ``MS-SSIM``
        (official), ``gradient ratio`` (:func:`gradient_ratio`, mean over patches) and
        ``final loss``; and the new runs' histories.
    """
    import pandas as pd

    plan = level_plan(P, len(train_set))[1]
    level2 = train.load_checkpoint(run.path("pynet_level_2.pt"))
    if level2 is None:
        raise FileNotFoundError("the level-2 checkpoint is missing: train the levels first")
    level1 = train.load_checkpoint(run.path("pynet_level_1.pt"))
    if level1 is None:
        raise FileNotFoundError("the level-1 checkpoint is missing: train the levels first")
    own = PyNET(level=1, width=P["width"]).to(P["device"])
    own.load_state_dict(level1["model"])  # the chain's weights at the end of level 1
    arms, new = {P["content_loss"]: own}, {}
    for kind in P["ablation"]:
        if kind == P["content_loss"]:
            continue
        arm = PyNET(level=1, width=P["width"]).to(P["device"])
        arm.load_state_dict(level2["model"])
        key = hashlib.sha256(json.dumps({"ablation": kind, "data": data_fingerprint, "plan": plan, "lr": P["lr"],
                                         "seed": P["seed"], "width": P["width"],
                                         "level2": level2.get("config_key")}, sort_keys=True).encode()).hexdigest()
        new[kind] = train_level(arm, 1, train_set, test_set, plan["steps"], plan["batch"], P["lr"], P["seed"],
                                run.path(f"pynet_level_1_{kind}.pt"), content_network(kind, seed=P["seed"]),
                                key, device=P["device"], desc=f"level 1, content {kind}",
                                eval_patches=P["eval_patches"])
        arms[kind] = arm
    rows = {}
    for kind, arm in arms.items():
        old = arm.level
        arm.set_level(1)
        arm.eval()
        psnr, ms, grad = [], [], []
        with torch.no_grad():
            for i in range(len(test_set)):
                out = arm(test_set.raw(i)[None].to(P["device"]))
                y = test_set.target(i, 1)[None].to(P["device"])
                psnr.append(float(_official_psnr(out, y)))
                ms.append(float(ms_ssim_official(y, out)))
                grad.append(gradient_ratio(out, y))
        arm.set_level(old)
        h = new.get(kind) or histories[1]
        rows[kind] = {"PSNR": np.mean(psnr), "MS-SSIM": np.mean(ms), "gradient ratio": np.mean(grad),
                      "final training loss": h.last("loss")}
    table = pd.DataFrame(rows).T
    table.index.name = "content term at level 1"
    return table, new


def content_sensitivity(dataset: ZurichRawToRGB, networks: dict, n: int = 8, crop: int = 96,
                        seed: int = 0) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """How strongly pixel MSE and each content network react to texture versus colour changes.

    Used by the PyNET study to show, without training, what signal a content term carries. The
    central ``crop``×``crop`` pixels of the first ``n`` test targets are distorted four ways — Gaussian blur (σ 1.5 px, lost
    texture), Gaussian noise (σ 0.05), a colour cast (R ×1.1, B ×0.9), darkening (×0.8) — and
    each measure's distance between distorted and clean image is computed (pixel MSE; for a
    network, the MSE of its ``relu5_4`` features).

    Args:
        networks: name → module from :func:`content_network` (None entries are skipped).

    Returns:
        ``(relative, absolute)``: DataFrames indexed by distortion, one column per measure;
        ``relative`` divides each column by its colour-cast distance, so a measure that weighs
        texture more than colour (relative to pixel MSE) shows larger blur and noise values.
    """
    import pandas as pd
    from torchvision.transforms.functional import gaussian_blur

    clean = torch.stack([dataset.target(i, 0) for i in range(min(n, len(dataset)))])
    h, w = clean.shape[-2:]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    clean = clean[..., top:top + crop, left:left + crop]
    g = torch.Generator().manual_seed(seed)
    cast = torch.tensor([1.1, 1.0, 0.9]).view(1, 3, 1, 1)
    distorted = {
        "blur (Gaussian σ 1.5 px)": gaussian_blur(clean, [9, 9], [1.5, 1.5]),
        "noise (Gaussian σ 0.05)": (clean + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1),
        "colour cast (R ×1.1, B ×0.9)": (clean * cast).clamp(0, 1),
        "darker (×0.8)": clean * 0.8,
    }
    measures = {"pixel MSE": None, **{k: v for k, v in networks.items() if v is not None}}
    absolute = {}
    with torch.no_grad():
        for name, net in measures.items():
            ref = clean if net is None else net(clean)
            absolute[name] = {d: float(F.mse_loss(img if net is None else net(img), ref))
                              for d, img in distorted.items()}
    absolute = pd.DataFrame(absolute)
    absolute.index.name = "distortion of the target"
    return absolute / absolute.loc["colour cast (R ×1.1, B ×0.9)"], absolute


# ------------------------------------------------------------------------------------------------
# Tables, record rows, findings
# ------------------------------------------------------------------------------------------------

def pynet_protocol(dataset: str, n: int, patch: int, extra: str = "") -> str:
    """The evaluation protocol of the PyNET tables (printed above each). Used by the PyNET study."""
    text = (f"Protocol: {n} test patches of {dataset} ({patch}×{patch} output pixels), batch 1; PSNR = "
            "20·log10(1/√MSE) of the sigmoid output (float, [0, 1]) against the 8-bit target JPEG / 255, "
            "per patch, averaged (as the official train_model.py / evaluate_accuracy.py); MS-SSIM: the "
            "official msssim.py definition (5 scales, Gaussian window 11 σ 1.5, valid filtering), per "
            "patch, averaged; 'MS-SSIM (torchmetrics)' is torchmetrics' 5-scale MS-SSIM as a cross-check; "
            "no border crop.")
    return text + (" " + extra if extra else "")


def results_table(summary: "pd.DataFrame", ours: str, naive: str, dataset: str) -> "pd.DataFrame":
    """Ours, the naive rendering and the published pretrained model in one table, each row
    labelled with its data and its source. Used by the PyNET study. The published numbers come
    from ``published.yaml`` (the official model on the real Zurich test set)."""
    import pandas as pd

    rows = []
    for name, source in ((ours, "trained in this run"), (naive, "no training (baseline)")):
        s = summary.loc[name]
        rows.append({"model": name, "source": source, "data": dataset, "PSNR": s["psnr"],
                     "MS-SSIM": s["ms_ssim"], "MS-SSIM (torchmetrics)": s.get("ms_ssim_torchmetrics", np.nan)})
    pub = {r["key"].rsplit("/", 1)[1]: r for r in report.published(key="pynet/zurich", kind="paper")}
    if "psnr" in pub:
        rows.append({"model": pub["psnr"]["model"], "source": f"published: {pub['psnr']['source']}",
                     "data": pub["psnr"]["dataset"], "PSNR": pub["psnr"]["value"],
                     "MS-SSIM": pub.get("ms_ssim", {}).get("value"), "MS-SSIM (torchmetrics)": np.nan})
    return pd.DataFrame(rows).set_index("model")


def level_table(histories: dict, plan: dict, reference: dict | None = None, content: bool = True) -> "pd.DataFrame":
    """Per level: output scale (of the mosaic's resolution), steps, batch, loss, final training
    loss, test PSNR at the level's size, and (``reference``: level → dB, e.g. from
    :func:`mean_colour_psnr`) the mean-colour reference. ``content``: whether the losses had a
    content term (the loss column says so). Used by the PyNET study."""
    import pandas as pd

    rows = {}
    for level, h in histories.items():
        rows[f"level {level}"] = {"output scale": f"1/{2 ** level}" if level else "1 (mosaic)",
                                  "steps": plan[level]["steps"], "batch": plan[level]["batch"],
                                  "loss": _loss_name(level, content), "final training loss": h.last("loss"),
                                  "test PSNR (dB)": h.last("test_psnr"), "seconds": round(h.seconds, 1)}
        if reference is not None:
            rows[f"level {level}"]["mean-colour reference (dB)"] = reference[level]
    return pd.DataFrame(rows).T


def _loss_name(level: int, content: bool = True) -> str:
    name = {5: "MSE", 4: "MSE", 0: "MSE + content + 0.4·(1−MS-SSIM)"}.get(level, "10·MSE + content")
    return name if content else name.replace(" + content", "")


def metric_rows(summary: "pd.DataFrame", name: str, model: str, key_prefix: str, protocol: str) -> list[dict]:
    """Run-record rows (PSNR, MS-SSIM, MS-SSIM torchmetrics) of one method. Used by the PyNET study."""
    s = summary.loc[name]
    out = []
    for col, suffix, label in (("psnr", "psnr", "PSNR (dB)"), ("ms_ssim", "ms_ssim", "MS-SSIM"),
                               ("ms_ssim_torchmetrics", "ms_ssim_torchmetrics", "MS-SSIM (torchmetrics)")):
        if col in s and not _isna(s[col]):
            out.append({"key": f"{key_prefix}/{suffix}", "model": model, "metric": label,
                        "value": round(float(s[col]), 4), "protocol": protocol, "split": "test",
                        "images": int(s["patches"])})
    return out


def _isna(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def findings(summary: "pd.DataFrame", ours: str, naive: str, levels: "pd.DataFrame",
             ablation: "pd.DataFrame | None", P: dict, synthetic: bool) -> str:
    """The "What we found" paragraph, computed from the tables. Used by the PyNET study."""
    o, n = summary.loc[ours], summary.loc[naive]
    gain = o["psnr"] - n["psnr"]
    verdict = "beats" if gain > 0 else "does not beat"
    text = [f"Level 0 of our PyNET (width {P['width']}) reaches {o['psnr']:.2f} dB PSNR and "
            f"{o['ms_ssim']:.4f} MS-SSIM on the test patches; the naive rendering of the raw input "
            f"reaches {n['psnr']:.2f} dB and {n['ms_ssim']:.4f}: the network {verdict} it by "
            f"{abs(gain):.2f} dB."]
    psnrs = levels["test PSNR (dB)"].astype(float)
    text.append("Test PSNR after each level (coarse to fine, each at its own output size): "
                + ", ".join(f"{k} {v:.2f} dB" for k, v in psnrs.items()) + ".")
    if "mean-colour reference (dB)" in levels:
        below = [k for k, v in psnrs.items() if v <= float(levels.loc[k, "mean-colour reference (dB)"])]
        if below:
            text.append(f"At {', '.join(below)} the network does no better than predicting the training "
                        "targets' mean colour everywhere: these outputs are a few pixels a side, and "
                        "what they learn shows only through the finer levels built on their features.")
    if ablation is not None and len(ablation) > 1:
        parts = [f"{k}: {r['PSNR']:.2f} dB, MS-SSIM {r['MS-SSIM']:.4f}, gradient ratio {r['gradient ratio']:.2f}"
                 for k, r in ablation.iterrows()]
        text.append("Level 1 from the same level-2 weights with each content term — " + "; ".join(parts) + ".")
    if synthetic:
        text.append("This is a miniature: a synthetic phone sensor and a synthetic 'DSLR' look, a "
                    "network at a fraction of the width, minutes of CPU training. It shows that the "
                    "level-wise pipeline learns a RAW-to-RGB mapping that a fixed rendering misses; it "
                    "cannot say whether PyNET reaches the published 21.17 dB / 0.8623 on the real Zurich "
                    "data, where the phone and the DSLR also differ in geometry and in their scenes' "
                    "unresolvable differences.")
    return " ".join(text)


def parameter_count(width: float = 1.0) -> int:
    """PyNET's number of parameters at ``width`` (built on the meta device: no memory, fast).
    Used by the PyNET study (47,554,738 at width 1)."""
    with torch.device("meta"):
        model = PyNET(width=width)
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------

def plot_level_curves(histories: dict, content: bool = True):
    """Training loss against the global step, one line per level (5 → 0), log scale.
    Used by the PyNET study. The levels' losses differ in form (see :func:`pynet_loss`), so the
    curves show each level's progress, not one comparable quantity."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    offset = 0
    cmap = plt.get_cmap("viridis")
    for j, (level, h) in enumerate(histories.items()):
        c = h.curves.get("loss", [])
        if c:
            ax.plot([offset + p["step"] for p in c], [p["value"] for p in c], color=cmap(j / 5),
                    label=f"level {level}: {_loss_name(level, content)}")
            offset += c[-1]["step"]
            ax.axvline(offset, color="0.85", lw=0.8)
    ax.set(xlabel="training step (levels one after another)", ylabel="training loss", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def image_grid(model: PyNET, dataset: ZurichRawToRGB, indices: Sequence[int], device: str = "cpu"):
    """Test patches: naive rendering of the raw input / ours (level 0) / target, one row each,
    with each patch's PSNR. Used by the PyNET study."""
    import matplotlib.pyplot as plt

    old = model.level
    model.eval()
    model.set_level(0)
    fig, axes = plt.subplots(len(indices), 3, figsize=(8, 2.8 * len(indices)), squeeze=False)
    titles = ("raw input, naive rendering", "ours (PyNET level 0)", "target")
    with torch.no_grad():
        for row, i in zip(axes, indices):
            x, y = dataset.raw(i)[None], dataset.target(i, 0)[None]
            shown = [naive_rendering(x), model(x.to(device)).cpu(), y]
            for k, (ax, im) in enumerate(zip(row, shown)):
                ax.imshow(im[0].clamp(0, 1).permute(1, 2, 0).numpy())
                label = titles[k] if ax.get_subplotspec().is_first_row() else ""
                if k < 2:
                    label += f"\n{float(_official_psnr(im, y)):.2f} dB"
                ax.set_title(label, fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
    model.set_level(old)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Parameters of the notebook
# ------------------------------------------------------------------------------------------------

def _six_positive(v) -> str | None:
    if len(v) != len(LEVELS) or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in v):
        return "must be six positive integers, for levels 5, 4, 3, 2, 1, 0"
    return None


def _ablation_check(v) -> str | None:
    bad = [k for k in v if k not in CONTENT_LOSSES or k == "vgg19-imagenet"]
    return f"entries must be among {CONTENT_LOSSES[1:]}" if bad else None


_P = study.Parameter

#: parameters of ``notebooks/pynet.ipynb``
PARAMETERS = {
    "profile": _P((str,), choices=study.PROFILES, help="smoke (tests), mini (the book), full (the paper)"),
    "data_root": _P((str,), profiles={"smoke": "", "mini": "", "full": ""},
                    help="Zurich RAW-to-RGB folder (train/, test/); empty: the profile's data set"),
    "device": _P((str,), profiles={"smoke": "cpu", "mini": "cpu", "full": "cpu"}, check=study.torch_device,
                 help="torch device"),
    "seed": _P((int,), profiles={"smoke": 0, "mini": 0, "full": 0}, check=study.non_negative,
               help="seed of initialisation and batch order"),
    "width": _P((float,), profiles={"smoke": 0.125, "mini": 0.25, "full": 1.0}, check=study.positive,
                help="channel-width multiplier of PyNET (1.0 = the published network)"),
    "steps": _P((list, None), profiles={"smoke": [2, 2, 2, 2, 2, 2], "mini": [150, 150, 150, 150, 200, 150],
                                        "full": None},
                check=_six_positive, help="optimisation steps per level 5…0 (None: epochs × batches per epoch)"),
    "epochs": _P((list,), profiles={k: [OFFICIAL_EPOCHS[lv] for lv in LEVELS] for k in study.PROFILES},
                 check=_six_positive, help="epochs per level 5…0 when steps is None (official: 8, 8, 17, 17, 25, 50)"),
    "batch_size": _P((list,), profiles={"smoke": [2] * 6, "mini": [8, 8, 8, 8, 2, 2],
                                        "full": [OFFICIAL_BATCH_SIZES[lv] for lv in LEVELS]},
                     check=_six_positive, help="batch size per level 5…0 (official: 50, 50, 50, 50, 16, 12)"),
    "lr": _P((float,), profiles={"smoke": 3e-3, "mini": 3e-3, "full": OFFICIAL_LR}, check=study.positive,
             help="Adam learning rate of every level (official: 5e-5)"),
    "content_loss": _P((str,), profiles={"smoke": "none", "mini": "none", "full": "vgg19-imagenet"},
                       choices=CONTENT_LOSSES, help="content term of levels 3–0"),
    "vgg_root": _P((str,), profiles={"smoke": "", "mini": "", "full": ""},
                   help="folder holding vgg19-dcbb9e9d.pth (empty: the data cache)"),
    "ablation": _P((list,), profiles={"smoke": ["none", "vgg19-random"], "mini": [],
                                      "full": []},
                   check=_ablation_check, help="content terms compared at level 1 (empty: no comparison)"),
    "eval_patches": _P((int,), profiles={"smoke": 2, "mini": 8, "full": 0}, check=study.non_negative,
                       help="test patches for the per-level PSNR during training (0: all; the final "
                            "evaluation always uses all)"),
    "grid": _P((int,), profiles={"smoke": 2, "mini": 4, "full": 6}, check=study.positive,
               help="test patches in the image grid"),
}


def vgg_weights(P: dict) -> Path | None:
    """The ImageNet VGG-19 file when ``content_loss`` is ``'vgg19-imagenet'`` (None otherwise).

    Used by the PyNET study. Checked where the user put it (``vgg_root`` or the data cache), never
    downloaded at run time; when missing, the error says how to get it.
    """
    if P["content_loss"] != "vgg19-imagenet":
        return None
    root = data.prepare("vgg19-imagenet", P["vgg_root"] or None, download=False)
    return root / data.entry("vgg19-imagenet")["layout"][0]["path"]


def check_sizes(dataset: ZurichRawToRGB) -> int:
    """The packed side of a data set's patches, checked against PyNET's input rule (multiples of
    16, at least 32). Used by the PyNET study."""
    h, w = dataset.raw(0).shape[-2:]
    if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE or min(h, w) < MIN_INPUT_SIZE:
        raise ValueError(f"{dataset.raw_dir}: packed patches are {h}×{w}; PyNET needs multiples of "
                         f"{INPUT_MULTIPLE} of at least {MIN_INPUT_SIZE}")
    return h
