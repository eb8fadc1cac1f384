"""Image-quality metrics with their protocol stated (torchmetrics underneath).

Used by the SID, Lamba & Mitra and PyNET studies. Every table prints :func:`protocol` above it.

Protocol: per-image PSNR / SSIM on sRGB images in ``[0, 1]`` (``B×3×H×W``), averaged over the
test images (not PSNR of the pooled MSE). ``*_8bit`` variants first quantise both images to 8 bits,
as the SID authors did (they evaluated saved 8-bit PNGs in MATLAB). SSIM: torchmetrics' Gaussian
window 11, σ = 1.5, K = (0.01, 0.03), computed on the three channels and averaged; no border crop.
"""
from __future__ import annotations

import torch
from torchmetrics.functional.image import (multiscale_structural_similarity_index_measure,
                                           peak_signal_noise_ratio,
                                           structural_similarity_index_measure)

__all__ = ["psnr", "ssim", "ms_ssim", "quantize_8bit", "image_metrics", "protocol"]


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"pred and target must both be B×C×H×W of the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Clamp to ``[0, 1]`` and round to the 256 levels of an 8-bit image (values stay in [0, 1])."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, ``(B,)``, of ``B×C×H×W`` images in ``[0, 1]`` (pred is clamped)."""
    _check(pred, target)
    return peak_signal_noise_ratio(pred.clamp(0, 1), target, data_range=1.0, reduction="none",
                                   dim=(1, 2, 3))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM, ``(B,)`` (Gaussian window 11, σ 1.5; mean over channels and pixels)."""
    _check(pred, target)
    return structural_similarity_index_measure(pred.clamp(0, 1), target, data_range=1.0,
                                               reduction="none")


def ms_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image MS-SSIM, ``(B,)``, 5 scales. Each side must be ≥ 176 px (torchmetrics' limit)."""
    _check(pred, target)
    if min(pred.shape[-2:]) < 176:
        raise ValueError(f"MS-SSIM at 5 scales needs each side >= 176 px, got {tuple(pred.shape[-2:])}")
    return multiscale_structural_similarity_index_measure(pred.clamp(0, 1), target, data_range=1.0,
                                                          reduction="none")


def image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, list[float]]:
    """PSNR and SSIM per image, on float sRGB and on 8-bit quantised sRGB.

    Returns:
        ``{"psnr": [...], "ssim": [...], "psnr_8bit": [...], "ssim_8bit": [...]}`` (one value per image).
    """
    p8, t8 = quantize_8bit(pred), quantize_8bit(target)
    return {"psnr": psnr(pred, target).tolist(), "ssim": ssim(pred, target).tolist(),
            "psnr_8bit": psnr(p8, t8).tolist(), "ssim_8bit": ssim(p8, t8).tolist()}


def protocol(extra: str = "") -> str:
    """The evaluation protocol, one paragraph, for printing above a table."""
    text = ("Protocol: sRGB output clamped to [0, 1] vs the ground truth rendered from the long "
            "exposure; PSNR and SSIM per image (torchmetrics; SSIM Gaussian window 11, σ = 1.5, "
            "channel mean), averaged over the test images; '8-bit' columns quantise both images to "
            "8 bits first (the SID authors evaluated saved 8-bit PNGs in MATLAB); no border crop.")
    return text + (" " + extra if extra else "")
