"""PyNET: Ignatov, Van Gool & Timofte, "Replacing Mobile Camera ISP with a Single Deep Learning
Model", CVPRW 2020.

Layer for layer the authors' ``model.py`` (aiff22/PyNET-PyTorch), with the official sub-module
names; ``PyNET()`` has 47,554,738 parameters and loads an official checkpoint once the ``module.``
key prefix is removed. See the book's page *The networks* for the choices where the paper is silent.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["PyNET", "LEVELS", "LEVEL_PARTS", "MIN_INPUT_SIZE", "INPUT_MULTIPLE"]

#: the output levels, coarsest first (the training order)
LEVELS = (5, 4, 3, 2, 1, 0)

#: packed inputs must have sides divisible by this (four 2×2 max-poolings)
INPUT_MULTIPLE = 16

#: smallest packed side: at level 5 (1/16) a 3×3 reflection pad needs at least 2 pixels
MIN_INPUT_SIZE = 32

#: which sub-modules belong to which part of the network; ``level_L`` lists the modules run by
#: level L only (its output head and the upsamplings it hands to level L−1 included)
LEVEL_PARTS = {
    "encoder": ("conv_l1_d1", "conv_l2_d1", "conv_l3_d1", "conv_l4_d1"),
    "level_5": ("conv_l5_d1", "conv_l5_d2", "conv_l5_d3", "conv_l5_d4",
                "conv_t4a", "conv_t4b", "conv_l5_out"),
    "level_4": ("conv_l4_d3", "conv_l4_d4", "conv_l4_d5", "conv_l4_d6", "conv_l4_d8",
                "conv_t3a", "conv_t3b", "conv_l4_out"),
    "level_3": ("conv_l3_d3", "conv_l3_d4", "conv_l3_d5", "conv_l3_d6", "conv_l3_d8",
                "conv_t2a", "conv_t2b", "conv_l3_out"),
    "level_2": ("conv_l2_d3", "conv_l2_d5", "conv_l2_d6", "conv_l2_d7", "conv_l2_d8",
                "conv_l2_d10", "conv_l2_d12", "conv_t1a", "conv_t1b", "conv_l2_out"),
    "level_1": ("conv_l1_d3", "conv_l1_d5", "conv_l1_d6", "conv_l1_d7", "conv_l1_d8",
                "conv_l1_d9", "conv_l1_d10", "conv_l1_d12", "conv_l1_d14", "conv_l1_out",
                "conv_t0"),
    "level_0": ("conv_l0_d1",),
}


def _check_level(level) -> int:
    if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
        raise ValueError(f"PyNET level must be one of {LEVELS} (5 = coarsest), got {level!r}")
    return level


class ConvLayer(nn.Module):
    """Reflection pad, stride-1 conv, optional affine InstanceNorm and LeakyReLU(0.2); same size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 instance_norm: bool = False, activation: bool = True):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size)
        # ``instance`` / ``conv2d`` are the official attribute names (checkpoint keys)
        self.instance = nn.InstanceNorm2d(out_channels, affine=True) if instance_norm else None
        self.activation = nn.LeakyReLU(0.2) if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d(self.reflection_pad(x))
        if self.instance is not None:
            x = self.instance(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class MultiKernelBlock(nn.Module):
    """Parallel branches with kernels 3, 5, 7, 9 (up to ``max_kernel_size``), two
    :class:`ConvLayer` each, concatenated: ``out_channels × number of branches`` channels."""

    def __init__(self, in_channels: int, out_channels: int, max_kernel_size: int,
                 instance_norm: bool):
        super().__init__()
        self.kernel_sizes = tuple(k for k in (3, 5, 7, 9) if k <= max_kernel_size)
        self.out_channels = out_channels * len(self.kernel_sizes)
        for k in self.kernel_sizes:
            setattr(self, f"conv_{k}a", ConvLayer(in_channels, out_channels, k, instance_norm))
            setattr(self, f"conv_{k}b", ConvLayer(out_channels, out_channels, k, instance_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [getattr(self, f"conv_{k}b")(getattr(self, f"conv_{k}a")(x))
                    for k in self.kernel_sizes]
        return torch.cat(branches, dim=1)


class UpsampleConvLayer(nn.Module):
    """Bilinear ×2 upsampling (``align_corners=True``), reflection pad, conv3×3, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.reflection_pad = nn.ReflectionPad2d(1)
        self.conv2d = nn.Conv2d(in_channels, out_channels, 3)
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.conv2d(self.reflection_pad(self.upsample(x))))


class PyNET(nn.Module):
    """PyNET, the pyramidal RAW-to-RGB network (PyNET study).

    Args:
        level: the output level the forward pass runs to, 5 (1/16 resolution) … 0 (twice the
            packed resolution); all levels' parameters are always held (see :meth:`set_level`).
        width: multiplies every internal channel count (``max(1, round(c · width))``): 1.0 is
            the published network, less a CPU-sized profile; 4 input, 3 output channels stay.
        instance_norm: affine InstanceNorm in the blocks of levels 5–2 and the level-2–4 encoder
            blocks, as the official code.
        instance_norm_level_1: InstanceNorm in the inner level-1 blocks (``True`` as the
            official scripts and checkpoint, although the official class defaults to ``False``).

    Input: ``float32`` B×4×H×W packed Huawei P20 raw in ``[0, 1]`` (Zurich's slice-position
    packing / 1020, no black subtraction: the data module's), H, W multiples of
    :data:`INPUT_MULTIPLE` and at least :data:`MIN_INPUT_SIZE`.

    Output of :meth:`forward`: ``float32`` B×3×h×w sRGB in ``[0, 1]`` (sigmoid) at ``self.level``,
    as the official ``forward``; :meth:`forward_all` adds the coarser levels' outputs.

    Example:
        >>> model = PyNET(level=5, width=0.125)
        >>> model(torch.rand(1, 4, 32, 32)).shape
        torch.Size([1, 3, 2, 2])
        >>> model.set_level(0)
        >>> model(torch.rand(1, 4, 32, 32)).shape
        torch.Size([1, 3, 64, 64])
    """

    def __init__(self, level: int = 0, width: float = 1.0, instance_norm: bool = True,
                 instance_norm_level_1: bool = True):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        self.level = _check_level(level)
        self.width = float(width)

        def scaled(channels: int) -> int:
            return max(1, int(round(channels * width)))

        # c1 … c5: channels at 1/1 … 1/16 of the packed resolution; c0 at twice the resolution
        c0, c1, c2, c3, c4, c5 = (scaled(c) for c in (16, 32, 64, 128, 256, 512))
        norm, norm1 = instance_norm, instance_norm_level_1
        block = MultiKernelBlock

        # encoder (the first block never normalises: that would remove the exposure level)
        self.conv_l1_d1 = block(4, c1, 3, instance_norm=False)
        self.conv_l2_d1 = block(c1, c2, 3, norm)
        self.conv_l3_d1 = block(c2, c3, 3, norm)
        self.conv_l4_d1 = block(c3, c4, 3, norm)
        self.pool = nn.MaxPool2d(2, 2)

        # level 5 (1/16)
        self.conv_l5_d1 = block(c4, c5, 3, norm)
        self.conv_l5_d2 = block(c5, c5, 3, norm)
        self.conv_l5_d3 = block(c5, c5, 3, norm)
        self.conv_l5_d4 = block(c5, c5, 3, norm)
        self.conv_t4a = UpsampleConvLayer(c5, c4)
        self.conv_t4b = UpsampleConvLayer(c5, c4)
        self.conv_l5_out = ConvLayer(c5, 3, 3, activation=False)

        # level 4 (1/8)
        self.conv_l4_d3 = block(2 * c4, c4, 3, norm)   # [encoder, conv_t4a]
        self.conv_l4_d4 = block(c4, c4, 3, norm)
        self.conv_l4_d5 = block(c4, c4, 3, norm)
        self.conv_l4_d6 = block(c4, c4, 3, norm)
        self.conv_l4_d8 = block(2 * c4, c4, 3, norm)   # [conv_l4_d6, conv_t4b]
        self.conv_t3a = UpsampleConvLayer(c4, c3)
        self.conv_t3b = UpsampleConvLayer(c4, c3)
        self.conv_l4_out = ConvLayer(c4, 3, 3, activation=False)

        # level 3 (1/4): two-branch blocks (kernels 3, 5) output 2·c3 channels
        self.conv_l3_d3 = block(2 * c3, c3, 5, norm)   # [encoder, conv_t3a]
        self.conv_l3_d4 = block(2 * c3, c3, 5, norm)
        self.conv_l3_d5 = block(2 * c3, c3, 5, norm)
        self.conv_l3_d6 = block(2 * c3, c3, 5, norm)
        self.conv_l3_d8 = block(4 * c3, c3, 3, norm)   # [conv_l3_d6 (2·c3), encoder, conv_t3b]
        self.conv_t2a = UpsampleConvLayer(c3, c2)
        self.conv_t2b = UpsampleConvLayer(c3, c2)
        self.conv_l3_out = ConvLayer(c3, 3, 3, activation=False)

        # level 2 (1/2)
        self.conv_l2_d3 = block(2 * c2, c2, 5, norm)   # [encoder, conv_t2a] -> 2·c2
        self.conv_l2_d5 = block(3 * c2, c2, 7, norm)   # [conv_l2_d3, encoder] -> 3·c2
        self.conv_l2_d6 = block(3 * c2, c2, 7, norm)
        self.conv_l2_d7 = block(3 * c2, c2, 7, norm)
        self.conv_l2_d8 = block(3 * c2, c2, 7, norm)
        self.conv_l2_d10 = block(4 * c2, c2, 5, norm)  # [conv_l2_d8, encoder] -> 2·c2
        self.conv_l2_d12 = block(3 * c2, c2, 3, norm)  # [conv_l2_d10, conv_t2b] -> c2
        self.conv_t1a = UpsampleConvLayer(c2, c1)
        self.conv_t1b = UpsampleConvLayer(c2, c1)
        self.conv_l2_out = ConvLayer(c2, 3, 3, activation=False)

        # level 1 (packed resolution); its first and last blocks never normalise
        self.conv_l1_d3 = block(2 * c1, c1, 5, instance_norm=False)  # [encoder, conv_t1a]
        self.conv_l1_d5 = block(3 * c1, c1, 7, norm1)  # [conv_l1_d3, encoder] -> 3·c1
        self.conv_l1_d6 = block(3 * c1, c1, 9, norm1)  # -> 4·c1
        self.conv_l1_d7 = block(4 * c1, c1, 9, norm1)
        self.conv_l1_d8 = block(4 * c1, c1, 9, norm1)
        self.conv_l1_d9 = block(4 * c1, c1, 9, norm1)
        self.conv_l1_d10 = block(4 * c1, c1, 7, norm1)  # -> 3·c1
        self.conv_l1_d12 = block(4 * c1, c1, 5, norm1)  # [conv_l1_d10, encoder] -> 2·c1
        self.conv_l1_d14 = block(4 * c1, c1, 3, instance_norm=False)  # [d12, conv_t1b, encoder]
        self.conv_l1_out = ConvLayer(c1, 3, 3, activation=False)
        self.conv_t0 = UpsampleConvLayer(c1, c0)

        # level 0 (twice the packed resolution = the mosaic's resolution)
        self.conv_l0_d1 = ConvLayer(c0, 3, 3, activation=False)

    def set_level(self, level: int) -> None:
        """Choose the output level (5 … 0) for the next training stage or for inference; raises
        ``ValueError`` if ``level`` is not one of :data:`LEVELS`."""
        self.level = _check_level(level)

    def parameter_counts(self) -> dict[str, int]:
        """Number of parameters in each part of :data:`LEVEL_PARTS` (they add up to the total)."""
        return {part: sum(p.numel() for name in names for p in getattr(self, name).parameters())
                for part, names in LEVEL_PARTS.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run to ``self.level`` and return its output, B×3×h×w in ``[0, 1]`` (see the class)."""
        return self.forward_all(x)[self.level]

    def forward_all(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """``{level: B×3×h×w sigmoid image in [0, 1]}`` for the levels 5 … ``self.level`` (finer
        ones are not computed) of ``x``, ``float32`` B×4×H×W packed raw in ``[0, 1]``; h×w is
        H/16×W/16 at level 5, H/8 (4), H/4 (3), H/2 (2), H×W (1), 2H×2W (0)."""
        if x.ndim != 4 or x.shape[1] != 4:
            raise ValueError(f"PyNET expects packed raw B×4×H×W, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE or min(h, w) < MIN_INPUT_SIZE:
            raise ValueError(
                f"PyNET needs H and W multiples of {INPUT_MULTIPLE} and at least "
                f"{MIN_INPUT_SIZE} (four 2×2 poolings, reflection padding at 1/16), got {h}×{w}")
        outputs = {}

        # encoder
        e1 = self.conv_l1_d1(x)
        e2 = self.conv_l2_d1(self.pool(e1))
        e3 = self.conv_l3_d1(self.pool(e2))
        e4 = self.conv_l4_d1(self.pool(e3))

        # level 5
        y = self.conv_l5_d1(self.pool(e4))
        y = self.conv_l5_d4(self.conv_l5_d3(self.conv_l5_d2(y)))
        up_a, up_b = self.conv_t4a(y), self.conv_t4b(y)
        outputs[5] = torch.sigmoid(self.conv_l5_out(y))
        if self.level == 5:
            return outputs

        # level 4: residual connections around the two middle blocks
        y = self.conv_l4_d3(torch.cat([e4, up_a], 1))
        y = self.conv_l4_d4(y) + y
        y = self.conv_l4_d5(y) + y
        y = self.conv_l4_d6(y)
        y = self.conv_l4_d8(torch.cat([y, up_b], 1))
        up_a, up_b = self.conv_t3a(y), self.conv_t3b(y)
        outputs[4] = torch.sigmoid(self.conv_l4_out(y))
        if self.level == 4:
            return outputs

        # level 3: residuals start at the concatenated input
        y = torch.cat([e3, up_a], 1)
        y = self.conv_l3_d3(y) + y
        y = self.conv_l3_d4(y) + y
        y = self.conv_l3_d5(y) + y
        y = self.conv_l3_d6(y)
        y = self.conv_l3_d8(torch.cat([y, e3, up_b], 1))
        up_a, up_b = self.conv_t2a(y), self.conv_t2b(y)
        outputs[3] = torch.sigmoid(self.conv_l3_out(y))
        if self.level == 3:
            return outputs

        # level 2
        y = self.conv_l2_d3(torch.cat([e2, up_a], 1))
        y = torch.cat([y, e2], 1)
        y = self.conv_l2_d5(y) + y
        y = self.conv_l2_d6(y) + y
        y = self.conv_l2_d7(y) + y
        y = self.conv_l2_d8(y)
        y = self.conv_l2_d10(torch.cat([y, e2], 1))
        y = self.conv_l2_d12(torch.cat([y, up_b], 1))
        up_a, up_b = self.conv_t1a(y), self.conv_t1b(y)
        outputs[2] = torch.sigmoid(self.conv_l2_out(y))
        if self.level == 2:
            return outputs

        # level 1
        y = self.conv_l1_d3(torch.cat([e1, up_a], 1))
        y = self.conv_l1_d5(torch.cat([y, e1], 1))
        y = self.conv_l1_d6(y)
        y = self.conv_l1_d7(y) + y
        y = self.conv_l1_d8(y) + y
        y = self.conv_l1_d9(y) + y
        y = self.conv_l1_d10(y)
        y = self.conv_l1_d12(torch.cat([y, e1], 1))
        y = self.conv_l1_d14(torch.cat([y, up_b, e1], 1))
        up_full = self.conv_t0(y)
        outputs[1] = torch.sigmoid(self.conv_l1_out(y))
        if self.level == 1:
            return outputs

        # level 0
        outputs[0] = torch.sigmoid(self.conv_l0_d1(up_full))
        return outputs
