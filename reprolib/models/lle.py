"""The network of Lamba & Mitra, "Restoring Extremely Dark Images in Real Time" (CVPR 2021).

Faithful to ``Net`` in the official code (MohitLamba94/Restoring-Extremely-Dark-Images-In-Real-Time,
``network.py``). Every convolution is weight-normalised (``g · v / ‖v‖`` per output channel).
The input is the *unpacked* Bayer mosaic; the network packs it itself (pixel-unshuffle, so an
RGGB mosaic becomes R, G, G, B) and works at three scales:

* 1/32 branch: pixel-unshuffle ×16 of the 4-channel 1/2-scale image (1024 channels) → grouped
  conv3×3 (128 groups) → conv3×3 to 64 → residual dense blocks; their outputs are concatenated,
  fused by a bias-free 1×1 conv and added to the pre-RDB features; pixel-shuffle ×4 → conv3×3
  4 → 64 at 1/8 scale;
* 1/8 branch: pixel-unshuffle ×4 (64 channels) → residual block (conv, LeakyReLU 0.2, conv, + x);
* fusion: concatenation (1/8 branch first), channel shuffle with 2 groups, grouped conv3×3
  (4 groups) 128 → 32, conv3×3 32 → 192 + LeakyReLU(0.2), pixel-shuffle ×4 → 12 channels at 1/2;
* 1/2 branch: conv5×5 4 → 12, concatenated with the fused 12 channels, conv5×5 24 → 12,
  pixel-shuffle ×2 → RGB at full resolution, clamped to ``[0, 1]`` (inside the network, as in the
  official ``forward``).

``LLENet()`` has 784,768 parameters (``weight_g`` and ``weight_v`` counted) and loads the official
weights (:meth:`LLENet.from_official`). Two ablations are built in:

* ``block``: ``'rdb_star'`` is the paper's modified residual dense block (official code: the first
  dense layer has no activation, the middle layers apply LeakyReLU(0.2) *before* their conv, the
  last layer is linear — the official code puts a LeakyReLU with slope 1 in front of it);
  ``'rdb'`` is the canonical block of Zhang et al. (CVPR 2018), activation *after* every dense
  conv. Both use LeakyReLU(0.2) and bias-free dense convs so that only the activation placement
  differs (Zhang et al. use ReLU and biases).
* ``n_blocks``: 2, 3 (official) or 4 residual dense blocks in the 1/32 branch, with
  :data:`DENSE_LAYERS` dense layers each; the fusion 1×1 conv takes ``64 · n_blocks`` channels.

Used by the Lamba & Mitra study (evaluation with the official weights, the RDB ablation and the
efficiency table).
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

#: dense layers per residual dense block, by number of blocks. Three blocks is the official
#: 4, 5, 5; for two and four blocks we keep the official first block and the official 5-layer
#: block for the others (our choice: the paper only reports three blocks).
DENSE_LAYERS = {2: (4, 5), 3: (4, 5, 5), 4: (4, 5, 5, 5)}

#: input H and W must be multiples of 32 (pixel-unshuffle ×2, then ×16)
SIZE_MULTIPLE = 32

NEGATIVE_SLOPE = 0.2
FEATURES = 64
GROWTH_RATE = 32


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool, groups: int = 1,
          negative_slope: float = 1.0) -> nn.Conv2d:
    """A 'same'-padded, weight-normalised convolution, initialised like the official code.

    The official ``conv_layer`` draws He-normal weights (fan-in) with the slope of the LeakyReLU
    next to the conv (1 for linear convs) before applying weight normalisation, which sets
    ``g = ‖v‖``.
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2,
                     groups=groups, bias=bias)
    nn.init.kaiming_normal_(conv.weight, a=negative_slope, mode="fan_in", nonlinearity="leaky_relu")
    return weight_norm(conv)


