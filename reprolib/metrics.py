"""Image-quality metrics (torchmetrics underneath) and PyNET's own PSNR and MS-SSIM
(:func:`psnr_official`, :func:`ms_ssim_official`), which define its published numbers.

Protocol (:func:`protocol`): per-image PSNR / SSIM of sRGB ``B×3×H×W`` in ``[0, 1]``, averaged over
the test images; ``*_8bit``: both quantised to 8 bits first (the SID authors scored 8-bit PNGs).
SSIM: Gaussian window 11, σ = 1.5, K = (0.01, 0.03), mean over the channels; no border crop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (multiscale_structural_similarity_index_measure,
                                           peak_signal_noise_ratio,
                                           structural_similarity_index_measure)

__all__ = ["psnr", "ssim", "ms_ssim", "quantize_8bit", "image_metrics", "protocol", "psnr_official",
           "ms_ssim_official"]


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
    """PSNR and SSIM per image, on float and 8-bit quantised sRGB: ``{"psnr": [...], "ssim": [...],
    "psnr_8bit": [...], "ssim_8bit": [...]}``."""
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


def psnr_official(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, ``(B,)``, as PyNET's official code: ``20·log10(1/√MSE)`` of
    ``B×C×H×W`` images in ``[0, 1]``, ``pred`` not clamped. Used by the PyNET study."""
    mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    return 20 * torch.log10(1.0 / torch.sqrt(mse))


def _gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).to(torch.float32)


def ms_ssim_official(pred: torch.Tensor, target: torch.Tensor, normalize: str | None = None,
                     reduction: str = "none") -> torch.Tensor:
    """MS-SSIM as PyNET's ``msssim.py`` (its level-0 loss and published metric). Unlike
    :func:`ms_ssim`: the window (11, σ 1.5) shrinks to a small image (64-px patches work at 5
    scales); 'valid' filtering; a scale's contrast-structure term is the mean of the ratio map;
    weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333; 2×2 average pooling; dynamic range 1.

    Args:
        pred, target: ``float32`` B×3×H×W in ``[0, 1]``.
        normalize: ``None`` as the official code (a negative scale term gives NaN), or ``'relu'``
            to clamp each scale's terms at 0 (PyNET's training loss).
        reduction: ``'none'``: one value per image, ``(B,)``; ``'batch'``: one value, the means
            taken over the batch *before* the product, as the official loss does.
    """
    _check(pred, target)
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
