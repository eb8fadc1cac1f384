"""SID's paired raw data (SID and Lamba & Mitra studies) as the official ``train_Sony.py`` /
``test_Sony.py`` (cchen156/Learning-to-See-in-the-Dark) build it: list files and pairs, the decoded
cache, input conventions (:data:`SID_INPUT`, :data:`LLE_INPUT`), Bayer-preserving crops, training
batches, whole images. Levels from the file, amplification ``min(t_long / t_short, 300)`` from the
file names, ground truth: the long exposure rendered by LibRaw; burst ``00`` only, misaligned
scenes dropped."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import raw, train
from .manifest import DataMissingError, cache_dir, fingerprint

__all__ = ["SIDListError", "SID_MISALIGNED_SCENES", "SIDPair", "read_sid_list", "sid_pairs",
           "load_splits", "dataset_summary", "AMPLIFICATION_CAP", "InputConvention", "SID_INPUT", "LLE_INPUT",
           "amplification", "ratio_label", "model_input", "render_ground_truth", "FileInfo", "DecodedCache",
           "bayer_augment", "random_bayer_crop", "SIDTrainingPatches", "SIDImages"]

#: SID test scenes the authors found misaligned with their ground truth (README, Aug 2018):
#: "remove those images for quantitative results"
SID_MISALIGNED_SCENES = frozenset({10034, 10045, 10172})

_SID_SPLITS = {"0": "train", "1": "test", "2": "val"}


class SIDListError(ValueError):
    """A malformed row in a SID list file (the message gives file and line number)."""


@dataclass(frozen=True)
class SIDPair:
    """One row of a SID list file, a short exposure and its long-exposure ground truth: ``short`` /
    ``long`` as the list writes them (``'./Sony/short/00001_00_0.1s.ARW'``); ``scene`` (first digit 0 /
    1 / 2: ``split`` train / test / val); ``burst`` (0 for ``_00``); exposures in seconds from the file
    names, ``ratio = long_exposure / short_exposure``; ``iso``; ``aperture`` as written (``'F8'``);
    ``short_path`` / ``long_path`` resolved by :func:`sid_pairs`."""

    short: str
    long: str
    scene: int
    burst: int
    short_exposure: float
    long_exposure: float
    ratio: float
    iso: int
    aperture: str
    split: str
    short_path: Path | None = field(default=None, compare=False)
    long_path: Path | None = field(default=None, compare=False)


# <scene: 5 digits>_<burst: 2 digits>_<exposure>s.<extension>, e.g. 10019_00_0.033s.RAF
_SID_NAME = re.compile(r"^(\d{5})_(\d{2})_(\d+(?:\.\d+)?)s\.[A-Za-z0-9]+$")


def read_sid_list(path: str | Path) -> list[SIDPair]:
    """Parse a SID list file (``Sony_train_list.txt`` …) into :class:`SIDPair` rows, in file order: a
    row is ``<short path> <long path> ISO<n> F<f>``, exposures from the file names. Raises
    :class:`SIDListError` on a malformed row, naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataMissingError(f"{path}: cannot read the SID list ({e.strerror})") from None
    pairs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields, where = line.split(), f"{path}:{lineno}"
        if not fields:
            continue
        if len(fields) != 4:
            raise SIDListError(f"{where}: expected 4 fields '<short> <long> ISO<n> F<f>', got {len(fields)}: {line!r}")
        short, long_, iso, aperture = fields
        names = [Path(f).name for f in fields[:2]]
        if bad := [n for n in names if not _SID_NAME.match(n)]:
            raise SIDListError(f"{where}: file name {bad[0]!r} is not <scene>_<burst>_<exposure>s.<ext>")
        (s_scene, s_burst, s_exp), (l_scene, _, l_exp) = (_SID_NAME.match(n).groups() for n in names)
        short_exposure, long_exposure = float(s_exp), float(l_exp)
        for bad, problem in (
                (s_scene != l_scene, f"short exposure of scene {s_scene} paired with long exposure of scene {l_scene}"),
                (not (iso.startswith("ISO") and iso[3:].isdigit()), f"ISO field {iso!r} is not ISO<number>"),
                (not re.fullmatch(r"F\d+(\.\d+)?", aperture), f"aperture field {aperture!r} is not F<number>"),
                (s_scene[0] not in _SID_SPLITS, f"scene id {s_scene} does not start with 0, 1 or 2 (train, test, val)"),
                (short_exposure <= 0 or long_exposure <= 0, "exposure times must be positive")):
            if bad:
                raise SIDListError(f"{where}: {problem}")
        pairs.append(SIDPair(short=short, long=long_, scene=int(s_scene), burst=int(s_burst),
                             short_exposure=short_exposure, long_exposure=long_exposure,
                             ratio=long_exposure / short_exposure, iso=int(iso[3:]), aperture=aperture,
                             split=_SID_SPLITS[s_scene[0]]))
    return pairs


