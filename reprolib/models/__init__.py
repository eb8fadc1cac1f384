"""The four studies' networks (faithful to the official code where there is one), by name."""
from __future__ import annotations

import torch.nn as nn

from .genisp import GenISP
from .lle import LLENet
from .pynet import PyNET
from .sid_unet import SIDUNet

__all__ = ["SIDUNet", "LLENet", "GenISP", "PyNET", "MODELS", "build"]

#: each study's network by name: SID's U-Net, Lamba & Mitra's network, GenISP and PyNET
MODELS = {"sid_unet": SIDUNet, "lle": LLENet, "genisp": GenISP, "pynet": PyNET}


def build(name: str, **kwargs) -> nn.Module:
    """A new network ``MODELS[name](**kwargs)``, initialised by the current torch generator;
    ``ValueError`` for an unknown name.

    Inputs (float32, details in each class): ``sid_unet`` and ``pynet`` the packed raw frame
    ``B×4×H/2×W/2`` in ``[0, 1]`` (SID's black-subtracted and amplified), ``lle`` the mosaic
    ``B×1×H×W``, ``genisp`` the packed frame with the greens averaged ``B×3×H/2×W/2``.

    >>> type(build("lle", n_blocks=2)).__name__
    'LLENet'
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
