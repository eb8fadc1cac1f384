"""The SID study: "Learning to See in the Dark" (Chen, Chen, Xu, Koltun, CVPR 2018).

Data pipeline, training, evaluation and the conventional-pipeline baseline of the SID U-Net, and
the BatchNorm ablation. Used by ``notebooks/sid.ipynb`` and ``notebooks/sid_batchnorm.ipynb``; the
data pipeline (cache, crops, augmentation, representations) and the tiled evaluation are also
written for the Lamba & Mitra study, which uses another input representation (the unpacked mosaic,
no clip after amplification, sizes multiple of 32).

The pipeline, as in the official ``train_Sony.py`` / ``test_Sony.py``
(cchen156/Learning-to-See-in-the-Dark):

* input: the short exposure's mosaic, black-subtracted and divided by ``white − black`` with the
  levels *from the file* (:func:`reprolib.raw.read`), multiplied by the amplification
  ``min(t_long / t_short, 300)`` (exposures from the file names), clipped to ``≤ 1``, packed to
  4 channels at half resolution in SID's order R, G, B, G;
* ground truth: the long exposure rendered by LibRaw with
  ``postprocess(use_camera_wb=True, half_size=False, no_auto_bright=True, output_bps=16)``,
  divided by 65535 (full resolution, 2H×2W of the packed input);
* only burst ``_00`` short exposures (the official scripts glob ``%05d_00*``), and the three
  misaligned test scenes 10034, 10045, 10172 dropped, both by default;
* training: one epoch visits every training *scene* once in a random order and takes one of its
  burst-``00`` short exposures at random (as the official loop does); random crops with random
  flips and transposes; L1 loss; Adam, batch 1.

Decoded files are cached on disk once (:class:`DecodedCache`) and read back memory-mapped, so
epochs never re-decode a raw file and memory does not grow with the number of images.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import data, metrics, raw, report, study

__all__ = [
    "AMPLIFICATION_CAP", "REPRESENTATIONS", "SMOKE_DATA", "PARAMETERS", "PARAMETERS_BATCHNORM",
    "amplification", "ratio_label", "DecodedCache", "render_ground_truth", "model_input",
    "random_bayer_crop", "bayer_augment", "SIDTrainingPatches", "SIDImages", "tile_spans",
    "infer", "infer_tiled", "evaluate", "evaluate_baseline", "summarise", "by_ratio",
    "prepare_dataset", "load_splits", "dataset_summary", "train_config", "train_model",
    "published_table", "metric_rows", "plot_curves", "image_grid", "bar_chart", "conventional_output",
    "comparison_table", "sid_findings", "batchnorm_findings", "METRIC_COLUMNS", "CACHE_VERSION", "FileInfo",
]

#: SID caps the amplification at 300 (``min(ratio, 300)`` in the official scripts): the ×300
#: group holds 10 s / 0.033 s (303) and 30 s / 0.1 s (300) pairs.
AMPLIFICATION_CAP = 300.0

#: input representations: SID's packed R,G,B,G; packed R,G,G,B; the unpacked 1-channel mosaic
#: (Lamba & Mitra's network takes the mosaic and packs inside the model)
REPRESENTATIONS = ("packed_rgbg", "packed_rggb", "mosaic")

#: bumped when the decoded-cache format or the decoding changes
CACHE_VERSION = 1

#: the small synthetic set of the smoke profile (``data.prepare('sid-sony-mini', params=...)``)
SMOKE_DATA = {"n_train": 2, "n_test": 1, "n_val": 1, "height": 96, "width": 128}


# ------------------------------------------------------------------------------------------------
# Exposure ratio
# ------------------------------------------------------------------------------------------------

def amplification(pair: data.SIDPair, cap: float | None = AMPLIFICATION_CAP) -> float:
    """The amplification of a pair: ``min(t_long / t_short, cap)`` (SID: cap 300).

    Used by the SID and Lamba & Mitra studies. ``cap=None`` gives the plain exposure ratio.
    """
    return float(pair.ratio if cap is None else min(pair.ratio, cap))


def ratio_label(pair: data.SIDPair) -> int:
    """The exposure-ratio group of a pair as SID reports it: 100, 250 or 300.

    Used by the SID study's by-ratio tables. 10 s / 0.033 s = 303 falls in the ×300 group (the
    amplification is capped at 300).
    """
    return int(round(amplification(pair)))


# ------------------------------------------------------------------------------------------------
# Decoded cache
# ------------------------------------------------------------------------------------------------

def render_ground_truth(path: str | Path) -> np.ndarray:
    """The SID ground truth of a long exposure, as the official code renders it.

    Used by the SID and Lamba & Mitra studies.

    LibRaw ``postprocess(use_camera_wb=True, half_size=False, no_auto_bright=True,
    output_bps=16)`` (through :func:`reprolib.raw.conventional_pipeline` at amplification 1, the
    same call).

    Returns:
        ``uint16`` ``H×W×3`` sRGB, full resolution (divide by 65535 for ``[0, 1]``).
    """
    rgb = raw.conventional_pipeline(path, amplification=1.0, half_size=False, output_bps=16)
    # conventional_pipeline returns uint16 / 65535 in float32: rounding recovers the integers exactly
    return np.rint(rgb * 65535.0).astype(np.uint16)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


@dataclass(frozen=True)
class FileInfo:
    """Metadata of a decoded raw file kept next to its cached mosaic.

    Attributes:
        cfa: 2×2 pattern of the mosaic (e.g. ``'RGGB'``).
        black_level: ``(2, 2)`` per CFA position, digital numbers (as read from the file).
        white_level: saturation level, digital numbers.
        exposure_time: seconds (metadata; SID takes exposures from the file names).
        shape: ``(H, W)`` of the mosaic.
    """

    cfa: str
    black_level: tuple
    white_level: int
    exposure_time: float
    shape: tuple


class DecodedCache:
    """Raw files decoded once and cached on disk as memory-mapped ``.npy`` files.

    Used by the SID and Lamba & Mitra studies.

    Format (generic: no study convention is baked in), for a raw file ``<rel>`` of the data root:

    * ``<rel>.mosaic-<dtype>.npy``: the normalised mosaic ``H×W`` (``float32`` by default,
      ``float16`` halves the disk space at ~1e-3 relative precision) in ``[0, 1]``, black-subtracted
      per CFA position and divided by ``white − black`` (:func:`reprolib.raw.read`), *not*
      amplified, *not* packed;
    * ``<rel>.json``: :class:`FileInfo` (CFA pattern, levels, exposure, shape);
    * ``<rel>.srgb16.npy`` (long exposures only): the ground truth ``uint16`` ``H×W×3``
      (:func:`render_ground_truth`).

    The folder is keyed by the data root's fingerprint (:func:`reprolib.data.fingerprint`) and
    the cache format version: ``<data cache>/decoded/<root name>-<fingerprint>-v<version>/``.
    Files are written atomically (temporary name, then rename), so an interrupted decode or two
    notebooks decoding at once never leave a torn file. Reads return read-only memory maps: only
    the pages of the crops actually used are read, and nothing accumulates in memory.

    Args:
        data_root: the SID-layout data root (``Sony/short``, ``Sony/long``, list files).
        folder: the cache folder (default as above).
        dtype: ``'float32'`` or ``'float16'`` for the cached mosaics.
    """

    def __init__(self, data_root: str | Path, folder: str | Path | None = None, dtype: str = "float32"):
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        self.data_root = Path(data_root).resolve()
        key = data.fingerprint(self.data_root)
        self.folder = Path(folder) if folder else (
            data.cache_dir() / "decoded" / f"{self.data_root.name}-{key}-v{CACHE_VERSION}")
        self.dtype = dtype

    def _base(self, path: str | Path) -> Path:
        path = Path(path)
        rel = path.resolve().relative_to(self.data_root) if path.is_absolute() else path
        return self.folder / rel

    def _mosaic_file(self, path) -> Path:
        base = self._base(path)
        return base.with_name(f"{base.name}.mosaic-{self.dtype}.npy")

    def _info_file(self, path) -> Path:
        base = self._base(path)
        return base.with_name(base.name + ".json")

    def _gt_file(self, path) -> Path:
        base = self._base(path)
        return base.with_name(base.name + ".srgb16.npy")

    def has_mosaic(self, path) -> bool:
        return self._info_file(path).is_file() and self._mosaic_file(path).is_file()

    def decode(self, path: str | Path, ground_truth: bool = False) -> None:
        """Decode one raw file into the cache (no-op when already there)."""
        if not self.has_mosaic(path):
            frame = raw.read(path)
            mosaic_file = self._mosaic_file(path)
            mosaic_file.parent.mkdir(parents=True, exist_ok=True)
            _atomic_save(mosaic_file, frame.mosaic.astype(self.dtype, copy=False))
            info = {"cfa": frame.cfa, "black_level": frame.black_level.tolist(),
                    "white_level": int(frame.white_level), "exposure_time": float(frame.exposure_time),
                    "shape": list(frame.mosaic.shape), "source": str(Path(path).name)}
            tmp = self._info_file(path).with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(info))
            os.replace(tmp, self._info_file(path))
            del frame
        if ground_truth and not self._gt_file(path).is_file():
            rgb = render_ground_truth(path)
            shape = tuple(self.info(path).shape)
            if rgb.shape[:2] != shape:
                raise ValueError(f"{path}: LibRaw's rendering is {rgb.shape[0]}×{rgb.shape[1]} but the raw "
                                 f"mosaic is {shape[0]}×{shape[1]}: the ground truth would not be aligned "
                                 "with the input (a rotated frame?)")
            self._gt_file(path).parent.mkdir(parents=True, exist_ok=True)
            _atomic_save(self._gt_file(path), rgb)

    def ensure(self, pairs: Iterable[data.SIDPair], progress: bool = True, desc: str = "decode") -> None:
        """Decode every short exposure and long-exposure ground truth of ``pairs`` not yet cached.

        One file at a time: memory stays at one decoded frame whatever the number of pairs.
        """
        jobs = {}
        for p in pairs:
            jobs.setdefault(p.short_path, False)
            jobs[p.long_path] = True
        todo = [(path, gt) for path, gt in jobs.items()
                if not self.has_mosaic(path) or (gt and not self._gt_file(path).is_file())]
        if not todo:
            return
        from tqdm.auto import tqdm

        for path, gt in tqdm(todo, desc=desc, disable=not progress, leave=False, mininterval=2.0):
            self.decode(path, ground_truth=gt)

    def info(self, path) -> FileInfo:
        """The :class:`FileInfo` of a file (decoded into the cache first if needed)."""
        self.decode(path)
        d = json.loads(self._info_file(path).read_text())
        return FileInfo(cfa=d["cfa"], black_level=tuple(map(tuple, d["black_level"])),
                        white_level=d["white_level"], exposure_time=d["exposure_time"],
                        shape=tuple(d["shape"]))

    def mosaic(self, path) -> np.ndarray:
        """The cached normalised mosaic, ``H×W`` in ``[0, 1]``, as a read-only memory map."""
        self.decode(path)
        return np.load(self._mosaic_file(path), mmap_mode="r")

    def ground_truth(self, path) -> np.ndarray:
        """The cached ground truth, ``uint16`` ``H×W×3``, as a read-only memory map."""
        self.decode(path, ground_truth=True)
        return np.load(self._gt_file(path), mmap_mode="r")


# ------------------------------------------------------------------------------------------------
# Representations, crops, augmentation
# ------------------------------------------------------------------------------------------------

def model_input(mosaic: np.ndarray, cfa: str, amplification: float,
                representation: str = "packed_rgbg", clip: bool = True) -> np.ndarray:
    """Amplify (and clip) a normalised mosaic and put it in the network's representation.

    Used by the SID (``packed_rgbg``, ``clip=True``) and Lamba & Mitra (``mosaic``,
    ``clip=False``) studies.

    Args:
        mosaic: ``H×W`` normalised mosaic in ``[0, 1]`` (H, W even), CFA phase ``cfa``.
        cfa: its 2×2 pattern.
        amplification: the factor (SID: ``min(ratio, 300)``).
        representation: ``'packed_rgbg'`` (SID: ``4×H/2×W/2`` R, G, B, G), ``'packed_rggb'``
            (``4×H/2×W/2`` R, G, G, B) or ``'mosaic'`` (``1×H×W``, the CFA phase unchanged).
        clip: clip to ``≤ 1`` after amplification (SID does; Lamba & Mitra do not).

    Returns:
        ``float32`` array ``C×h×w`` in ``[0, amplification]`` (``[0, 1]`` when clipped).
    """
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    x = np.asarray(mosaic, dtype=np.float32) * np.float32(amplification)
    if clip:
        np.minimum(x, 1.0, out=x)
    if representation == "mosaic":
        return x[None]
    return raw.pack(x, cfa, "RGBG" if representation == "packed_rgbg" else "RGGB")


def _geometric(a: np.ndarray, flip_v: bool, flip_h: bool, transpose: bool) -> np.ndarray:
    """Flips / transpose of the first two axes (``H×W`` or ``H×W×C``)."""
    if flip_v:
        a = a[::-1]
    if flip_h:
        a = a[:, ::-1]
    if transpose:
        a = a.swapaxes(0, 1)
    return a


def bayer_augment(mosaic: np.ndarray, target: np.ndarray | None, cfa: str, size: int,
                  flip_v: bool, flip_h: bool, transpose: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Flip / transpose a mosaic window and its target, keeping the mosaic's CFA phase.

    Used by the SID and Lamba & Mitra studies (training augmentation).

    Flipping an even-sized Bayer crop changes its CFA phase (a horizontal flip turns RGGB into
    GRBG). We flip **the mosaic and re-align it by one pixel**: the window is one pixel larger
    than the crop in each direction (``(size+1)×(size+1)``, starting on a CFA tile); after the
    flips / transpose the ``size×size`` crop is taken at the offset ``(0 or 1, 0 or 1)`` whose
    2×2 pattern is again ``cfa``. Input and target get exactly the same pixel mapping, so they stay
    aligned pixel for pixel. (The official SID code flips the *packed* array instead, which moves
    whole 2×2 tiles: each colour plane then sits up to one raw pixel away from where the flipped
    ground truth has it. Working on the mosaic gives one code path for every representation,
    packed or not.) A transpose keeps the colours of RGGB / BGGR at their places but exchanges
    the two greens (the green of the red row lands on the blue row), as it does in a real
    transposed photograph.

    Args:
        mosaic: ``(size+1)×(size+1)`` window (any float dtype) whose top-left pixel has phase ``cfa``.
        target: the aligned full-resolution target window ``(size+1)×(size+1)×3`` (any dtype), or None.
        cfa: the window's 2×2 pattern.
        size: the crop side in raw pixels (even).
        flip_v, flip_h, transpose: the operations (applied in this order).

    Returns:
        ``(mosaic crop size×size with phase cfa, target crop size×size×3 or None)`` as contiguous arrays.
    """
    if mosaic.shape[:2] != (size + 1, size + 1) or size % 2:
        raise ValueError(f"expected an even size and a (size+1)×(size+1) window, got size {size} and "
                         f"window {mosaic.shape[:2]}")
    colours = np.array(list(cfa)).reshape(2, 2)
    window_colours = _geometric(np.tile(colours, ((size + 2) // 2, (size + 2) // 2))[: size + 1, : size + 1],
                                flip_v, flip_h, transpose)
    for oy, ox in ((0, 0), (0, 1), (1, 0), (1, 1)):
        if np.array_equal(window_colours[oy:oy + 2, ox:ox + 2], colours):
            break
    else:  # pragma: no cover - one of the four offsets always matches
        raise AssertionError("no offset restores the CFA phase")
    crop = np.ascontiguousarray(_geometric(mosaic, flip_v, flip_h, transpose)[oy:oy + size, ox:ox + size])
    if target is None:
        return crop, None
    return crop, np.ascontiguousarray(_geometric(target, flip_v, flip_h, transpose)[oy:oy + size, ox:ox + size])


def random_bayer_crop(rng: np.random.Generator, mosaic: np.ndarray, target: np.ndarray | None, cfa: str,
                      size: int, augment: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """A random ``size×size`` crop of a mosaic (and its target) that keeps the CFA phase.

    Used by the SID and Lamba & Mitra studies (training crops).

    The window starts on a 2×2 CFA tile (even row and column), so the crop has the mosaic's own
    phase; with ``augment`` it is flipped vertically, horizontally and transposed, each with
    probability 1/2 (as the official SID code), by :func:`bayer_augment`.

    Args:
        rng: the random generator (position, flips).
        mosaic: ``H×W`` (e.g. a memory map; only the window is read).
        target: ``H×W×3`` aligned target, or None.
        cfa: the mosaic's pattern.
        size: crop side in raw pixels (even, at most ``min(H, W) − 1``: the re-alignment needs one
            spare pixel).

    Returns:
        ``(float32 size×size mosaic crop, size×size×3 target crop in the target's dtype or None)``.
    """
    h, w = mosaic.shape[:2]
    if size % 2 or size < 2 or size + 1 > min(h, w):
        raise ValueError(f"crop size must be even and at most min(H, W) - 1 = {min(h, w) - 1} "
                         f"raw pixels (one spare pixel re-aligns the CFA after a flip), got {size}")
    y0 = 2 * int(rng.integers(0, (h - size - 1) // 2 + 1))
    x0 = 2 * int(rng.integers(0, (w - size - 1) // 2 + 1))
    flips = rng.integers(0, 2, size=3).astype(bool) if augment else np.zeros(3, bool)
    window = np.asarray(mosaic[y0:y0 + size + 1, x0:x0 + size + 1], dtype=np.float32)
    t = None if target is None else np.asarray(target[y0:y0 + size + 1, x0:x0 + size + 1])
    return bayer_augment(window, t, cfa, size, *map(bool, flips))


def _scenes(pairs: Sequence[data.SIDPair]) -> list[list[data.SIDPair]]:
    by_scene: dict[int, list] = {}
    for p in pairs:
        by_scene.setdefault(p.scene, []).append(p)
    return [by_scene[s] for s in sorted(by_scene)]


class SIDTrainingPatches:
    """Training batches drawn as the official SID loop draws them; a ``batch_fn`` for
    :func:`reprolib.train.train`.

    Used by the SID study (``representation='packed_rgbg'``, ``clip=True``) and written to serve
    the Lamba & Mitra study (``'mosaic'``, ``clip=False``, ``size_multiple=32``).

    An epoch visits every training scene once, in an order drawn from ``(seed, epoch)``; for each
    scene one of its short exposures (e.g. its burst-``00`` ×100 / ×250 / ×300 frames) is chosen
    at random, then a random CFA-aligned crop with flips / transpose. Everything step ``k`` draws
    comes from ``np.random.default_rng([seed, k])`` (and the epoch order from ``[seed, epoch]``),
    so a resumed run replays the same batches. Items are read from the :class:`DecodedCache`
    memory maps, crop by crop.

    Args:
        pairs: the training pairs (e.g. :func:`reprolib.data.sid_pairs` of the train list).
        cache: a :class:`DecodedCache` of the data root (decoded by :meth:`DecodedCache.ensure`).
        patch: the network input side: packed pixels for packed representations (official SID:
            512), mosaic pixels for ``'mosaic'``.
        seed: the run's seed.
        batch: crops per step (official SID: 1).
        representation, clip: see :func:`model_input`.
        cap: the amplification cap (``None``: plain ratio).
        augment: random flips and transpose.
        device: where the tensors go.

    Call ``patches(step)``: returns ``(x, y)``: ``x`` float32 ``B×C×patch×patch`` (C = 4 packed,
    1 mosaic), amplified, in ``[0, 1]`` when clipped; ``y`` float32 ``B×3×S×S`` in ``[0, 1]``, the
    ground-truth crop (``S = 2·patch`` packed, ``patch`` mosaic).
    """

    def __init__(self, pairs: Sequence[data.SIDPair], cache: DecodedCache, patch: int, seed: int,
                 batch: int = 1, representation: str = "packed_rgbg", clip: bool = True,
                 cap: float | None = AMPLIFICATION_CAP, augment: bool = True, device: str = "cpu"):
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
        if not pairs:
            raise ValueError("no training pairs")
        self.scenes = _scenes(pairs)
        self.cache, self.patch, self.seed, self.batch = cache, int(patch), int(seed), int(batch)
        self.representation, self.clip, self.cap, self.augment = representation, clip, cap, augment
        self.device = device
        self.crop = self.patch * (1 if representation == "mosaic" else 2)

    @property
    def steps_per_epoch(self) -> int:
        """Steps of one epoch: one scene per crop, ``ceil(scenes / batch)``."""
        return math.ceil(len(self.scenes) / self.batch)

    def scene_order(self, epoch: int) -> np.ndarray:
        """The scene indices of an epoch, in the order they are visited."""
        return np.random.default_rng([self.seed, 1, epoch]).permutation(len(self.scenes))

    def sample(self, step: int) -> list[tuple[data.SIDPair, np.ndarray, np.ndarray]]:
        """The pairs and crops of a step: ``[(pair, x C×h×w float32, y 3×S×S float32)]``."""
        rng = np.random.default_rng([self.seed, 0, step])
        n = len(self.scenes)
        out = []
        # epochs are counted in steps (steps_per_epoch × batch visits), so a step never spans two
        epoch, slot = divmod(step, self.steps_per_epoch)
        for b in range(self.batch):
            scene = self.scenes[self.scene_order(epoch)[(slot * self.batch + b) % n]]
            pair = scene[int(rng.integers(len(scene)))]
            info = self.cache.info(pair.short_path)
            mosaic, y = random_bayer_crop(rng, self.cache.mosaic(pair.short_path),
                                          self.cache.ground_truth(pair.long_path), info.cfa, self.crop,
                                          augment=self.augment)
            x = model_input(mosaic, info.cfa, amplification(pair, self.cap), self.representation, self.clip)
            y = y.transpose(2, 0, 1).astype(np.float32) / np.float32(65535.0)
            out.append((pair, x, y))
        return out

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = self.sample(step)
        x = torch.from_numpy(np.stack([i[1] for i in items])).to(self.device)
        y = torch.from_numpy(np.stack([i[2] for i in items])).to(self.device)
        return x, y


class SIDImages:
    """Whole test (or validation) images, one at a time, for evaluation.

    Used by the SID and Lamba & Mitra studies.

    Item ``i``: ``(pair, x, y)`` — ``x`` float32 ``1×C×h×w`` the whole amplified input in the
    chosen representation (see :func:`model_input`), ``y`` float32 ``1×3×H×W`` the whole ground
    truth in ``[0, 1]``. Nothing is kept between items.
    """

    def __init__(self, pairs: Sequence[data.SIDPair], cache: DecodedCache,
                 representation: str = "packed_rgbg", clip: bool = True,
                 cap: float | None = AMPLIFICATION_CAP):
        self.pairs, self.cache = list(pairs), cache
        self.representation, self.clip, self.cap = representation, clip, cap

    def __len__(self) -> int:
        return len(self.pairs)

    def input(self, pair: data.SIDPair) -> torch.Tensor:
        info = self.cache.info(pair.short_path)
        x = model_input(self.cache.mosaic(pair.short_path), info.cfa, amplification(pair, self.cap),
                        self.representation, self.clip)
        return torch.from_numpy(x)[None]

    def target(self, pair: data.SIDPair) -> torch.Tensor:
        gt = self.cache.ground_truth(pair.long_path)
        return torch.from_numpy(np.asarray(gt).transpose(2, 0, 1).astype(np.float32) / np.float32(65535.0))[None]

    def __getitem__(self, i: int):
        pair = self.pairs[i]
        return pair, self.input(pair), self.target(pair)


# ------------------------------------------------------------------------------------------------
# Inference: whole images, padded, tiled for full frames
# ------------------------------------------------------------------------------------------------

def tile_spans(length: int, tile: int, overlap: int, multiple: int = 16) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(start, stop, keep_start, keep_stop)`` for each tile.

    Used by :func:`infer_tiled` (SID and Lamba & Mitra studies).

    Tile starts are multiples of ``multiple`` so that the network's pooling grid inside a tile
    coincides with the one of the whole image; neighbouring tiles overlap by at least
    ``overlap`` and each keeps the part of its output up to the middle of the overlap (cropped
    centres), so every kept pixel has at least ``overlap / 2`` of context on each inner side.

    >>> tile_spans(100, 64, 32)
    [(0, 64, 0, 48), (32, 100, 48, 100)]
    >>> tile_spans(40, 64, 32)
    [(0, 40, 0, 40)]
    """
    step = tile - overlap
    if tile <= 0 or overlap < 0 or step <= 0 or step % multiple:
        raise ValueError(f"need tile > overlap ≥ 0 with tile − overlap a multiple of {multiple}, "
                         f"got tile {tile}, overlap {overlap}")
    if length <= tile:
        return [(0, length, 0, length)]
    starts = list(range(0, length - tile, step))
    last = max(0, (length - tile) // multiple * multiple)
    if last > starts[-1]:
        starts.append(last)
    stops = [min(s + tile, length) for s in starts]
    stops[-1] = length  # the last tile runs to the end (it may be up to multiple − 1 longer)
    spans = []
    for i, (a, b) in enumerate(zip(starts, stops)):
        keep_a = 0 if i == 0 else (starts[i] + stops[i - 1]) // 2
        keep_b = length if i == len(starts) - 1 else (starts[i + 1] + b) // 2
        spans.append((a, b, keep_a, keep_b))
    return spans


def _pad_call(model, x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        # reflect keeps the statistics at the border and, on a mosaic, the CFA phase (even shift)
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    y = model(x)
    s = y.shape[-1] // x.shape[-1]
    return y[..., : h * s, : w * s]


@torch.no_grad()
def infer_tiled(model: torch.nn.Module, x: torch.Tensor, tile: int = 512, overlap: int = 64,
                multiple: int = 16) -> torch.Tensor:
    """Run an image-to-image network over a large input in overlapping tiles, in bounded memory.

    Used by the SID study (full 4256×2848 Sony frames on CPU) and the Lamba & Mitra study.

    Each tile (``tile×tile`` input pixels, starting on a multiple of ``multiple``, padded by
    reflection to a multiple of ``multiple`` if it is at the border) is run separately; the
    output keeps each tile's centre (see :func:`tile_spans`). Peak memory is that of one tile
    plus the input and output arrays, whatever the frame size.

    Args:
        model: maps ``1×C×h×w`` to ``1×3×(s·h)×(s·w)`` (SID U-Net: ``s = 2``); put in eval mode.
        x: ``1×C×H×W`` float32 input (SID: packed, amplified, in ``[0, 1]``), on any device.
        tile, overlap: in input pixels; ``tile − overlap`` must be a multiple of ``multiple``.
        multiple: the network's size divisor (SID U-Net 16, Lamba & Mitra 32).

    Returns:
        ``1×3×(s·H)×(s·W)`` float32 on the CPU, the network's raw (unclamped) output.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a 1×C×H×W input, got {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    h, w = x.shape[-2:]
    out, scale = None, None
    try:
        for ya, yb, ky0, ky1 in tile_spans(h, tile, overlap, multiple):
            for xa, xb, kx0, kx1 in tile_spans(w, tile, overlap, multiple):
                y = _pad_call(model, x[..., ya:yb, xa:xb].to(device), multiple).float().cpu()
                if out is None:
                    scale = y.shape[-1] // (xb - xa)
                    out = torch.empty((1, y.shape[1], h * scale, w * scale), dtype=torch.float32)
                out[..., scale * ky0:scale * ky1, scale * kx0:scale * kx1] = \
                    y[..., scale * (ky0 - ya):scale * (ky1 - ya), scale * (kx0 - xa):scale * (kx1 - xa)]
                del y
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def infer(model: torch.nn.Module, x: torch.Tensor, tile: int | None = None, overlap: int = 64,
          multiple: int = 16) -> torch.Tensor:
    """The network's output for a whole image: padded to ``multiple`` and cropped back, tiled
    when ``tile`` is given and the image is larger than a tile.

    Used by the SID and Lamba & Mitra studies.

    Args:
        x: ``1×C×H×W`` float32 (see :func:`infer_tiled`).

    Returns:
        ``1×3×(s·H)×(s·W)`` float32 on the CPU, unclamped.
    """
    if tile is not None and max(x.shape[-2:]) > tile:
        return infer_tiled(model, x, tile=tile, overlap=overlap, multiple=multiple)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        return _pad_call(model, x.to(device), multiple).float().cpu()
    finally:
        model.train(was_training)


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------

def _row(pair: data.SIDPair, pred: torch.Tensor, target: torch.Tensor) -> dict:
    """One evaluated image: its pair, the metrics, and ``brightness`` = mean(pred) / mean(target)."""
    values = metrics.image_metrics(pred, target)
    return {"scene": pair.scene, "short": Path(pair.short).name, "ratio": ratio_label(pair),
            **{k: v[0] for k, v in values.items()},
            "brightness": float(pred.mean() / target.mean().clamp_min(1e-6))}


def evaluate(model: torch.nn.Module, pairs: Sequence[data.SIDPair], cache: DecodedCache, *,
             tile: int | None = None, overlap: int = 64, multiple: int = 16,
             representation: str = "packed_rgbg", clip: bool = True, cap: float | None = AMPLIFICATION_CAP,
             progress: bool = True, desc: str = "evaluate"):
    """Evaluate a network on whole test images: PSNR / SSIM per image, float and 8-bit.

    Used by the SID and Lamba & Mitra studies.

    Protocol (:func:`reprolib.metrics.protocol`): the output is clamped to ``[0, 1]`` (as the
    official ``test_Sony.py`` does before saving) and compared with the whole ground truth;
    ``*_8bit`` columns quantise both to 8 bits first (the authors' saved PNGs). One image at a
    time: memory does not grow with the number of test images.

    Returns:
        ``pandas.DataFrame``, one row per pair: ``scene``, ``short`` (file name), ``ratio`` (100 /
        250 / 300), ``psnr``, ``ssim``, ``psnr_8bit``, ``ssim_8bit``, ``brightness`` (mean output
        level ÷ mean ground-truth level: 1 = as bright as the ground truth).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    images = SIDImages(pairs, cache, representation, clip, cap)
    rows = []
    for pair in tqdm(images.pairs, desc=desc, disable=not progress, leave=False, mininterval=2.0):
        pred = infer(model, images.input(pair), tile=tile, overlap=overlap, multiple=multiple)
        rows.append(_row(pair, pred.clamp_(0, 1), images.target(pair)))
        del pred
    return pd.DataFrame(rows)


def conventional_output(pair: data.SIDPair, cap: float | None = AMPLIFICATION_CAP) -> torch.Tensor:
    """The "traditional pipeline" of the SID paper for one pair: the short exposure amplified by
    ``min(ratio, 300)`` and rendered by LibRaw (camera white balance, no auto-brightening).

    Used by the SID study (baseline rows and image grid).

    Returns:
        float32 ``1×3×H×W`` in ``[0, 1]``.
    """
    rgb = raw.conventional_pipeline(pair.short_path, amplification=amplification(pair, cap))
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]


def evaluate_baseline(pairs: Sequence[data.SIDPair], cache: DecodedCache, cap: float | None = AMPLIFICATION_CAP,
                      progress: bool = True, desc: str = "traditional pipeline"):
    """The traditional-pipeline baseline evaluated with the same metric code on the same pairs.

    Used by the SID study. Returns a DataFrame like :func:`evaluate`.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    images = SIDImages(pairs, cache)
    rows = []
    for pair in tqdm(images.pairs, desc=desc, disable=not progress, leave=False, mininterval=2.0):
        rows.append(_row(pair, conventional_output(pair, cap), images.target(pair)))
    return pd.DataFrame(rows)


METRIC_COLUMNS = ("psnr", "ssim", "psnr_8bit", "ssim_8bit")


def summarise(results: dict) -> "pd.DataFrame":
    """Means over the test images: one row per method.

    Used by the SID study's tables.

    Args:
        results: method name → per-image DataFrame of :func:`evaluate`.

    Returns:
        DataFrame indexed by method with ``images``, ``PSNR``, ``SSIM``, ``PSNR 8-bit``,
        ``SSIM 8-bit`` and ``brightness`` (mean of the per-image output ÷ ground-truth levels).
    """
    import pandas as pd

    rows = []
    for name, df in results.items():
        rows.append({"method": name, "images": len(df), "PSNR": df["psnr"].mean(), "SSIM": df["ssim"].mean(),
                     "PSNR 8-bit": df["psnr_8bit"].mean(), "SSIM 8-bit": df["ssim_8bit"].mean(),
                     "brightness": df["brightness"].mean()})
    return pd.DataFrame(rows).set_index("method")


def by_ratio(results: dict, metric: str = "psnr") -> "pd.DataFrame":
    """Mean ``metric`` per exposure ratio (×100 / ×250 / ×300) for each method.

    Used by the SID study (a public reproduction saw quality drop on the darkest inputs).

    Returns:
        DataFrame: rows = methods, columns ``×100``, ``×250``, ``×300`` (those present) and
        ``images`` per ratio in the last row.
    """
    import pandas as pd

    table = {name: df.groupby("ratio")[metric].mean() for name, df in results.items()}
    out = pd.DataFrame(table).T
    counts = next(iter(results.values())).groupby("ratio").size()
    out.loc["images"] = counts
    out.columns = [f"×{c}" for c in out.columns]
    return out


# ------------------------------------------------------------------------------------------------
# Data set and training set-up for the notebooks
# ------------------------------------------------------------------------------------------------

def prepare_dataset(profile: str, data_root: str = "") -> tuple[Path, str, bool]:
    """The SID data root for a profile: ``(root, data set name, synthetic?)``.

    Used by both SID notebooks. An empty ``data_root`` means the profile's data set: the synthetic
    ``sid-sony-mini`` (``smoke``: a smaller copy, :data:`SMOKE_DATA`) generated into the data
    cache; ``full`` needs ``data_root`` (the real SID folder, checked and completed with the
    official list files by ``data.prepare('sid-sony', data_root)``). A ``data_root`` given at another
    profile is used as it is (any folder in SID's layout).
    """
    if data_root:
        root = Path(data_root).expanduser()
        if profile == "full":
            return data.prepare("sid-sony", root), "sid-sony", False
        if not (root / "Sony_train_list.txt").is_file():
            raise data.DataMissingError(f"{root}: no Sony_train_list.txt: not a SID-layout data root")
        return root, root.name, (root / data.STAMP_NAME).is_file()
    if profile == "full":
        raise ValueError("profile 'full' runs on the real SID Sony data: pass data_root "
                         "(e.g. -p data_root /data/SID); get it with: python -m reprolib data prepare sid-sony --root ROOT")
    params = SMOKE_DATA if profile == "smoke" else None
    return data.prepare("sid-sony-mini", params=params), "sid-sony-mini", True


def load_splits(root: str | Path, burst00: bool = True, exclude_misaligned: bool = True) -> dict:
    """The train / val / test pairs of a SID data root (``Sony_*_list.txt``).

    Used by both SID notebooks. ``burst00``: the official selection of burst-``00`` short
    exposures; ``exclude_misaligned``: drop test scenes 10034, 10045, 10172.

    Returns:
        ``{"train": [SIDPair…], "val": […], "test": […]}``.
    """
    return {split: data.sid_pairs(f"Sony_{split}_list.txt", root, burst00_only=burst00,
                                  exclude_misaligned=exclude_misaligned)
            for split in ("train", "val", "test")}


def dataset_summary(splits: dict) -> "pd.DataFrame":
    """Pairs and scenes per split and exposure ratio, for the notebook's data table.

    Used by both SID notebooks.
    """
    import pandas as pd

    rows = []
    for split, pairs in splits.items():
        row = {"split": split, "scenes": len({p.scene for p in pairs}), "pairs": len(pairs)}
        for r in (100, 250, 300):
            row[f"×{r}"] = sum(ratio_label(p) == r for p in pairs)
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")


def train_config(P: dict, steps_per_epoch: int) -> "train.TrainConfig":
    """The optimisation settings of a resolved parameter set, in steps.

    Used by both SID notebooks: ``epochs`` × ``steps_per_epoch`` steps, Adam at ``lr``, ×0.1 at
    epoch ``lr_drop`` (official: 1e-4 → 1e-5 at 2000 of 4000), validation every ``eval_every``
    epochs, loss logged once per epoch.
    """
    from . import train

    steps = P["epochs"] * steps_per_epoch
    milestones = (P["lr_drop"] * steps_per_epoch,) if 0 < P["lr_drop"] < P["epochs"] else ()
    return train.TrainConfig(
        steps=steps, lr=P["lr"], milestones=milestones, gamma=0.1, grad_clip=P["grad_clip"] or None,
        eval_every=P["eval_every"] * steps_per_epoch, log_every=steps_per_epoch,
        checkpoint_every=steps_per_epoch * max(1, math.ceil(50 / steps_per_epoch)))


def train_model(norm: str, P: dict, splits: dict, cache: DecodedCache, data_fingerprint: str,
                desc: str | None = None):
    """Build, train (or resume / reload) and return a SID U-Net with its history.

    Used by both SID notebooks. The model is initialised from ``seed``; the training batches come
    from :class:`SIDTrainingPatches` over the train split; the validation PSNR (whole images,
    float) is logged every ``eval_every`` epochs. The checkpoint is tied to the configuration
    (norm, patch, batch, seed, schedule, data fingerprint, …): a changed configuration starts over.
    It is the shared file of :func:`reprolib.study.shared_checkpoint`
    (``<results>/sid_shared/<norm>-<hash>.pt``), so the official network trained at the same
    settings in ``sid.ipynb`` and in the BatchNorm ablation is trained once.

    Returns:
        ``(model in eval mode on P['device'], History)``.
    """
    from . import losses, train
    from .models.sid_unet import SIDUNet

    train.seed_everything(P["seed"])
    model = SIDUNet(norm=norm).to(P["device"])
    patches = SIDTrainingPatches(splits["train"], cache, P["patch"], P["seed"], batch=P["batch"],
                                 device=P["device"])
    cfg = train_config(P, patches.steps_per_epoch)
    val = splits["val"] or splits["test"][:4]

    def validate(m):
        df = evaluate(m, val, cache, tile=P["tile"], progress=False)
        return {"val_psnr": float(df["psnr"].mean())}

    path, key = study.shared_checkpoint(
        "sid_shared", norm, {"norm": norm, "patch": P["patch"], "batch": P["batch"], "seed": P["seed"],
                             "cfg": repr(cfg), "data": data_fingerprint, "burst00": P["burst00"],
                             "val": [p.short for p in val], "tile": P["tile"],
                             "device": torch.device(P["device"]).type})
    history = train.train(model, patches, lambda m, b: losses.l1(m(b[0]), b[1]), cfg,
                          checkpoint=path, evaluate_fn=validate if P["eval_every"] else None,
                          desc=desc or f"SID U-Net ({norm})", config_key=key)
    return model, history


# ------------------------------------------------------------------------------------------------
# Parameters of the two notebooks
# ------------------------------------------------------------------------------------------------

def _patch_check(v: int) -> str | None:
    return None if v >= 16 and v % 16 == 0 else "must be a positive multiple of 16 (packed pixels)"


def _parameters(norm: bool) -> dict:
    P = study.Parameter
    spec = {
        "profile": P((str,), choices=study.PROFILES, help="smoke (tests), mini (the book), full (the paper)"),
        "data_root": P((str,), profiles={"smoke": "", "mini": "", "full": ""},
                       help="SID folder (Sony/, Sony_*_list.txt); empty: the profile's data set"),
        "device": P((str,), profiles={"smoke": "cpu", "mini": "cpu", "full": "cpu"}, check=study.torch_device,
                    help="torch device"),
        "seed": P((int,), profiles={"smoke": 0, "mini": 0, "full": 0}, check=study.non_negative,
                  help="seed of initialisation, crops and order"),
        "epochs": P((int,), profiles={"smoke": 1, "mini": 22, "full": 4000}, check=study.positive,
                    help="epochs (one epoch = one crop per training scene)"),
        "lr": P((float,), profiles={"smoke": 1e-4, "mini": 1e-3, "full": 1e-4}, check=study.positive,
                help="Adam learning rate"),
        "lr_drop": P((int,), profiles={"smoke": 0, "mini": 18, "full": 2000}, check=study.non_negative,
                     help="epoch at which the learning rate is multiplied by 0.1 (0: never)"),
        "grad_clip": P((float,), profiles={"smoke": 0.1, "mini": 0.1, "full": 0.0}, check=study.non_negative,
                       help="clip the gradient norm at this value (0: no clipping, as the official code)"),
        "patch": P((int,), profiles={"smoke": 32, "mini": 64, "full": 512}, check=_patch_check,
                   help="training crop side in packed pixels (official: 512)"),
        "batch": P((int,), profiles={"smoke": 1, "mini": 1, "full": 1}, check=study.positive,
                   help="crops per step (official: 1)"),
        "burst00": P((bool,), profiles={"smoke": True, "mini": True, "full": True},
                     help="official selection: burst-00 short exposures only"),
        "exclude_misaligned": P((bool,), profiles={"smoke": True, "mini": True, "full": True},
                                help="drop the misaligned test scenes 10034, 10045, 10172"),
        "eval_every": P((int,), profiles={"smoke": 0, "mini": 5, "full": 500}, check=study.non_negative,
                        help="validation PSNR every this many epochs (0: only at the end)"),
        "tile": P((int, None), profiles={"smoke": None, "mini": None, "full": 512},
                  check=lambda v: _patch_check(v) if v is not None else None,
                  help="evaluate in tiles of this many packed pixels (None: whole images)"),
    }
    if norm:
        spec["norm"] = P((str,), profiles={"smoke": "none", "mini": "none", "full": "none"},
                         choices=("none", "single", "double"),
                         help="BatchNorm variant of the U-Net (none = the official network)")
    return spec


#: parameters of ``notebooks/sid.ipynb``. ``full`` is the official training (no gradient clipping);
#: ``mini`` is a CPU budget of 22 epochs × 24 scenes = 528 steps on 64×64 packed crops (MEASURED.md:
#: a 128×128 step takes 0.15 s on two cores), Adam 1e-3 → 1e-4 at epoch 18 — ten times the paper's
#: rate — with the gradient norm clipped at 0.1. Our trials on ``sid-sony-mini`` (test PSNR, float;
#: the traditional pipeline scores 17.16 dB): unclipped, 40 / 30 / 26 epochs at 1e-3 gave 21.06 /
#: 20.59 / 20.02 dB, 3e-4 ended 1.5 dB below 1e-3 and 2e-3 diverged; clipped at 0.1, 26 epochs gave
#: 20.76 dB at 1e-3 and 20.70 at 2e-3, 22 epochs 20.41 at 1e-3 and 19.86 at 2e-3 (where the
#: BatchNorm variants trained erratically: 14.8 and 18.1 dB).
PARAMETERS = _parameters(norm=True)
#: parameters of ``notebooks/sid_batchnorm.ipynb``: the same budget as ``sid.ipynb``, so that the
#: ablation's ``norm='none'`` network is the one ``sid.ipynb`` trains (one shared checkpoint,
#: :func:`train_model`) and the ablation trains only the two BatchNorm variants.
PARAMETERS_BATCHNORM = _parameters(norm=False)


# ------------------------------------------------------------------------------------------------
# Published numbers, record rows
# ------------------------------------------------------------------------------------------------

def published_table(stems: Sequence[str] = ("sid/sony",)) -> "pd.DataFrame":
    """Published PSNR / SSIM (paper and public reproductions) from ``published.yaml``.

    Used by both SID notebooks: ``stems=("sid/sony",)`` gives the paper's Sony result and the
    public PyTorch reproductions; ``("sid_batchnorm/none", "sid_batchnorm/single", …)`` the public
    BatchNorm ablation.

    Returns:
        DataFrame with ``key`` (the stem), ``source`` (``paper`` / ``reproduction``), ``model``,
        ``dataset``, ``PSNR``, ``SSIM`` and ``citation``, one row per published model.
    """
    import pandas as pd

    rows: dict = {}
    for stem in stems:
        for r in report.published(key=stem):
            stem_of, metric = r["key"].rsplit("/", 1)
            if stem_of != stem or metric not in ("psnr", "ssim"):
                continue
            row = rows.setdefault((stem, r["kind"], r["model"]),
                                  {"key": stem, "source": r["kind"], "model": r["model"], "dataset": r["dataset"],
                                   "PSNR": None, "SSIM": None, "citation": r["source"]})
            row[metric.upper()] = r["value"]
    return pd.DataFrame(list(rows.values()))


def metric_rows(summary: "pd.DataFrame", method: str, model: str, key_prefix: str | None, protocol: str,
                split: str = "test") -> list[dict]:
    """Run-record rows for one method of a :func:`summarise` table.

    Used by both SID notebooks. The 8-bit PSNR / SSIM carry the published key
    (``<key_prefix>/psnr``, ``…/ssim``) because the authors evaluated saved 8-bit PNGs; the float
    values get ``…/psnr_float`` / ``…/ssim_float``.
    """
    s = summary.loc[method]
    pairs = [("psnr", "PSNR 8-bit", "PSNR (dB), 8-bit"), ("ssim", "SSIM 8-bit", "SSIM, 8-bit"),
             ("psnr_float", "PSNR", "PSNR (dB), float"), ("ssim_float", "SSIM", "SSIM, float")]
    return [{"key": f"{key_prefix}/{k}" if key_prefix else None, "model": model, "metric": label,
             "value": round(float(s[col]), 4), "protocol": protocol, "split": split, "images": int(s["images"])}
            for k, col, label in pairs]


# ------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------

def plot_curves(histories: dict, steps_per_epoch: int):
    """Training L1 loss and validation PSNR against epochs, one line per model.

    Used by both SID notebooks. ``histories``: label → :class:`reprolib.train.History`.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for label, h in histories.items():
        for ax, name in zip(axes, ("loss", "val_psnr")):
            c = h.curves.get(name, [])
            if c:
                ax.plot([p["step"] / steps_per_epoch for p in c], [p["value"] for p in c],
                        marker="o" if name == "val_psnr" else None, ms=3, label=label)
    axes[0].set(xlabel="epoch", ylabel="training L1 loss (per epoch)", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="validation PSNR (dB, float)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _display_raw(x: torch.Tensor) -> np.ndarray:
    """A packed R,G,B,G input as camera RGB (greens averaged), nearest-upsampled ×2, no processing."""
    r, g1, b, g2 = x[0].numpy()
    rgb = np.stack([r, (g1 + g2) / 2, b], -1)
    return np.clip(rgb.repeat(2, 0).repeat(2, 1), 0, 1)


def image_grid(model: torch.nn.Module, pairs: Sequence[data.SIDPair], cache: DecodedCache,
               crop: int = 384, tile: int | None = None):
    """Test crops: amplified input, traditional pipeline, ours, ground truth (one row per pair).

    Used by the SID study. The input column shows the amplified, clipped packed raw as camera
    RGB (greens averaged, no white balance, no gamma: what the network receives); the traditional
    pipeline is :func:`conventional_output`. Crops are ``crop×crop`` from the image centre.
    """
    import matplotlib.pyplot as plt

    images = SIDImages(pairs, cache)
    h, w = cache.info(pairs[0].short_path).shape
    aspect = min(h, crop) / min(w, crop)
    fig, axes = plt.subplots(len(pairs), 4, figsize=(12, len(pairs) * (3 * aspect + 0.5)), squeeze=False)
    titles = ("amplified raw input", "traditional pipeline", "ours (SID U-Net)", "ground truth")
    for row, pair in zip(axes, pairs):
        x = images.input(pair)
        shown = [_display_raw(x), conventional_output(pair)[0].permute(1, 2, 0).numpy(),
                 infer(model, x, tile=tile)[0].clamp(0, 1).permute(1, 2, 0).numpy(),
                 images.target(pair)[0].permute(1, 2, 0).numpy()]
        h, w = shown[-1].shape[:2]
        cy, cx = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        target = shown[-1][cy:cy + crop, cx:cx + crop]
        for i, (ax, im) in enumerate(zip(row, shown)):
            im = im[cy:cy + crop, cx:cx + crop]
            ax.imshow(im)
            label = titles[i]
            if 0 < i < 3:
                p = metrics.psnr(torch.from_numpy(im).permute(2, 0, 1)[None],
                                 torch.from_numpy(target).permute(2, 0, 1)[None]).item()
                label += f"\n{p:.2f} dB on this crop"
            ax.set_title(label if ax.get_subplotspec().is_first_row() or 0 < i < 3 else "", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"scene {pair.scene}, ×{ratio_label(pair)}", fontsize=9)
    fig.tight_layout()
    return fig


def bar_chart(ours: "pd.DataFrame", published: "pd.DataFrame | None" = None):
    """PSNR and SSIM per BatchNorm variant: ours next to the public reproduction.

    Used by the BatchNorm ablation notebook. ``ours``: index = norm, columns ``PSNR``, ``SSIM``;
    ``published``: the same shape (values may be missing).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    x = np.arange(len(ours))
    width = 0.38 if published is not None else 0.6
    for ax, col in zip(axes, ("PSNR", "SSIM")):
        ax.bar(x - (width / 2 if published is not None else 0), ours[col], width, label="ours (miniature)")
        if published is not None:
            ax.bar(x + width / 2, published[col].astype(float), width, label="public reproduction (real SID)")
        ax.set_xticks(x, list(ours.index))
        ax.set(ylabel=col + (" (dB)" if col == "PSNR" else ""), xlabel="BatchNorm variant")
        ax.grid(axis="y", alpha=0.3)
        top = np.nanmax([ours[col].max()] + ([published[col].astype(float).max()] if published is not None else []))
        ax.set_ylim(0, 1.3 * top)  # room for the legend above the bars
        ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Tables and findings for the notebooks
# ------------------------------------------------------------------------------------------------

def comparison_table(summary: "pd.DataFrame", published: "pd.DataFrame", data_label: str) -> "pd.DataFrame":
    """Our rows (labelled with the data they were measured on) above the published rows.

    Used by the SID notebook. Published rows keep their source (``paper`` / ``reproduction``),
    model, data set and values; ours show float and 8-bit PSNR / SSIM.

    Returns:
        DataFrame with ``rows``, ``model``, ``data``, ``PSNR``, ``SSIM``, ``PSNR 8-bit``, ``SSIM 8-bit``.
    """
    import pandas as pd

    rows = [{"rows": "ours", "model": method, "data": data_label, "PSNR": s["PSNR"], "SSIM": s["SSIM"],
             "PSNR 8-bit": s["PSNR 8-bit"], "SSIM 8-bit": s["SSIM 8-bit"]} for method, s in summary.iterrows()]
    for _, r in published.iterrows():
        rows.append({"rows": f"published ({r['source']})", "model": r["model"], "data": r["dataset"],
                     "PSNR": r["PSNR"], "SSIM": r["SSIM"], "PSNR 8-bit": None, "SSIM 8-bit": None})
    return pd.DataFrame(rows).set_index("rows")


def sid_findings(summary: "pd.DataFrame", ratios: "pd.DataFrame", ours: str, baseline: str,
                 synthetic: bool, margin_needed: float = 3.0) -> str:
    """The computed "what we found" paragraph of the SID notebook.

    Used by the SID notebook: the gain of the U-Net over the traditional pipeline, whether it
    holds at every exposure ratio, and how quality changes with the ratio.
    """
    gain = summary.loc[ours, "PSNR"] - summary.loc[baseline, "PSNR"]
    gain_ssim = summary.loc[ours, "SSIM"] - summary.loc[baseline, "SSIM"]
    per_ratio = (ratios.loc[ours] - ratios.loc[baseline]).drop("images", errors="ignore")
    cols = [c for c in ratios.columns]
    trend = ratios.loc[ours, cols[-1]] - ratios.loc[ours, cols[0]]
    where = "on the synthetic miniature" if synthetic else "on this data"
    text = (f"{where.capitalize()}, the trained U-Net reaches {summary.loc[ours, 'PSNR']:.2f} dB PSNR / "
            f"{summary.loc[ours, 'SSIM']:.3f} SSIM against {summary.loc[baseline, 'PSNR']:.2f} dB / "
            f"{summary.loc[baseline, 'SSIM']:.3f} for the traditional pipeline: {gain:+.2f} dB and "
            f"{gain_ssim:+.3f} SSIM. The paper's central claim — raw-to-sRGB learning beats amplifying and "
            f"processing the short exposure conventionally — "
            f"{'holds' if gain > 0 else 'does not hold'} here"
            f"{f' by more than the {margin_needed:g} dB we asked of the miniature' if gain >= margin_needed else ''}"
            f"{'' if gain >= margin_needed or gain <= 0 else f', but by less than {margin_needed:g} dB'}. "
            f"The gain is {'positive at every' if (per_ratio > 0).all() else 'not positive at every'} exposure "
            f"ratio ({', '.join(f'{c}: {v:+.2f} dB' for c, v in per_ratio.items())}); from {cols[0]} to "
            f"{cols[-1]} our PSNR changes by {trend:+.2f} dB"
            f"{' (darker inputs are harder, as a public reproduction saw)' if trend < 0 else ''}.")
    if synthetic:
        text += (" The absolute numbers are not comparable to the paper's 28.88 dB: the scenes, the noise "
                 "(a simulated Poisson–Gaussian sensor) and the training budget are all miniature; what "
                 "transfers is the comparison between methods on the same data, not the level.")
    return text


def batchnorm_findings(summary: "pd.DataFrame", published: "pd.DataFrame | None" = None,
                       synthetic: bool = True, histories: dict | None = None) -> str:
    """The computed paragraph of the BatchNorm ablation: does BatchNorm hurt here?

    Used by the BatchNorm ablation notebook. ``summary``: index ``none`` / ``single`` /
    ``double`` with ``PSNR`` and ``SSIM`` (float metrics); ``published``: the reproduction's rows
    with a ``norm`` column; ``histories``: norm → training History (its last logged loss tells
    whether a gap is already there in training mode, i.e. not only a test-time statistics effect).
    """
    d_single = summary.loc["single", "PSNR"] - summary.loc["none", "PSNR"]
    d_double = summary.loc["double", "PSNR"] - summary.loc["none", "PSNR"]
    ds_single = summary.loc["single", "SSIM"] - summary.loc["none", "SSIM"]
    ds_double = summary.loc["double", "SSIM"] - summary.loc["none", "SSIM"]
    hurts = d_single < 0 and d_double < 0
    text = (f"Against the network without normalisation ({summary.loc['none', 'PSNR']:.2f} dB, "
            f"{summary.loc['none', 'SSIM']:.3f}), BatchNorm after each double convolution changes PSNR by "
            f"{d_single:+.2f} dB (SSIM {ds_single:+.3f}) and BatchNorm after every convolution by "
            f"{d_double:+.2f} dB (SSIM {ds_double:+.3f}). ")
    if published is not None and len(published) == 3:
        p = published.set_index("norm")
        text += (f"The public reproduction measured {p.loc['single', 'PSNR'] - p.loc['none', 'PSNR']:+.2f} dB and "
                 f"{p.loc['double', 'PSNR'] - p.loc['none', 'PSNR']:+.2f} dB on the real Sony set. ")
    if histories:
        last = {n: h.last("loss") for n, h in histories.items()}
        text += ("The last epoch's training L1 loss (BatchNorm in training mode, batch statistics) is "
                 + ", ".join(f"{last[n]:.4f} ({n})" for n in ("none", "single", "double") if last.get(n) is not None)
                 + ": " + ("the BatchNorm variants also fit the training crops worse, so the gap is not only "
                           "the switch to running statistics at test time. "
                           if min(last["single"], last["double"]) > last["none"] else
                           "the BatchNorm variants fit the training crops at least as well, so the gap comes "
                           "from evaluation (running statistics on whole images). "))
    if hurts:
        text += "Our numbers point the same way as the reproduction: with batch-1 training, BatchNorm hurts. "
    elif d_single > 0 and d_double > 0:
        text += ("Our numbers point the other way: both BatchNorm variants score higher than the plain "
                 "network here, so the reproduction's conclusion does not carry over to this miniature. ")
    else:
        text += "Our numbers are mixed: one variant gains and the other loses, so they do not settle the question. "
    text += ("Caveats: one seed per variant, so differences of a few tenths of a dB are within the spread a "
             "different seed would give; BatchNorm with batch 1 normalises each crop by its own statistics "
             "in training but uses running averages at test time, a mismatch that grows with the gap between "
             "the training crops and the whole test images")
    text += (", and the miniature trains each variant for a few hundred steps on synthetic scenes, so it "
             "says little about where the variants end after 1000 or 4000 epochs on real photographs."
             if synthetic else ".")
    return text
