"""GenISP: Morawski, Chen, Lin, Dangi, He & Hsu, "GenISP: Neural ISP for Low-Light Machine
Cognition", CVPRW 2022 (arXiv 2205.03688) — the network of the GenISP study.

No official code exists. The layers follow the paper's Fig. 3 as the public reproductions read it;
the details the paper leaves open are chosen here and stated where they are made
(:class:`ImageToParameter`, :class:`GenISP`).

Pipeline (input prepared by the data module: packed raw, the two greens averaged to R, G, B,
optionally camera RGB → CIE XYZ):

    x ──ConvWB──> diag(w) · x ──ConvCC──> M · (diag(w) · x) ──shallow ConvNet──> detector input

ConvWB and ConvCC are *image-to-parameter* modules: each looks at a 256×256 resized copy of its
input and regresses a global matrix that is then applied to every pixel of the full-size image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ImageToParameter", "GenISP", "gray_world_loss", "TRUNK_SIZE"]

#: side of the resized copy the image-to-parameter modules see (the paper's choice)
TRUNK_SIZE = 256


class ImageToParameter(nn.Module):
    """Image-to-parameter trunk of ConvWB / ConvCC: a small ConvNet that regresses ``n_outputs``
    global values from a 256×256 resized copy of the image.

    Layers (paper, Fig. 3): bilinear resize to 256×256; conv7×7 3→16, LeakyReLU, max-pool;
    conv5×5 16→32, LeakyReLU, max-pool; conv3×3 32→128, LeakyReLU, max-pool; adaptive average
    pool to 1×1; MLP → ``n_outputs``.

    Choices where the paper is silent:

    * **MLP = one linear layer 128 → n_outputs.** The paper reports about 116k parameters for the
      whole GenISP; the convolutions of the two trunks and the shallow ConvNet already hold
      114,307, so the two MLPs can hold only ~1.7k: a single linear layer each (387 + 1,161)
      gives 115,855 in total. A hidden layer of 16 units would give 118,639, of 64 units
      131,599 (13 % over).
    * **Max-pool 2×2, stride 2**, the common default; it has no parameters, so the count does not
      constrain it. With "same" zero padding in the convolutions the feature maps are
      256 → 128 → 64 → 32 before the global average.
    * **LeakyReLU slope 0.01** (PyTorch's default; the paper gives no slope).
    * **Resize: ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``**, the
      plain bilinear resize the paper names. Down-scaling without anti-aliasing aliases fine
      texture, but these modules only need global colour statistics.

    Args:
        n_outputs: 3 for ConvWB, 9 for ConvCC.

    Input: ``float32`` B×3×H×W, any H, W. Output: ``float32`` B×``n_outputs``, unconstrained.
    """

    def __init__(self, n_outputs: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 7, padding=3), nn.LeakyReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.LeakyReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 128, 3, padding=1), nn.LeakyReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.mlp = nn.Linear(128, n_outputs)
        # Zero bias: the output is then a small, zero-centred random value at initialisation, so
        # ConvWB / ConvCC start close to the identity (see GenISP).
        nn.init.zeros_(self.mlp.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(image, size=(TRUNK_SIZE, TRUNK_SIZE), mode="bilinear",
                              align_corners=False, antialias=False)
        return self.mlp(self.features(small))


class GenISP(nn.Module):
    """GenISP: ConvWB, ConvCC and a shallow ConvNet (GenISP study).

    * **ConvWB** regresses 3 values ``o``; the white-balance gains are ``w = exp(o)``, applied as
      ``diag(w)`` to every pixel. The exponential keeps gains positive (a negative gain would invert
      a colour channel, which no white balance does), makes up- and down-scaling symmetric, and
      gives ``w ≈ 1`` for ``o ≈ 0``.
    * **ConvCC** sees the white-balanced image and regresses 9 values ``o``; the colour-correction
      matrix is ``M = I + reshape(o, 3×3)`` (row = output channel), applied to every pixel.
      Written as a residual around the identity so that an untrained ConvCC passes colours through.
    * At initialisation the last linear layer of each trunk has zero bias and PyTorch's default
      weights, so ``o`` is small (|o| < 0.15 over 20 seeds for inputs in ``[0, 1]``): WB and CC
      start *near* (not exactly at) the identity, and every parameter receives gradient from the
      first step.
      (Zero weights would start exactly at the identity but block the trunks' gradients until the
      first update.)
    * **Shallow ConvNet** (paper, Fig. 3): conv3×3 3→16, InstanceNorm, LeakyReLU; conv3×3 16→64,
      InstanceNorm, LeakyReLU; conv1×1 64→3. Zero "same" padding keeps the size. InstanceNorm has no
      affine parameters (PyTorch default; the count 115,855 assumes this, affine would add 160).
    * **Output range: unconstrained** (the final 1×1 conv is linear, as in the figure). The
      InstanceNorm layers already fix the feature scale whatever the input exposure — that is
      how the network brightens dark frames — so the output has a scale of order 1 without a
      squashing function; a sigmoid would saturate and starve the gradients for bright or dark
      regions. The downstream detector normalises its input (torchvision: ImageNet mean/std) and
      is trained on images of roughly ``[0, 1]``; the detector's loss pulls the output there.
      Clamp for display only.

    Args:
        use_wb: apply ConvWB (``False`` for the ablation without it; no WB parameters are created).
        use_cc: apply ConvCC (likewise).

    Input: ``float32`` B×3×H×W, R, G (greens averaged), B of the packed raw — optionally in CIE
    XYZ — black-subtracted, values ≥ 0 and typically small in low light (≪ 1). Output:
    ``float32`` B×3×H×W, same size, unconstrained (roughly ``[0, 1]`` after training).

    Example:
        >>> model = GenISP()
        >>> model(torch.rand(2, 3, 200, 300) * 0.05).shape
        torch.Size([2, 3, 200, 300])
    """

    def __init__(self, use_wb: bool = True, use_cc: bool = True):
        super().__init__()
        self.use_wb, self.use_cc = use_wb, use_cc
        self.conv_wb = ImageToParameter(3) if use_wb else None
        self.conv_cc = ImageToParameter(9) if use_cc else None
        self.shallow_convnet = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.InstanceNorm2d(16), nn.LeakyReLU(),
            nn.Conv2d(16, 64, 3, padding=1), nn.InstanceNorm2d(64), nn.LeakyReLU(),
            nn.Conv2d(64, 3, 1),
        )

    def white_balance_gains(self, image: torch.Tensor) -> torch.Tensor:
        """ConvWB's gains, B×3 (positive), for a B×3×H×W image."""
        return torch.exp(self.conv_wb(image))

    def color_correction_matrix(self, image: torch.Tensor) -> torch.Tensor:
        """ConvCC's matrix, B×3×3 (row = output channel), for a B×3×H×W white-balanced image."""
        offsets = self.conv_cc(image).view(-1, 3, 3)
        return torch.eye(3, dtype=offsets.dtype, device=offsets.device) + offsets

    def color_process(self, image: torch.Tensor) -> torch.Tensor:
        """The two-stage colour processing (WB then CC), B×3×H×W → B×3×H×W."""
        if self.use_wb:
            image = image * self.white_balance_gains(image)[:, :, None, None]
        if self.use_cc:
            image = torch.einsum("bij,bjhw->bihw", self.color_correction_matrix(image), image)
        return image

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """B×3×H×W raw RGB/XYZ (≥ 0) → B×3×H×W enhanced image for the detector (see the class)."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"GenISP expects B×3×H×W, got shape {tuple(image.shape)}")
        return self.shallow_convnet(self.color_process(image))


def gray_world_loss(image: torch.Tensor) -> torch.Tensor:
    """Gray-world colour regulariser quoted by the GenISP paper.

    ``|μR − μG| + |μR − μB| + |μG − μB|`` with μ the per-image channel means, averaged over the
    batch. Zero when every image's channels have equal means (a "gray" image on average).

    Args:
        image: B×3×H×W, any range.

    Returns:
        scalar tensor ≥ 0.
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"gray_world_loss expects B×3×H×W, got shape {tuple(image.shape)}")
    r, g, b = image.mean(dim=(2, 3)).unbind(dim=1)
    return ((r - g).abs() + (r - b).abs() + (g - b).abs()).mean()
