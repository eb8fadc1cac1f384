"""The U-Net of "Learning to See in the Dark" (Chen et al., CVPR 2018).

Layer for layer ``network()`` of the official TensorFlow code
(cchen156/Learning-to-See-in-the-Dark); ``SIDUNet()`` has 7,760,268 parameters, as the released
Sony checkpoint. See the book's page *The networks* for its quirks and the BatchNorm variants.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tf_checkpoint import read_bundle_index, read_checkpoint

__all__ = ["SIDUNet", "official_variable_name", "pad_to_multiple", "NORMS"]

#: accepted values of ``SIDUNet(norm=...)``
NORMS = ("none", "single", "double")

#: the official code pools four times, so packed sizes must be multiples of 2**4
SIZE_MULTIPLE = 16


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pads the bottom and right of ``x`` (``B×C×H×W``, any float dtype and range) to
    ``B×C×H_p×W_p``, ``H_p = ceil(H / multiple) · multiple`` (same for W); ``x`` itself if no
    padding is needed. By reflection, which keeps a Bayer mosaic's CFA phase (row ``H + i`` copies
    row ``H − 2 − i``), or replication when the padding is ≥ the size; the top-left pixel stays
    put, so the output crop ``[..., :H', :W']`` aligns."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class DoubleConv(nn.Module):
    """Two 3×3 convolutions with LeakyReLU(0.2); ``norm`` puts BatchNorm before the second
    activation (``'single'``), both (``'double'``) or neither (``'none'``)."""

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
        norm: ``'none'`` (the official network), ``'single'`` or ``'double'`` (BatchNorm after
            the second or after every convolution of each level, before its LeakyReLU).
        in_channels: channels of the packed input: 4 for Bayer (SID's order R, G, B, G), 9 for
            the Fuji X-Trans packing.
        width: channels of the first level; level ``k`` has ``width · 2**k`` (official: 32).
        upscale: depth-to-space factor of the output, 2 for Bayer packing, 3 for X-Trans
            packing; the last convolution has ``3 · upscale²`` channels.

    Input ``B×in_channels×H×W`` float32: packed raw, black-subtracted, normalised to ``[0, 1]``,
    multiplied by the amplification ratio and clipped to ``≤ 1`` (as the official code). Any H, W:
    padded to multiples of 16 (:func:`pad_to_multiple`), the output cropped back.

    Output ``B×3×(upscale·H)×(upscale·W)`` float32 linear RGB, **not clamped** (the L1 loss uses
    it as is; evaluation clamps to ``[0, 1]``, as the official ``test_Sony.py``). To train like the
    released models, freeze the upsampling filters: ``model.upsamplers.requires_grad_(False)``.
    Raises ``ValueError`` on an unknown ``norm`` or non-positive sizes.
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
        # levels 6-9: transposed conv (official Variable…Variable_3), then g_conv6_*…g_conv9_*
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.upsamplers.append(nn.ConvTranspose2d(channels, w, 2, stride=2, bias=False))
            self.decoder.append(DoubleConv(2 * w, w, norm))
            channels = w
        self.conv10 = nn.Conv2d(channels, 3 * upscale**2, 1)
        # initialised as the official graph: slim.conv2d's Glorot-uniform weights and zero
        # biases; transposed-conv filters from tf.truncated_normal(stddev=0.02), cut at two std
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ConvTranspose2d):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×in_channels×H×W`` packed raw → ``B×3×(upscale·H)×(upscale·W)``, see the class."""
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

    @classmethod
    def from_official(cls, prefix: str | Path, verify_crc: bool = True) -> SIDUNet:
        """The released TensorFlow network, read without TensorFlow: ``prefix`` is the checkpoint
        path without ``.index`` (``checkpoint/Sony/model.ckpt``; its ``.data-00000-of-00001``
        beside it). Sony or Fuji configuration from the index's shapes. Kernels H×W×in×out
        (transposed convs H×W×out×in) become out×in×H×W (in×out×H×W), and conv10's channels go
        from ``tf.depth_to_space``'s order ``(dy·r + dx)·3 + c`` to ``pixel_shuffle``'s
        ``c·r² + dy·r + dx``, so the output is the official one. Raises as
        :func:`~reprolib.models.tf_checkpoint.read_checkpoint`."""
        prefix = Path(str(prefix).removesuffix(".index"))
        shapes = {name: e.shape for name, e in read_bundle_index(f"{prefix}.index").items()}
        in_channels, width = shapes["g_conv1_1/weights"][2:]
        upscale = round((shapes["g_conv10/weights"][3] / 3) ** 0.5)
        model = cls(in_channels=in_channels, width=width, upscale=upscale)
        names = {official_variable_name(n): n for n, _ in model.named_parameters()}
        state = {}
        for tf_name, value in read_checkpoint(prefix, names, verify_crc).items():
            tensor = torch.from_numpy(value)
            state[names[tf_name]] = tensor.permute(3, 2, 0, 1) if tensor.dim() == 4 else tensor
        r2 = upscale**2
        channel = torch.arange(3 * r2)
        depth_to_space_order = channel % r2 * 3 + channel // r2
        for key in ("conv10.weight", "conv10.bias"):
            state[key] = state[key][depth_to_space_order]
        model.load_state_dict(state)
        return model


def official_variable_name(parameter_name: str) -> str:
    """The official TensorFlow checkpoint's variable name for ``parameter_name``, a name from
    ``SIDUNet(norm='none').named_parameters()``: ``encoder.k.convj.weight`` ↔
    ``g_conv{k+1}_{j}/weights``, ``decoder.k.convj`` ↔ ``g_conv{k+6}_{j}``, ``upsamplers.k.weight``
    ↔ ``Variable`` / ``Variable_{k}``, ``conv10`` ↔ ``g_conv10``. Converting weights also needs
    the layouts permuted (:meth:`SIDUNet.from_official` does it).

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
