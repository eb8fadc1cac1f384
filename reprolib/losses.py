"""Training losses (Lamba & Mitra's loss ablation, SID's L1, PyNET's level-0 loss).

All take ``pred`` and ``target`` as ``B×3×H×W`` in ``[0, 1]`` and return a scalar.

Lamba & Mitra's combined loss: the official code computes ``L1 + 0.2·(1 − MS-SSIM)``
(:func:`l1_ms_ssim`, weights ``(1.0, 0.2)``, **our default**, because the published weights were
trained with it); a public reproduction quotes the paper as ``0.8·L1 + 0.2·(1 − MS-SSIM)``
(weights ``(0.8, 0.2)``). MS-SSIM at 5 scales needs crops of at least 176 px a side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (multiscale_structural_similarity_index_measure,
                                           structural_similarity_index_measure)

__all__ = ["l1", "ssim_loss", "ms_ssim_loss", "l1_ms_ssim", "LOSSES", "get_loss",
           "OFFICIAL_LLE_WEIGHTS", "PAPER_QUOTED_LLE_WEIGHTS"]

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


LOSSES = {
    "l1": l1,
    "ssim": ssim_loss,
    "ms_ssim": ms_ssim_loss,
    "l1_ms_ssim": l1_ms_ssim,
    "l1_ms_ssim_paper": lambda p, t: l1_ms_ssim(p, t, PAPER_QUOTED_LLE_WEIGHTS),
}


def get_loss(name: str):
    """A loss by name, with a clear error listing the known names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}") from None
