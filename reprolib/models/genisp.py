"""GenISP: Morawski et al., "GenISP: Neural ISP for Low-Light Machine Cognition", CVPRW 2022.

No official code: the layers follow the paper's Fig. 3; ``GenISP()`` has 115,855 parameters
(paper: about 116k). See the book's page *The networks* for the choices where the paper is silent.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ImageToParameter", "GenISP", "gray_world_loss", "TRUNK_SIZE"]

#: side of the resized copy the image-to-parameter modules see (the paper's choice)
TRUNK_SIZE = 256


class ImageToParameter(nn.Module):
    """Image-to-parameter trunk of ConvWB (``n_outputs=3``) / ConvCC (9): ``float32`` B×3×H×W,
    any H, W → B×``n_outputs`` global values, unconstrained, from a 256×256 bilinear resized copy.

    Paper, Fig. 3: conv7×7 3→16, conv5×5 16→32, conv3×3 32→128, each with LeakyReLU (0.01) and
    2×2 max-pool; global average; then the MLP, here one linear layer 128 → ``n_outputs`` (all
    that the paper's ~116k parameters leave room for).
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
        # zero bias: a small, zero-centred output at initialisation (WB / CC near the identity)
        nn.init.zeros_(self.mlp.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(image, size=(TRUNK_SIZE, TRUNK_SIZE), mode="bilinear",
                              align_corners=False, antialias=False)
        return self.mlp(self.features(small))


class GenISP(nn.Module):
    """GenISP: ConvWB, ConvCC and a shallow ConvNet (GenISP study).

    ConvWB regresses 3 values ``o`` and scales each pixel by gains ``exp(o)``; ConvCC regresses 9
    and applies ``I + reshape(o, 3×3)`` (row = output channel): both start near the identity.
    Shallow ConvNet (Fig. 3): conv3×3 3→16, InstanceNorm (no affine parameters, as the 115,855
    count assumes), LeakyReLU; conv3×3 16→64, InstanceNorm, LeakyReLU; linear conv1×1 64→3.

    Args:
        use_wb, use_cc: apply ConvWB / ConvCC; ``False`` (the ablations) creates no parameters.

    Input: ``float32`` B×3×H×W, R, G (greens averaged), B of the packed raw — optionally in CIE
    XYZ — black-subtracted, values ≥ 0 and typically small in low light (≪ 1). Output:
    ``float32`` B×3×H×W, same size, unconstrained (roughly ``[0, 1]`` after training, as the
    detector's loss pulls it there; clamp for display only).

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
    """Gray-world colour regulariser quoted by the GenISP paper: ``|μR − μG| + |μR − μB| +
    |μG − μB|`` with μ the per-image channel means of ``image`` (B×3×H×W, any range), averaged
    over the batch; a scalar tensor ≥ 0, zero when every image is gray on average."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"gray_world_loss expects B×3×H×W, got shape {tuple(image.shape)}")
    r, g, b = image.mean(dim=(2, 3)).unbind(dim=1)
    return ((r - g).abs() + (r - b).abs() + (g - b).abs()).mean()