def sid_pairs(list_path: str | Path, root: str | Path, burst00_only: bool = True,
              exclude_misaligned: bool = True) -> list[SIDPair]:
    """The pairs of a SID list (a relative ``list_path`` is also looked up in ``root``), ``short_path`` /
    ``long_path`` resolved against ``root`` with the list's own file names (``.ARW``; a synthetic set ``.dng``).
    ``burst00_only``: burst ``_00`` short exposures only, as the official scripts (280 training, 93 test
    pairs on Sony); ``exclude_misaligned``: drop :data:`SID_MISALIGNED_SCENES` (88 test pairs left).
    Raises ``DataMissingError`` naming the first listed file that is missing."""
    root, list_path = Path(root), Path(list_path)
    if not list_path.is_absolute() and not list_path.exists() and (root / list_path).exists():
        list_path = root / list_path
    pairs = [p for p in read_sid_list(list_path)
             if (p.burst == 0 or not burst00_only) and (p.scene not in SID_MISALIGNED_SCENES or not exclude_misaligned)]
    out = [dataclasses.replace(p, short_path=root / p.short, long_path=root / p.long)
           for p in pairs]
    missing = [q for p in out for q in (p.short_path, p.long_path) if not q.is_file()]
    if missing:
        first = missing[0]
        others = sorted(q.name for q in first.parent.glob(first.stem + ".*")) if first.parent.is_dir() else []
        hint = (f" (found {', '.join(others)} instead: the list and the data set disagree on the file "
                f"extension)") if others else ""
        raise DataMissingError(f"{len(set(missing))} file(s) listed in {list_path} are missing under {root}; "
                               f"first: {first}{hint}")
    return out


def load_splits(root: str | Path, burst00: bool = True, exclude_misaligned: bool = True,
                limit: int | None = None) -> dict:
    """``{"train", "val", "test"}`` → :class:`SIDPair` lists of a SID data root (``Sony_*_list.txt``;
    ``burst00``, ``exclude_misaligned`` as in :func:`sid_pairs`; ``limit``: the first pairs of each
    split only); also the layout check of :func:`~reprolib.data.dataset_for_profile`
    (``DataMissingError`` naming a missing list)."""
    return {split: sid_pairs(Path(root) / f"Sony_{split}_list.txt", root, burst00, exclude_misaligned)[:limit]
            for split in ("train", "val", "test")}


def identity_files(root: str | Path) -> list[Path] | None:
    """What the SID readers read under ``root`` (for :func:`~reprolib.data.fingerprint`): the three
    ``Sony_*_list.txt`` and every raw file they name (all bursts and scenes); None without
    ``Sony_train_list.txt``."""
    lists = [Path(root) / f"Sony_{split}_list.txt" for split in ("train", "val", "test")]
    if not lists[0].is_file():
        return None
    return lists + sorted({Path(root) / name for path in lists if path.is_file()
                           for p in read_sid_list(path) for name in (p.short, p.long)})


def dataset_summary(splits: dict) -> pd.DataFrame:
    """Scenes and pairs per split (rows) and per exposure-ratio group (``×100``, ``×250``, ``×300``)."""
    rows = [{"split": split, "scenes": len({p.scene for p in pairs}), "pairs": len(pairs),
             **{f"×{r}": sum(ratio_label(p) == r for p in pairs) for r in (100, 250, 300)}}
            for split, pairs in splits.items()]
    return pd.DataFrame(rows).set_index("split")


