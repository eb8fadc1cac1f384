"""The four studies' networks, faithful to the official implementations."""
from .genisp import GenISP
from .lle import LLENet
from .pynet import PyNET
from .sid_unet import SIDUNet

__all__ = ["SIDUNet", "LLENet", "GenISP", "PyNET"]
