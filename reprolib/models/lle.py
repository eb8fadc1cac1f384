"""The network of Lamba & Mitra, "Restoring Extremely Dark Images in Real Time" (CVPR 2021).

Layer for layer ``Net`` of the official ``network.py``
(MohitLamba94/Restoring-Extremely-Dark-Images-In-Real-Time); ``LLENet()`` has 784,768 parameters
and loads the authors' weights. See the book's page *The networks* for the choices where the paper
is silent.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from .sid_unet import pad_to_multiple

__all__ = ["LLENet", "ResidualDenseBlock", "DENSE_LAYERS", "BLOCKS", "rename_official_keys"]

#: accepted values of ``LLENet(block=...)``
BLOCKS = ("rdb_star", "rdb")

#: dense layers per residual dense block, by number of blocks (three: the official 4, 5, 5)
DENSE_LAYERS = {2: (4, 5), 3: (4, 5, 5), 4: (4, 5, 5, 5)}

#: input H and W must be multiples of 32 (pixel-unshuffle ×2, then ×16)
SIZE_MULTIPLE = 32

NEGATIVE_SLOPE = 0.2
FEATURES = 64
GROWTH_RATE = 32


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool, groups: int = 1,
          negative_slope: float = 1.0) -> nn.Conv2d:
    """A 'same'-padded, weight-normalised conv, He-normal (fan-in, the slope of the LeakyReLU
    next to it) like the official ``conv_layer``; weight normalisation then sets ``g = ‖v‖``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2,
                     groups=groups, bias=bias)
    nn.init.kaiming_normal_(conv.weight, a=negative_slope, mode="fan_in", nonlinearity="leaky_relu")
    return weight_norm(conv)