#: SID caps the amplification at 300 (``min(ratio, 300)`` in the official scripts): the ×300
#: group holds 10 s / 0.033 s (303) and 30 s / 0.1 s (300) pairs.
AMPLIFICATION_CAP = 300.0


@dataclass(frozen=True)
class InputConvention:
    """How a network takes a short exposure (:data:`SID_INPUT`, :data:`LLE_INPUT`): ``representation``
    ``'packed'`` (``4×H/2×W/2``, SID's order R, G, B, G) or ``'mosaic'`` (``1×H×W``, the CFA phase
    unchanged; Lamba & Mitra's network packs inside the model); ``clip`` to ``≤ 1`` after amplifying;
    the amplification ``min(t_long / t_short, cap)`` (``cap=None``: the plain ratio); ``multiple``:
    the network's size divisor (inputs are padded to it, tiles start on it)."""

    representation: str
    clip: bool
    cap: float | None
    multiple: int

    def __post_init__(self):
        if self.representation not in ("packed", "mosaic"):
            raise ValueError(f"representation must be 'packed' or 'mosaic', got {self.representation!r}")

    @property
    def scale(self) -> int:
        """Raw pixels per input pixel along a side: 2 packed, 1 mosaic."""
        return 1 if self.representation == "mosaic" else 2


#: SID's U-Net: packed R,G,B,G, amplification capped at 300 and clipped to 1, sizes multiple of 16
SID_INPUT = InputConvention("packed", clip=True, cap=AMPLIFICATION_CAP, multiple=16)
#: Lamba & Mitra's network: the mosaic times the plain exposure ratio, not clipped, sizes multiple of 32
LLE_INPUT = InputConvention("mosaic", clip=False, cap=None, multiple=32)


def amplification(pair: SIDPair, cap: float | None = AMPLIFICATION_CAP) -> float:
    """The amplification of a pair: ``min(t_long / t_short, cap)`` (``cap=None``: the plain ratio)."""
    return float(pair.ratio if cap is None else min(pair.ratio, cap))


def ratio_label(pair: SIDPair) -> int:
    """The exposure-ratio group of a pair as SID reports it: 100, 250 or 300 (303 falls in ×300)."""
    return int(round(amplification(pair)))


def model_input(mosaic: np.ndarray, cfa: str, amplification: float,
                convention: InputConvention = SID_INPUT) -> np.ndarray:
    """Amplify (and clip) a normalised ``H×W`` mosaic in ``[0, 1]`` (H, W even, phase ``cfa``) into the
    ``convention``'s representation: ``float32`` ``4×H/2×W/2`` (packed) or ``1×H×W`` (mosaic), in
    ``[0, amplification]`` (``[0, 1]`` when clipped)."""
    x = np.asarray(mosaic, dtype=np.float32) * np.float32(amplification)
    if convention.clip:
        np.minimum(x, 1.0, out=x)
    if convention.representation == "mosaic":
        return x[None]
    return raw.pack(x, cfa, "RGBG")


def render_ground_truth(path: str | Path) -> np.ndarray:
    """The SID ground truth of a long exposure as the official code renders it (LibRaw
    ``postprocess(use_camera_wb=True, half_size=False, no_auto_bright=True, output_bps=16)``):
    ``uint16`` ``H×W×3`` sRGB at full resolution (divide by 65535 for ``[0, 1]``)."""
    rgb = raw.conventional_pipeline(path, amplification=1.0, half_size=False, output_bps=16)
    # conventional_pipeline returns uint16 / 65535 in float32: rounding recovers the integers exactly
    return np.rint(rgb * 65535.0).astype(np.uint16)


