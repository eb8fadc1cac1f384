"""The Zurich RAW-to-RGB data set (PyNET) as the official ``load_data.py`` reads it: ``<split>/huawei_raw/<i>.png``
(the Huawei P20's Bayer mosaic, 10-bit values in a 16-bit PNG, black level included), ``<split>/canon/<i>.jpg``
(the Canon photo of the scene), ``i = 0 … N−1``, splits ``train``/``test``; the synthetic ``zurich-mini`` too."""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import raw
from .manifest import DataMissingError

__all__ = ["RAW_SCALE", "PACKING_ORDER", "read_zurich_raw", "pack_zurich", "read_zurich_target", "ZurichRawToRGB"]

#: the official input scaling: the 10-bit mosaic divided by 4·255 (``extract_bayer_channels``)
RAW_SCALE = 4 * 255
#: the official packing order: ``raw[1::2, 1::2]``, ``[0::2, 1::2]``, ``[0::2, 0::2]``, ``[1::2,
#: 0::2]`` (named B, Gb, R, Gr there): on the P20's R G / G B tile, B, red row's G, R, blue row's G
PACKING_ORDER = "BGRG"


def read_zurich_raw(path: str | Path) -> np.ndarray:
    """A raw patch: ``uint16`` H×W Bayer mosaic, digital numbers (black level in); ValueError if odd-sized."""
    with Image.open(path) as im:
        mosaic = np.asarray(im)
    if mosaic.ndim != 2 or mosaic.shape[0] % 2 or mosaic.shape[1] % 2:
        raise ValueError(f"{path}: expected a single-channel Bayer mosaic with even sides, got shape {mosaic.shape}")
    return mosaic.astype(np.uint16, copy=False)


def pack_zurich(mosaic):
    """Pack a Zurich mosaic (``…×H×W`` digital numbers, numpy or torch, even sides) as the official
    code: :data:`PACKING_ORDER` of an RGGB tile, divided by :data:`RAW_SCALE`. Returns ``float32``
    ``…×4×H/2×W/2``: no black subtraction, no clipping (a 10-bit white is 1.003).

    >>> pack_zurich(np.arange(16, dtype=np.uint16).reshape(4, 4))[:, 0, 0] * 1020
    array([5., 1., 0., 4.], dtype=float32)
    """
    packed = raw.pack(mosaic, "RGGB", PACKING_ORDER)
    packed = packed.astype(np.float32) if isinstance(packed, np.ndarray) else packed.to(torch.float32)
    return packed / RAW_SCALE


def read_zurich_target(path: str | Path, level: int = 0) -> np.ndarray:
    """A target photo for PyNET level ``level``, ``float32`` 3×H/2^level×W/2^level in ``[0, 1]``:
    the 8-bit JPEG resized by ``1/2^level`` with PIL's bilinear filter (what the official
    ``scipy.misc.imresize`` did), divided by 255."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if level:
            im = im.resize((im.width // 2 ** level, im.height // 2 ** level), Image.BILINEAR)
        return np.ascontiguousarray(np.asarray(im).transpose(2, 0, 1), dtype=np.float32) / np.float32(255)


def identity_files(root: str | Path) -> list[Path] | None:
    """What :class:`ZurichRawToRGB` reads under ``root`` (for :func:`~reprolib.data.fingerprint`):
    ``<split>/huawei_raw/<i>.png`` and ``<split>/canon/<i>.jpg`` of every numbered raw patch of
    ``train`` and ``test``; None when neither has a ``huawei_raw`` folder."""
    root = Path(root)
    splits = [split for split in ("train", "test") if (root / split / "huawei_raw").is_dir()]
    if not splits:
        return None
    return [root / split / folder / f"{p.stem}.{ext}" for split in splits
            for p in sorted((root / split / "huawei_raw").glob("*.png")) if p.stem.isdigit()
            for folder, ext in (("huawei_raw", "png"), ("canon", "jpg"))]


class ZurichRawToRGB(torch.utils.data.Dataset):
    """The pairs of ``split`` under ``root``, read on demand. Item ``i``: ``float32`` 4×h×w (:func:`pack_zurich`) and
    ``float32`` 3×(2h/2^level)×(2w/2^level) in ``[0, 1]`` (:func:`read_zurich_target`), the size of PyNET's output at
    ``level`` (:meth:`set_level`). :class:`DataMissingError` unless both folders hold ``0 … N−1`` (N ≥ 1).
    ``limit``: the first pairs only."""

    def __init__(self, root: str | Path, split: str, level: int = 0, limit: int | None = None):
        self.root, self.split = Path(root), split
        self.raw_dir, self.target_dir = self.root / split / "huawei_raw", self.root / split / "canon"
        raws = {p.stem for p in self.raw_dir.glob("*.png")}
        targets = {p.stem for p in self.target_dir.glob("*.jpg")}
        self.n = len(raws)
        if not self.n or raws != targets or raws != {str(i) for i in range(self.n)}:
            raise DataMissingError(f"{self.root / split}: expected huawei_raw/<i>.png and canon/<i>.jpg for i = 0 … "
                                   f"N−1 (Zurich RAW-to-RGB); found {len(raws)} PNG and {len(targets)} JPEG files")
        self.n = min(self.n, limit or self.n)
        self.set_level(level)

    def set_level(self, level: int) -> None:
        """Targets at the output size of PyNET level ``level`` from now on."""
        if level not in range(6):
            raise ValueError(f"level must be one of 0 … 5 (PyNET's levels), got {level!r}")
        self.level = level

    def __len__(self) -> int:
        return self.n

    def raw(self, i: int) -> torch.Tensor:
        """The packed input of item ``i``, 4×h×w float32."""
        return torch.from_numpy(pack_zurich(read_zurich_raw(self.raw_dir / f"{i}.png")))

    def target(self, i: int, level: int | None = None) -> torch.Tensor:
        """The target of item ``i`` at ``level`` (default: the data set's), 3×H×W float32."""
        level = self.level if level is None else level
        return torch.from_numpy(read_zurich_target(self.target_dir / f"{i}.jpg", level))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} pairs")
        return self.raw(i), self.target(i)

    def batch(self, indices: list[int] | np.ndarray, threads: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``indices`` stacked, ``(B×4×h×w, B×3×H×W)``, decoded in threads (PIL frees the GIL)."""
        with ThreadPoolExecutor(max(1, min(threads, len(indices)))) as pool:
            items = list(pool.map(self.__getitem__, indices))
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])