class DenseLayer(nn.Module):
    """conv3×3 (no bias) adding ``growth_rate`` channels to its input; LeakyReLU(0.2) on the
    conv's input (``activation='before'``), output (``'after'``) or neither (``'none'``);
    ``init_slope``: the slope the He initialisation assumes (1 for RDB*'s last, linear layer)."""

    def __init__(self, in_channels: int, growth_rate: int, activation: str,
                 init_slope: float = NEGATIVE_SLOPE):
        super().__init__()
        self.activation = activation
        self.conv = _conv(in_channels, growth_rate, 3, bias=False, negative_slope=init_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(x, NEGATIVE_SLOPE) if self.activation == "before" else x
        y = self.conv(y)
        if self.activation == "after":
            y = F.leaky_relu(y, NEGATIVE_SLOPE)
        return torch.cat([x, y], dim=1)


class ResidualDenseBlock(nn.Module):
    """Residual dense block, ``B×channels×H×W`` → same: ``n_layers`` (≥ 2) dense layers adding
    ``growth_rate`` channels each, a bias-free 1×1 conv back to ``channels``, + input.
    ``block``: ``'rdb_star'`` (the paper's activation placement) or ``'rdb'`` (Zhang et al.)."""

    def __init__(self, channels: int, n_layers: int, growth_rate: int = GROWTH_RATE,
                 block: str = "rdb_star"):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        if n_layers < 2:
            raise ValueError(
                f"a residual dense block needs at least 2 dense layers, got {n_layers}")
        if block == "rdb":
            activations = ["after"] * n_layers
            init_slopes = [NEGATIVE_SLOPE] * n_layers
        else:
            activations = ["none"] + ["before"] * (n_layers - 2) + ["none"]
            init_slopes = [NEGATIVE_SLOPE] * (n_layers - 1) + [1.0]
        self.dense_layers = nn.Sequential(*(
            DenseLayer(channels + i * growth_rate, growth_rate, activation, init_slope)
            for i, (activation, init_slope) in enumerate(zip(activations, init_slopes))))
        self.conv_1x1 = _conv(channels + n_layers * growth_rate, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1x1(self.dense_layers(x)) + x


class ResidualBlock(nn.Module):
    """conv3×3 + LeakyReLU(0.2) + conv3×3, plus the input (the 1/8 branch)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _conv(channels, channels, 3, bias=True, negative_slope=NEGATIVE_SLOPE)
        self.conv2 = _conv(channels, channels, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.leaky_relu(self.conv1(x), NEGATIVE_SLOPE)) + x


def rename_official_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A new dict with the same tensors as ``state_dict`` (the official ``checkpoint['model']``)
    under this module's names: ``RDB{k}.`` → ``rdbs.{k−1}.``, and the index inside the official
    ``conv_layer``'s ``nn.Sequential`` dropped (``RDB1.dense_layers.1.conv.1.weight_v`` →
    ``rdbs.0.dense_layers.1.conv.weight_v``); ``weight_g`` / ``weight_v`` stay (PyTorch maps them).
    """
    renamed = {}
    for key, value in state_dict.items():
        key = re.sub(r"^RDB(\d+)\.", lambda m: f"rdbs.{int(m.group(1)) - 1}.", key)
        key = re.sub(r"\.\d+\.(weight_g|weight_v|bias)$", r".\1", key)
        renamed[key] = value
    return renamed


class LLENet(nn.Module):
    """Lamba & Mitra's restoration network: Bayer mosaic in, sRGB-like RGB out.

    Args:
        block: ``'rdb_star'`` (official: RDB*, the paper's modified block) or ``'rdb'`` (the
            canonical block of Zhang et al., activation after every dense conv).
        n_blocks: residual dense blocks in the 1/32 branch: 2, 3 (official) or 4.

    Input ``B×1×H×W`` float32: the unpacked mosaic with the RGGB phase at the top-left,
    black-subtracted, divided by ``white − black``, multiplied by the amplification, **not**
    clipped. Any H, W: padded to multiples of 32 (:func:`~reprolib.models.sid_unet.pad_to_multiple`,
    which keeps the CFA phase), the output cropped back.

    Output ``B×3×H×W`` float32 in ``[0, 1]`` (clamped, as the official network does). Raises
    ``ValueError`` on an unknown ``block`` or ``n_blocks``.
    """

    def __init__(self, block: str = "rdb_star", n_blocks: int = 3):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        if (not isinstance(n_blocks, int) or isinstance(n_blocks, bool)
                or n_blocks not in DENSE_LAYERS):
            raise ValueError(f"n_blocks must be one of {tuple(DENSE_LAYERS)}, got {n_blocks!r}")
        self.block = block
        self.n_blocks = n_blocks

        # 1/32 branch (the official attribute names are kept; see rename_official_keys)
        self.conv32x = nn.Sequential(
            _conv(1024, 128, 3, bias=True, groups=128),
            _conv(128, FEATURES, 3, bias=True),
        )
        self.rdbs = nn.ModuleList(
            ResidualDenseBlock(FEATURES, n, GROWTH_RATE, block) for n in DENSE_LAYERS[n_blocks]
        )
        self.rdball = _conv(FEATURES * n_blocks, FEATURES, 1, bias=False)
        self.conv_rdb8x = _conv(FEATURES // 16, FEATURES, 3, bias=True)
        # 1/8 branch
        self.resblock8x = ResidualBlock(FEATURES)
        # fusion of the 1/32 and 1/8 branches
        self.conv32_8_cat = nn.Sequential(
            _conv(2 * FEATURES, 32, 3, bias=True, groups=4),
            _conv(32, 192, 3, bias=True, negative_slope=NEGATIVE_SLOPE),
        )
        # 1/2 branch
        self.conv2x = _conv(4, 12, 5, bias=True)
        self.conv_2_8_32 = _conv(24, 12, 5, bias=True)

    @classmethod
    def from_official(cls, path: str | Path) -> "LLENet":
        """An ``LLENet()`` in eval mode on the CPU, loaded (``strict=True``, after
        :func:`rename_official_keys`) from ``path``, the authors' ``demo_imgs/weights``: a legacy
        ``torch.save`` pickle of ``{'model': state_dict}``, tensors only (the safe loader works)."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = cls()
        model.load_state_dict(rename_official_keys(checkpoint["model"]), strict=True)
        return model.eval()

    def fused(self) -> "LLENet":
        """A copy with weight normalisation folded into plain ``weight`` parameters: the same
        function up to float rounding without recomputing ``g · v / ‖v‖`` at each call (for
        inference and timing); training it would no longer be weight-normalised."""
        # Not copy.deepcopy(self): the copy would share the parametrisation's per-module classes,
        # and removing the parametrisation from it would delete the original's `weight` too.
        reference = next(self.parameters())
        model = type(self)(self.block, self.n_blocks).to(reference.device, reference.dtype)
        model.load_state_dict(self.state_dict())
        model.train(self.training)
        for module in model.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
                if not isinstance(module.weight, nn.Parameter):  # folded under no_grad: a buffer
                    module.weight = nn.Parameter(module.weight.detach())
        return model

    def forward(self, mosaic: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` dark raw mosaic → ``B×3×H×W`` RGB in ``[0, 1]``, see the class."""
        if mosaic.dim() != 4 or mosaic.shape[1] != 1:
            raise ValueError(f"expected a B×1×H×W mosaic, got shape {tuple(mosaic.shape)}")
        h, w = mosaic.shape[-2:]
        x = pad_to_multiple(mosaic, SIZE_MULTIPLE)

        # pixel-unshuffle: channel = dy·2 + dx, so an RGGB mosaic packs to R, G, G, B
        low2x = F.pixel_unshuffle(x, 2)

        features32x = self.conv32x(F.pixel_unshuffle(low2x, 16))
        outputs = []
        y = features32x
        for rdb in self.rdbs:
            y = rdb(y)
            outputs.append(y)
        y = self.rdball(torch.cat(outputs, dim=1)) + features32x
        branch32x = self.conv_rdb8x(F.pixel_shuffle(y, 4))

        branch8x = self.resblock8x(F.pixel_unshuffle(low2x, 4))
        y = torch.cat([branch8x, branch32x], dim=1)
        # channel shuffle with 2 groups: every group of the next grouped conv sees both branches
        b, c, hh, ww = y.shape
        y = y.view(b, 2, c // 2, hh, ww).transpose(1, 2).reshape(b, c, hh, ww)
        y = self.conv32_8_cat[0](y)
        y = F.pixel_shuffle(F.leaky_relu(self.conv32_8_cat[1](y), NEGATIVE_SLOPE), 4)

        y = torch.cat([self.conv2x(low2x), y], dim=1)
        rgb = F.pixel_shuffle(self.conv_2_8_32(y), 2)
        return torch.clamp(rgb, 0.0, 1.0)[..., :h, :w]
