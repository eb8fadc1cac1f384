"""Training losses: SID's L1, Lamba & Mitra's loss ablation, PyNET's level-wise losses. All take
``pred`` and ``target`` as ``B×3×H×W`` in ``[0, 1]`` and return a scalar.

Lamba & Mitra's official code computes ``L1 + 0.2·(1 − MS-SSIM)`` (our default: the published
weights were trained with it); a public reproduction quotes the paper as
``0.8·L1 + 0.2·(1 − MS-SSIM)``. MS-SSIM at 5 scales needs crops of at least 176 px a side.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (multiscale_structural_similarity_index_measure,
                                           structural_similarity_index_measure)
from torchvision.models.vgg import cfgs, make_layers

from .metrics import ms_ssim_official

__all__ = ["l1", "ssim_loss", "ms_ssim_loss", "l1_ms_ssim", "LOSSES", "get_loss",
           "OFFICIAL_LLE_WEIGHTS", "PAPER_QUOTED_LLE_WEIGHTS", "CONTENT_LOSSES", "content_network", "pynet_loss"]

OFFICIAL_LLE_WEIGHTS = (1.0, 0.2)      # as coded in the official training script
PAPER_QUOTED_LLE_WEIGHTS = (0.8, 0.2)  # as a public reproduction quotes the paper


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (SID's only loss)."""
    return F.l1_loss(pred, target)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 − SSIM`` (Gaussian window 11, σ 1.5)."""
    return 1 - structural_similarity_index_measure(pred, target, data_range=1.0)


def ms_ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 − MS-SSIM`` (5 scales; each side ≥ 176 px)."""
    if min(pred.shape[-2:]) < 176:
        raise ValueError(f"MS-SSIM loss needs crops of at least 176 px a side, got {tuple(pred.shape[-2:])}")
    # normalize='relu' keeps the product of the scales defined early in training (negative cs values)
    return 1 - multiscale_structural_similarity_index_measure(pred, target, data_range=1.0,
                                                              normalize="relu")


def l1_ms_ssim(pred: torch.Tensor, target: torch.Tensor, weights=OFFICIAL_LLE_WEIGHTS) -> torch.Tensor:
    """``w_l1·L1 + w_ms·(1 − MS-SSIM)``; default weights as in the official Lamba & Mitra code."""
    return weights[0] * l1(pred, target) + weights[1] * ms_ssim_loss(pred, target)


LOSSES = {"l1": l1, "ssim": ssim_loss, "ms_ssim": ms_ssim_loss, "l1_ms_ssim": l1_ms_ssim,
          "l1_ms_ssim_paper": lambda p, t: l1_ms_ssim(p, t, PAPER_QUOTED_LLE_WEIGHTS)}


def get_loss(name: str):
    """A loss by name, with a clear error listing the known names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}") from None


#: PyNET's content term: VGG-19 with ImageNet weights (the paper's), with random weights, or none
CONTENT_LOSSES = ("vgg19-imagenet", "vgg19-random", "none")
#: VGG-19's ``relu5_4`` sits behind four 2×2 poolings: images below this side give no feature map
CONTENT_MIN_SIDE = 16


class _VGGContent(torch.nn.Module):
    """VGG-19 features up to ``relu5_4`` of ImageNet-normalised ``[0, 1]`` images (frozen)."""

    def __init__(self, features: torch.nn.Sequential, kind: str):
        super().__init__()
        self.features, self.kind = features, kind
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always frozen, whatever the caller's mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


def content_network(kind: str, weights: str | Path | None = None, seed: int = 0,
                    device: str | torch.device = "cpu") -> torch.nn.Module | None:
    """The frozen network of PyNET's content loss: VGG-19 up to ``relu5_4`` (the official
    ``'relu_16'``), mapping B×3×H×W in ``[0, 1]`` to B×512×H/16×W/16; None for ``kind='none'``.
    ``'vgg19-imagenet'``: weights from the file ``weights`` (torchvision's ``vgg19-dcbb9e9d.pth``);
    ``'vgg19-random'``: torchvision's initialisation (Kaiming normal, fan-out) drawn from ``seed``;
    on ``device`` (the training's: the loss runs it on the network's outputs).
    """
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
        features.load_state_dict({k: state[f"features.{k}"] for k in features.state_dict()})
    else:
        g = torch.Generator().manual_seed(seed)
        for m in features:
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
                torch.nn.init.zeros_(m.bias)
    return _VGGContent(features, kind).to(device)


def pynet_loss(level: int, pred: torch.Tensor, target: torch.Tensor,
               content: torch.nn.Module | None = None) -> torch.Tensor:
    """PyNET's training loss at ``level`` (official ``train_model.py``), of ``float32``
    B×3×H×W in ``[0, 1]``: ``MSE`` (levels 5, 4); ``10·MSE + content`` (3, 2, 1);
    ``MSE + content + 0.4·(1 − MS-SSIM)`` (0; :func:`~reprolib.metrics.ms_ssim_official` over
    the batch, scale terms clamped at 0). ``content``: ``MSE(vgg(pred), vgg(target))`` with
    :func:`content_network`; left out when None or when the images are smaller than
    :data:`CONTENT_MIN_SIDE` (``relu5_4`` would be empty)."""
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
