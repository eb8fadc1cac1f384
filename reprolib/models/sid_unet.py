"""The U-Net of "Learning to See in the Dark" (Chen et al., CVPR 2018), in PyTorch.

Faithful to ``network()`` in the official TensorFlow code (cchen156/Learning-to-See-in-the-Dark,
``train_Sony.py`` / ``test_Sony.py``): five levels of two 3×3 convolutions with LeakyReLU(0.2)
(widths 32-64-128-256-512), 2×2 max-pooling, 2×2 stride-2 transposed convolutions **without
bias** (the official code creates them as bare ``tf.Variable`` filters), concatenation
``[upsampled, skip]``, a final 1×1 convolution to 12 channels with no activation, and
depth-to-space ×2. ``SIDUNet()`` has 7,760,268 parameters, exactly the variables of the released
Sony checkpoint. ``SIDUNet(in_channels=9, upscale=3)`` is the released Fuji (X-Trans) network:
9-channel X-Trans packing at one third of the resolution, 27 output channels, depth-to-space ×3
(7,762,203 parameters).

A quirk of the released checkpoints: their indexes hold Adam slots for every ``g_*`` variable but
none for the four transposed-conv filters, so the released models never updated their upsampling
filters (they stayed at their random initialisation; the scripts in the repository would train
them). To train like the released models, freeze them: ``model.upsamplers.requires_grad_(False)``.

``norm='single'`` / ``'double'`` are the two variants of a public BatchNorm ablation of this
network (``Batchnorm_train.py`` and ``Double_batch_train.py`` in a PyTorch port of the official
code): BatchNorm2d after the second convolution of every level, or after every convolution.
As in that ablation, the BatchNorm sits between the convolution and its LeakyReLU, and the
convolutions keep their bias.

Used by the SID study (training and evaluation) and by the efficiency table of the Lamba &
Mitra study.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SIDUNet", "official_variable_name", "pad_to_multiple", "NORMS"]

#: accepted values of ``SIDUNet(norm=...)``
NORMS = ("none", "single", "double")

#: the official code pools four times, so packed sizes must be multiples of 2**4
SIZE_MULTIPLE = 16


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pads the bottom and right of ``x`` so that H and W become multiples of ``multiple``.

    Reflection padding is used (it keeps image statistics at the border, and on a Bayer mosaic it
    keeps the CFA phase: the padded row ``H + i`` copies row ``H − 2 − i``, of the same parity).
    When an image is too small to reflect (padding ≥ size), replication padding is used instead.
    Only the bottom and right are padded so that the top-left pixel (and so the CFA phase) and
    the output crop ``[..., :H', :W']`` stay aligned.

    Args:
        x: ``B×C×H×W`` tensor, any float dtype and range.
        multiple: the required divisor of H and W.

    Returns:
        ``B×C×H_p×W_p`` with ``H_p = ceil(H / multiple) · multiple`` (same for W); ``x`` itself
        when nothing needs padding.
    """
    h, w = x.shape[-2:]
    pad_h = -h % multiple
    pad_w = -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class DoubleConv(nn.Module):
    """Two 3×3 convolutions with LeakyReLU(0.2), optionally with BatchNorm before each activation.

    Args:
        in_channels: input channels.
        out_channels: output channels of both convolutions.
        norm: ``'none'``, ``'single'`` (BatchNorm after the second convolution) or ``'double'``
            (after both).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str = "none"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(out_channels) if norm == "double" else nn.Identity()
        self.norm2 = nn.BatchNorm2d(out_channels) if norm in ("single", "double") else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        return F.leaky_relu(self.norm2(self.conv2(x)), 0.2)


class SIDUNet(nn.Module):
    """The SID U-Net: packed raw in, linear RGB out at the raw resolution.

    Args:
        norm: ``'none'`` (the official network), ``'single'`` or ``'double'`` (BatchNorm variants,
            see the module docstring).
        in_channels: channels of the packed input: 4 for Bayer (SID's order R, G, B, G), 9 for
            the Fuji X-Trans packing.
        width: channels of the first level; level ``k`` has ``width · 2**k`` (official: 32).
        upscale: depth-to-space factor of the output, 2 for Bayer packing, 3 for X-Trans
            packing; the last convolution has ``3 · upscale²`` channels.

    Input ``B×in_channels×H×W`` float32: the packed raw image, black-subtracted, normalised to
    ``[0, 1]``, multiplied by the amplification ratio and clipped to ``≤ 1`` (as the official
    code does). H and W need not be multiples of 16: the input is padded (see
    :func:`pad_to_multiple`) and the output cropped back.

    Output ``B×3×(upscale·H)×(upscale·W)`` float32: the raw network output, **not clamped**
    (training uses the L1 loss on it directly). Evaluation clamps it to ``[0, 1]`` before
    computing metrics or saving images, as the official ``test_Sony.py`` does.

    Raises:
        ValueError: on an unknown ``norm`` or non-positive sizes.
    """

    def __init__(self, norm: str = "none", in_channels: int = 4, width: int = 32, upscale: int = 2):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        for name, value in (("in_channels", in_channels), ("width", width), ("upscale", upscale)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.norm = norm
        self.in_channels = in_channels
        self.upscale = upscale
        widths = [width * 2**level for level in range(5)]

        # levels 1-5 of the official code (g_conv1_* ... g_conv5_*)
        self.encoder = nn.ModuleList()
        channels = in_channels
        for w in widths:
            self.encoder.append(DoubleConv(channels, w, norm))
            channels = w
        # levels 6-9: transposed conv (official tf.Variable ... Variable_3), then g_conv6_* ... g_conv9_*
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.upsamplers.append(nn.ConvTranspose2d(channels, w, 2, stride=2, bias=False))
            self.decoder.append(DoubleConv(2 * w, w, norm))
            channels = w
        self.conv10 = nn.Conv2d(channels, 3 * upscale**2, 1)
        self._init_like_tensorflow()

    def _init_like_tensorflow(self) -> None:
        # The official graph: slim.conv2d's default Glorot-uniform weights and zero biases;
        # transposed-conv filters from tf.truncated_normal(stddev=0.02) (cut at two std).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ConvTranspose2d):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restores a packed raw image.

        Args:
            x: ``B×in_channels×H×W`` float32 packed raw (see the class docstring).

        Returns:
            ``B×3×(upscale·H)×(upscale·W)`` float32 linear RGB, not clamped.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected B×{self.in_channels}×H×W, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, SIZE_MULTIPLE)
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < len(self.encoder) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for upsample, block, skip in zip(self.upsamplers, self.decoder, reversed(skips)):
            x = block(torch.cat([upsample(x), skip], dim=1))
        x = F.pixel_shuffle(self.conv10(x), self.upscale)
        return x[..., : h * self.upscale, : w * self.upscale]


def official_variable_name(parameter_name: str) -> str:
    """Names the variable of the official TensorFlow checkpoint that a parameter corresponds to.

    ``encoder.k.convj.weight`` ↔ ``g_conv{k+1}_{j}/weights`` (levels 1-5), ``decoder.k.convj``
    ↔ ``g_conv{k+6}_{j}`` (levels 6-9), ``upsamplers.k.weight`` ↔ ``Variable`` (k = 0) or
    ``Variable_{k}``, ``conv10`` ↔ ``g_conv10``. Layouts differ: TensorFlow stores conv kernels
    as H×W×in×out (PyTorch: out×in×H×W) and transposed-conv kernels as H×W×out×in (PyTorch:
    in×out×H×W). To convert trained weights, also note that ``tf.depth_to_space`` orders the
    channels of ``g_conv10`` as ``(dy·r + dx)·3 + c`` while ``pixel_shuffle`` expects
    ``c·r² + dy·r + dx``: the output channels of ``conv10`` must be permuted accordingly.

    Args:
        parameter_name: a name from ``SIDUNet(norm='none').named_parameters()``.

    Returns:
        The TensorFlow variable name.

    Raises:
        KeyError: for a parameter with no official counterpart (e.g. BatchNorm).
    """
    parts = parameter_name.split(".")
    suffix = {"weight": "weights", "bias": "biases"}
    if parts[0] == "upsamplers" and len(parts) == 3 and parts[2] == "weight":
        k = int(parts[1])
        return "Variable" if k == 0 else f"Variable_{k}"
    if parts[0] == "conv10" and len(parts) == 2 and parts[1] in suffix:
        return f"g_conv10/{suffix[parts[1]]}"
    if parts[0] in ("encoder", "decoder") and len(parts) == 4 and parts[2] in ("conv1", "conv2"):
        level = int(parts[1]) + (1 if parts[0] == "encoder" else 6)
        if parts[3] in suffix:
            return f"g_conv{level}_{parts[2][-1]}/{suffix[parts[3]]}"
    raise KeyError(f"{parameter_name} has no counterpart in the official checkpoint")