def _atomic_write(path: Path, write) -> None:
    """``write(binary file)`` into a temporary file, then rename: readers never see a torn file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


@dataclass(frozen=True)
class FileInfo:
    """A cached raw file's ``cfa`` (``'RGGB'``…), ``black_level`` (2×2), ``white_level``, ``exposure_time``
    (s) and ``shape`` (H, W)."""

    cfa: str
    black_level: tuple
    white_level: int
    exposure_time: float
    shape: tuple


class DecodedCache:
    """Raw files decoded once into ``<data cache>/decoded/<root name>-<fingerprint>-v<VERSION>/``, read
    back as read-only memory maps (opened per call: nothing is held open, so a forked DataLoader
    worker reads the same files). For a raw file ``<rel>``, its path as named under the data root
    (symbolic links are not followed: a root, folder or file may link to read-only data elsewhere):
    ``<rel>.mosaic-<dtype>.npy`` the normalised mosaic ``H×W`` in ``[0, 1]`` (:func:`reprolib.raw.read`;
    not amplified, not packed), ``<rel>.json`` its :class:`FileInfo`, for long exposures
    ``<rel>.srgb16.npy`` the ground truth ``uint16 H×W×3`` (:func:`render_ground_truth`). A file
    outside the data root raises ValueError. Files are written atomically; ``dtype`` of the
    mosaics ``'float32'`` or ``'float16'`` (half the disk, ~1e-3 relative precision)."""

    VERSION = 1  # bumped when the cache format or the decoding changes

    def __init__(self, data_root: str | Path, folder: str | Path | None = None, dtype: str = "float32"):
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        self.data_root, self.dtype = Path(os.path.abspath(data_root)), dtype
        self.folder = Path(folder) if folder else (
            cache_dir() / "decoded" / f"{self.data_root.name}-{fingerprint(self.data_root)}-v{self.VERSION}")
        self._elsewhere = "" if folder else "; set REPROLIB_DATA to put it elsewhere"

    def _file(self, path, suffix: str) -> Path:
        path = Path(os.path.abspath(path))
        if not path.is_relative_to(self.data_root):
            raise ValueError(f"{path} is not under the data root {self.data_root} of this decoded cache")
        base = self.folder / path.relative_to(self.data_root)
        return base.with_name(base.name + suffix)

    def _has_mosaic(self, path) -> bool:
        return all(self._file(path, s).is_file() for s in (".json", f".mosaic-{self.dtype}.npy"))

    def decode(self, path: str | Path, ground_truth: bool = False) -> None:
        """Decode one raw file (and its ground truth) into the cache; a no-op when already there."""
        if not self._has_mosaic(path):
            frame = raw.read(path)
            mosaic = frame.mosaic.astype(self.dtype, copy=False)
            self._file(path, "").parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self._file(path, f".mosaic-{self.dtype}.npy"), lambda f: np.save(f, mosaic))
            info = {"cfa": frame.cfa, "black_level": frame.black_level.tolist(),
                    "white_level": int(frame.white_level), "exposure_time": float(frame.exposure_time),
                    "shape": list(frame.mosaic.shape), "source": str(Path(path).name)}
            _atomic_write(self._file(path, ".json"), lambda f: f.write(json.dumps(info).encode()))
            del frame, mosaic
        gt_file = self._file(path, ".srgb16.npy")
        if ground_truth and not gt_file.is_file():
            rgb, shape = render_ground_truth(path), tuple(self.info(path).shape)
            if rgb.shape[:2] != shape:
                raise ValueError(f"{path}: LibRaw's rendering is {rgb.shape[0]}×{rgb.shape[1]} but the raw mosaic "
                                 f"is {shape[0]}×{shape[1]}: the ground truth would not be aligned (a rotated frame?)")
            _atomic_write(gt_file, lambda f: np.save(f, rgb))

    def ensure(self, pairs: Iterable[SIDPair], progress: bool = True, desc: str = "decode") -> None:
        """Decode the short exposures and long-exposure ground truths of ``pairs`` not yet cached, one
        at a time, in this process (before DataLoader workers start, so that they only read). With
        ``progress``, first a line on stderr (the folder, the number of files, the size expected on
        disk from the first file's shape), then a progress bar."""
        pairs = list(pairs)
        jobs = {**{p.short_path: False for p in pairs}, **{p.long_path: True for p in pairs}}
        todo = [(path, gt) for path, gt in jobs.items()
                if not self._has_mosaic(path) or (gt and not self._file(path, ".srgb16.npy").is_file())]
        if progress and todo:
            pixels = math.prod(self.info(todo[0][0]).shape)  # decodes the first file
            size = pixels * (np.dtype(self.dtype).itemsize * len(todo) + 6 * sum(gt for _, gt in todo))
            print(f"decoding {len(todo):,} raw files into {self.folder} (~{_bytes(size)}{self._elsewhere})",
                  file=sys.stderr, flush=True)
        for path, gt in tqdm(todo, desc=desc, disable=not (progress and todo), leave=False, mininterval=2.0):
            self.decode(path, ground_truth=gt)

    def info(self, path) -> FileInfo:
        """The :class:`FileInfo` of a file (decoded into the cache first if needed)."""
        self.decode(path)
        d = json.loads(self._file(path, ".json").read_text())
        return FileInfo(cfa=d["cfa"], black_level=tuple(map(tuple, d["black_level"])),
                        white_level=d["white_level"], exposure_time=d["exposure_time"], shape=tuple(d["shape"]))

    def mosaic(self, path) -> np.ndarray:
        """The cached normalised mosaic, ``H×W`` in ``[0, 1]``, as a read-only memory map."""
        self.decode(path)
        return np.load(self._file(path, f".mosaic-{self.dtype}.npy"), mmap_mode="r")

    def ground_truth(self, path) -> np.ndarray:
        """The cached ground truth, ``uint16`` ``H×W×3``, as a read-only memory map."""
        self.decode(path, ground_truth=True)
        return np.load(self._file(path, ".srgb16.npy"), mmap_mode="r")


def _bytes(n: float) -> str:
    """``n`` bytes in words, e.g. ``'47.2 GB'``."""
    for k, unit in ((4, "TB"), (3, "GB"), (2, "MB"), (1, "kB")):
        if n >= 1000 ** k:
            return f"{n / 1000 ** k:.3g} {unit}"
    return f"{n:.0f} B"


def _geometric(a: np.ndarray, flip_v: bool, flip_h: bool, transpose: bool) -> np.ndarray:
    a = a[::-1] if flip_v else a
    a = a[:, ::-1] if flip_h else a
    return a.swapaxes(0, 1) if transpose else a


def bayer_augment(mosaic: np.ndarray, target: np.ndarray | None, cfa: str, size: int,
                  flip_v: bool, flip_h: bool, transpose: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Flip / transpose (in this order) a ``(size+1)×(size+1)`` mosaic window of phase ``cfa`` and
    its aligned ``(size+1)×(size+1)×3`` target (or None), keeping the phase (``size`` even): the
    ``size×size`` crop starts at the offset (0 or 1, 0 or 1) whose 2×2 pattern is again ``cfa``.
    (The official code flips the *packed* array, each plane up to a pixel off the ground truth.)
    Returns ``(mosaic crop size×size, target crop size×size×3 or None)``, contiguous."""
    if mosaic.shape[:2] != (size + 1, size + 1) or size % 2:
        raise ValueError(f"expected an even size and a (size+1)×(size+1) window, got size {size} and "
                         f"window {mosaic.shape[:2]}")
    colours = np.array(list(cfa)).reshape(2, 2)
    window_colours = _geometric(np.tile(colours, ((size + 2) // 2, (size + 2) // 2))[: size + 1, : size + 1],
                                flip_v, flip_h, transpose)
    oy, ox = next((oy, ox) for oy, ox in ((0, 0), (0, 1), (1, 0), (1, 1))
                  if np.array_equal(window_colours[oy:oy + 2, ox:ox + 2], colours))
    crop = (slice(oy, oy + size), slice(ox, ox + size))
    return tuple(None if a is None else np.ascontiguousarray(_geometric(a, flip_v, flip_h, transpose)[crop])
                 for a in (mosaic, target))


def random_bayer_crop(rng: np.random.Generator, mosaic: np.ndarray, target: np.ndarray | None, cfa: str,
                      size: int, augment: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """A random ``size×size`` crop of an ``H×W`` mosaic (e.g. a memory map) and its aligned ``H×W×3``
    target (or None), keeping the CFA phase: the window starts on a 2×2 tile (draws from ``rng``: row,
    column, then with ``augment`` three flip / transpose bits for :func:`bayer_augment`). ``size``:
    even, at most ``min(H, W) − 1`` (a spare pixel re-aligns the CFA). Returns ``(float32 size×size
    mosaic crop, size×size×3 target crop in the target's dtype or None)``."""
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


def _target(gt: np.ndarray) -> np.ndarray:
    """``uint16 H×W×3`` → ``float32 3×H×W`` in ``[0, 1]``."""
    return np.asarray(gt).transpose(2, 0, 1).astype(np.float32) / np.float32(65535.0)


class SIDTrainingPatches:
    """Training batches as the official SID loop draws them (a ``batch_fn`` for
    :func:`reprolib.train.train`): an epoch visits every scene once
    (:func:`reprolib.train.epoch_batch`, stream ``sid_epoch_order``, the last batch wrapping
    round); per scene a random short exposure and CFA-aligned crop with flips / transpose
    (:func:`random_bayer_crop`), from ``default_rng([seed, STREAMS["sid_crop"], step])``, so a
    resumed run replays the same batches. ``patch``: network input side (packed pixels when
    packed; official 512); ``batch``: crops per step (official 1). ``patches(step)`` → ``(x, y)``:
    ``x`` float32 ``B×C×patch×patch`` (:func:`model_input`; C = 4 packed, 1 mosaic), ``y`` float32
    ``B×3×S×S`` in ``[0, 1]``, ``S = patch × convention.scale``, on ``device`` (``None`` or
    ``'cpu'``: CPU tensors, what DataLoader workers return). Every draw is a function of the step
    and the pairs are decoded into ``cache`` here, so that calls in forked DataLoader workers only
    read it and give the same batches as calls in the main process."""

    def __init__(self, pairs: Sequence[SIDPair], cache: DecodedCache, patch: int, seed: int, batch: int = 1,
                 convention: InputConvention = SID_INPUT, augment: bool = True, device: str | None = "cpu"):
        if not pairs:
            raise ValueError("no training pairs")
        if isinstance(cache, DecodedCache):
            cache.ensure(pairs, desc="decode train")
        self.scenes = [[p for p in pairs if p.scene == s] for s in sorted({p.scene for p in pairs})]
        self.cache, self.patch, self.seed, self.batch = cache, int(patch), int(seed), int(batch)
        self.convention, self.augment, self.device = convention, augment, device
        self.crop = self.patch * convention.scale

    @property
    def steps_per_epoch(self) -> int:
        """Steps of one epoch: one scene per crop, ``ceil(scenes / batch)``."""
        return math.ceil(len(self.scenes) / self.batch)

    def sample(self, step: int) -> list[tuple[SIDPair, np.ndarray, np.ndarray]]:
        """The pairs and crops of a step: ``[(pair, x C×h×w float32, y 3×S×S float32)]``."""
        rng = np.random.default_rng([self.seed, train.STREAMS["sid_crop"], step])
        out = []
        for i in train.epoch_batch(len(self.scenes), self.batch, self.seed, train.STREAMS["sid_epoch_order"], step,
                                   drop_last=False):
            scene = self.scenes[i]
            pair = scene[int(rng.integers(len(scene)))]
            cfa = self.cache.info(pair.short_path).cfa
            mosaic, y = random_bayer_crop(rng, self.cache.mosaic(pair.short_path),
                                          self.cache.ground_truth(pair.long_path), cfa, self.crop, self.augment)
            out.append((pair, model_input(mosaic, cfa, amplification(pair, self.convention.cap), self.convention),
                        _target(y)))
        return out

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = self.sample(step)
        return tuple(torch.from_numpy(np.stack([i[k] for i in items])).to(self.device or "cpu") for k in (1, 2))


class SIDImages:
    """Whole test (or validation) images of ``pairs``, read one at a time for evaluation: the
    amplified input (:meth:`input`) and the ground truth (:meth:`target`); nothing is kept."""

    def __init__(self, pairs: Sequence[SIDPair], cache: DecodedCache, convention: InputConvention = SID_INPUT):
        self.pairs, self.cache, self.convention = list(pairs), cache, convention

    def input(self, pair: SIDPair) -> torch.Tensor:
        """The whole amplified input of ``pair`` (:func:`model_input`), ``1×C×h×w`` float32."""
        cfa, cap = self.cache.info(pair.short_path).cfa, self.convention.cap
        return torch.from_numpy(model_input(self.cache.mosaic(pair.short_path), cfa, amplification(pair, cap),
                                            self.convention))[None]

    def target(self, pair: SIDPair) -> torch.Tensor:
        """The ground truth of ``pair``, ``1×3×H×W`` float32 in ``[0, 1]``."""
        return torch.from_numpy(_target(self.cache.ground_truth(pair.long_path)))[None]