class DenseLayer(nn.Module):
    """conv3×3 (no bias) producing ``growth_rate`` channels, concatenated to its input.

    Args:
        in_channels: channels of the input (block input + all previous layers' outputs).
        growth_rate: channels added by this layer.
        activation: ``'none'``, ``'before'`` (LeakyReLU(0.2) on the input of the conv) or
            ``'after'`` (on the output of the conv).
        init_slope: LeakyReLU slope assumed by the He initialisation (official: 0.2, except 1
            for the last, linear layer of RDB*).
    """

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
    """Residual dense block: dense layers, a bias-free 1×1 conv back to ``channels``, + input.

    Args:
        channels: input and output channels (64 in the network).
        n_layers: number of dense layers (at least 2).
        growth_rate: channels added per dense layer (32).
        block: ``'rdb_star'`` (the paper's activation placement) or ``'rdb'`` (Zhang et al.).
    """

    def __init__(self, channels: int, n_layers: int, growth_rate: int = GROWTH_RATE,
                 block: str = "rdb_star"):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        if n_layers < 2:
            raise ValueError(f"a residual dense block needs at least 2 dense layers, got {n_layers}")
        if block == "rdb":
            activations = ["after"] * n_layers
            init_slopes = [NEGATIVE_SLOPE] * n_layers
        else:
            activations = ["none"] + ["before"] * (n_layers - 2) + ["none"]
            init_slopes = [NEGATIVE_SLOPE] * (n_layers - 1) + [1.0]
        layers = []
        n = channels
        for activation, init_slope in zip(activations, init_slopes):
            layers.append(DenseLayer(n, growth_rate, activation, init_slope))
            n += growth_rate
        self.dense_layers = nn.Sequential(*layers)
        self.conv_1x1 = _conv(n, channels, 1, bias=False)

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
    """Renames the keys of the official state dict to this module's names.

    Two renames, nothing else: ``RDB{k}.`` → ``rdbs.{k−1}.`` (the blocks live in a ModuleList so
    that their number can vary), and the official ``conv_layer`` wraps every conv in an
    ``nn.Sequential`` (with a LeakyReLU at index 0 when the activation comes first), whose index
    is dropped: ``conv32x.0.0.bias`` → ``conv32x.0.bias``,
    ``RDB1.dense_layers.1.conv.1.weight_v`` → ``rdbs.0.dense_layers.1.conv.weight_v``. The legacy
    weight-norm names ``weight_g`` / ``weight_v`` are kept: PyTorch's weight-norm
    parametrisation maps them to ``g`` and ``v`` when loading.

    Args:
        state_dict: the official ``checkpoint['model']``.

    Returns:
        A new dict with renamed keys and the same tensors.
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
        block: ``'rdb_star'`` (official) or ``'rdb'``, see the module docstring.
        n_blocks: residual dense blocks in the 1/32 branch: 2, 3 (official) or 4.

    Input ``B×1×H×W`` float32: the unpacked mosaic with the RGGB phase at the top-left,
    black-subtracted, divided by ``white − black``, multiplied by the amplification, **not**
    clipped. H and W should be multiples of 32; other sizes are padded (see
    :func:`~reprolib.models.sid_unet.pad_to_multiple`, which keeps the CFA phase when reflecting)
    and the output cropped back.

    Output ``B×3×H×W`` float32 in ``[0, 1]`` (clamped, as the official network does).

    Raises:
        ValueError: on an unknown ``block`` or ``n_blocks``.
    """

    def __init__(self, block: str = "rdb_star", n_blocks: int = 3):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        if not isinstance(n_blocks, int) or isinstance(n_blocks, bool) or n_blocks not in DENSE_LAYERS:
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
        """Builds the official configuration and loads the authors' pretrained weights.

        Args:
            path: the official weights file (``demo_imgs/weights`` in the authors' repository): a
                legacy ``torch.save`` pickle of ``{'model': state_dict}`` saved on ``cuda:0``.

        Returns:
            An ``LLENet()`` in eval mode on the CPU, loaded with ``strict=True`` after
            :func:`rename_official_keys`.
        """
        # The file holds only tensors in plain dicts, so the safe loader accepts it.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = cls()
        model.load_state_dict(rename_official_keys(checkpoint["model"]), strict=True)
        return model.eval()

    def fused(self) -> "LLENet":
        """Returns a copy with weight normalisation folded into plain conv weights.

        The copy computes the same function (up to float rounding) without recomputing
        ``g · v / ‖v‖`` at every call; use it for inference and timing. Its state dict has plain
        ``weight`` keys, and training it would no longer be weight-normalised.
        """
        # A fresh model rather than copy.deepcopy(self): a deep copy shares the classes that the
        # parametrisation creates per module, and removing the parametrisation from the copy
        # would delete the `weight` property of the original as well.
        reference = next(self.parameters())
        model = type(self)(self.block, self.n_blocks).to(device=reference.device, dtype=reference.dtype)
        model.load_state_dict(self.state_dict())
        model.train(self.training)
        for module in model.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
                if not isinstance(module.weight, nn.Parameter):  # folded under no_grad: came back as a buffer
                    module.weight = nn.Parameter(module.weight.detach())
        return model

    def forward(self, mosaic: torch.Tensor) -> torch.Tensor:
        """Restores a dark raw mosaic.

        Args:
            mosaic: ``B×1×H×W`` float32, see the class docstring.

        Returns:
            ``B×3×H×W`` float32 in ``[0, 1]``.
        """
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
        # channel shuffle with 2 groups: interleave the two branches so that every group of the
        # following grouped conv sees channels of both
        b, c, hh, ww = y.shape
        y = y.view(b, 2, c // 2, hh, ww).transpose(1, 2).reshape(b, c, hh, ww)
        y = self.conv32_8_cat[0](y)
        y = F.pixel_shuffle(F.leaky_relu(self.conv32_8_cat[1](y), NEGATIVE_SLOPE), 4)

        y = torch.cat([self.conv2x(low2x), y], dim=1)
        rgb = F.pixel_shuffle(self.conv_2_8_32(y), 2)
        return torch.clamp(rgb, 0.0, 1.0)[..., :h, :w]
