"""Reading Bayer raw files (real or :mod:`reprolib.synth`'s DNGs) into a :class:`RawFrame`, and the
packing / resizing conventions of the four studies.

* ``mosaic``: ``float32`` ``H×W``, black level subtracted *per CFA position*, divided by
  ``white − black``, clipped to ``[0, 1]``.
* ``cfa``: the 2×2 colour filter pattern read row by row from the top-left pixel of the visible
  area, e.g. ``'RGGB'`` means ``mosaic[0, 0]`` is red and ``mosaic[1, 1]`` is blue.
* packed arrays: ``4×H/2×W/2`` (channel first) in a channel *order* such as ``'RGGB'`` (Lamba &
  Mitra, GenISP) or SID's ``'RGBG'``; its first ``G`` is the green on the red row.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rawpy
import tifffile
import torch

__all__ = ["RawFrame", "RawReadError", "read", "pack", "unpack", "pack_rgb", "cfa_positions",
           "retinanet_resize_shape", "resize_keep_aspect", "scale_boxes", "conventional_pipeline",
           "CFA_PATTERNS"]

#: the four Bayer phases, named by their 2×2 pattern read row by row
CFA_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")


class RawReadError(ValueError):
    """A missing, unreadable, truncated or non-Bayer raw file; the message names file and reason."""


@dataclass
class RawFrame:
    """A decoded Bayer raw frame (conventions: the module docstring).

    Attributes:
        path: the file it was read from.
        mosaic: ``float32`` ``H×W`` in ``[0, 1]`` (black-subtracted, white-normalised, clipped).
        cfa: 2×2 pattern of the visible area, one of :data:`CFA_PATTERNS`.
        white_balance: ``(3,)`` camera as-shot multipliers ``(R, G, B)`` with ``G = 1``, or ``None``.
        camera_to_xyz: ``3×3`` camera RGB → CIE XYZ: the **inverse** of rawpy's ``rgb_xyz_matrix[:3]``
            (which maps XYZ to camera, kept as ``xyz_to_camera``); ``None`` without a colour matrix.
        black_level: ``(2, 2)`` black level per CFA position; white_level: saturation level (DN).
        make, model: camera identification (TIFF tags); iso, exposure_time (s): ``0`` when absent.
    """

    path: Path
    mosaic: np.ndarray
    cfa: str
    white_balance: np.ndarray | None
    camera_to_xyz: np.ndarray | None
    black_level: np.ndarray
    white_level: int
    make: str = ""
    model: str = ""
    iso: float = 0.0
    exposure_time: float = 0.0
    xyz_to_camera: np.ndarray | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the mosaic."""
        return self.mosaic.shape


def _open(path: Path, meta: dict | None = None):
    """Open a raw file with rawpy (any failure: RawReadError); ``meta`` gets Make/Model/ISO."""
    path = Path(path)
    if not path.exists():
        raise RawReadError(f"{path}: no such file")
    if path.is_dir():
        raise RawReadError(f"{path}: is a directory, not a raw file")
    if path.stat().st_size == 0:
        raise RawReadError(f"{path}: empty file")
    found = _check_tiff_extent(path)
    if meta is not None:
        meta.update(found)
    try:
        raw = rawpy.imread(str(path))
        raw.unpack()
    except rawpy.LibRawFileUnsupportedError as e:
        raise RawReadError(f"{path}: not a raw format LibRaw can decode ({e})") from None
    except rawpy.LibRawIOError as e:
        raise RawReadError(f"{path}: truncated or unreadable file ({e})") from None
    except (rawpy.LibRawError, OSError) as e:
        raise RawReadError(f"{path}: cannot be decoded ({type(e).__name__}: {e})") from None
    return raw


def _check_tiff_extent(path: Path) -> dict:
    """Check that a TIFF-based raw's image data lies inside the file (LibRaw zero-fills a
    truncated one silently); returns the first IFD's Make, Model and ISO (not in rawpy)."""
    size = path.stat().st_size
    log = logging.getLogger("tifffile")
    level, log.level = log.level, logging.CRITICAL  # its warnings about foreign tags are noise here
    meta = {}
    try:
        with tifffile.TiffFile(path) as tif:
            first = tif.pages.first.tags
            for key, code in (("make", 271), ("model", 272), ("iso", 34855)):
                if code in first:
                    meta[key] = first[code].value
            todo, seen, end = list(tif.pages), set(), 0
            while todo:
                page = todo.pop()
                if id(page) in seen:
                    continue
                seen.add(id(page))
                offsets, counts = getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ())
                for o, n in zip(offsets, counts):
                    end = max(end, int(o) + int(n))
                sub = getattr(page, "pages", None)
                if sub is not None:
                    todo.extend(sub)
    except Exception:  # not a TIFF container (or unreadable header): leave the verdict to LibRaw
        return meta
    finally:
        log.level = level
    if end > size:
        raise RawReadError(f"{path}: truncated file ({size} bytes, but its image data extends to byte {end})")
    return meta


def _bayer_pattern(raw, path: Path) -> tuple[str, np.ndarray]:
    """The visible area's 2×2 CFA pattern as a string and as LibRaw's ``(2, 2)`` colour indices."""
    if raw.raw_type != rawpy.RawType.Flat or raw.raw_pattern is None:
        raise RawReadError(f"{path}: not a Bayer-mosaic raw (LibRaw raw type {raw.raw_type.name}, "
                           "e.g. a scanner, a linear DNG or a multi-shot file)")
    pattern = np.asarray(raw.raw_pattern)
    if pattern.shape != (2, 2):
        raise RawReadError(f"{path}: CFA repeat pattern is {pattern.shape[0]}×{pattern.shape[1]}, "
                           "not a 2×2 Bayer pattern (an X-Trans or other non-Bayer sensor)")
    desc = raw.color_desc.decode("ascii", "replace")
    if desc not in ("RGBG", "RGBE") or desc[3] != "G":
        raise RawReadError(f"{path}: colour filters {desc!r} are not R, G, B (a CMYG or other sensor)")
    # LibRaw's pattern is the full sensor's: shift it by the parity of the visible area's margins
    top, left = raw.sizes.top_margin % 2, raw.sizes.left_margin % 2
    pattern = np.roll(pattern, shift=(-top, -left), axis=(0, 1))
    cfa = "".join(desc[c] for c in pattern.ravel())
    if cfa not in CFA_PATTERNS:
        raise RawReadError(f"{path}: CFA pattern {cfa!r} is not one of the four Bayer phases")
    return cfa, pattern


def read(path: str | Path) -> RawFrame:
    """Read a Bayer raw file into a :class:`RawFrame`, levels from the file (never constants).
    Raises RawReadError: missing, empty, truncated or corrupt file; not a Bayer sensor; X-Trans.

    Example:
        >>> frame = read(path)                                       # doctest: +SKIP
        >>> frame.mosaic.shape, frame.cfa, frame.mosaic.max() <= 1    # doctest: +SKIP
        ((2848, 4256), 'RGGB', True)
    """
    path = Path(path)
    meta: dict = {}
    with _open(path, meta) as raw:
        cfa, pattern = _bayer_pattern(raw, path)
        try:
            bayer = raw.raw_image_visible  # uint16 view, decoded here
        except rawpy.LibRawError as e:
            raise RawReadError(f"{path}: raw data cannot be decoded, the file is probably "
                               f"truncated or corrupt ({type(e).__name__}: {e})") from None
        if bayer.ndim != 2 or min(bayer.shape) < 2:
            raise RawReadError(f"{path}: raw data has shape {bayer.shape}, not a 2-D mosaic")
        black_per_colour = np.asarray(raw.black_level_per_channel, dtype=np.float64)
        black = black_per_colour[pattern]  # (2, 2) per CFA position
        white = int(raw.white_level)
        if not np.all(white > black):
            raise RawReadError(f"{path}: white level {white} is not above black level {black.ravel()}")
        mosaic = normalise(bayer, black, white)

        wb = np.asarray(raw.camera_whitebalance, dtype=np.float64)
        white_balance = (wb[:3] / wb[1]).astype(np.float32) if wb[:3].min() > 0 else None
        m = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
        xyz_to_camera = None if np.abs(m).sum() == 0 else m
        camera_to_xyz = None if xyz_to_camera is None else np.linalg.inv(m)
        iso = float(raw.other.iso_speed or 0.0)
        shutter = float(raw.other.shutter_speed or 0.0)
    tag_iso = meta.get("iso", 0)
    if isinstance(tag_iso, (tuple, list)) and tag_iso:
        tag_iso = tag_iso[0]
    return RawFrame(
        path=path, mosaic=mosaic, cfa=cfa, white_balance=white_balance,
        camera_to_xyz=camera_to_xyz, xyz_to_camera=xyz_to_camera,
        black_level=black.astype(np.float32), white_level=white, make=str(meta.get("make", "")).strip(),
        model=str(meta.get("model", "")).strip(), iso=iso or float(tag_iso or 0.0), exposure_time=shutter,
    )


def normalise(bayer: np.ndarray, black: np.ndarray, white: float) -> np.ndarray:
    """Black-subtract per CFA position, divide by ``white − black``, clip to ``[0, 1]``: ``bayer``
    (``H×W`` integers, DN), ``black`` (``(2, 2)`` per CFA position, or a scalar) → ``float32`` ``H×W``."""
    black = np.broadcast_to(np.asarray(black, dtype=np.float32), (2, 2))
    out = np.empty(bayer.shape, dtype=np.float32)
    for dy in range(2):
        for dx in range(2):
            view = out[dy::2, dx::2]
            np.subtract(bayer[dy::2, dx::2], black[dy, dx], out=view, dtype=np.float32)
            view *= np.float32(1.0 / (white - black[dy, dx]))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def cfa_positions(cfa: str, order: str = "RGGB") -> list[tuple[int, int]]:
    """The ``(dy, dx)`` offset inside the 2×2 tile of each channel of ``order`` (first ``G``: the
    green on the red row).

    >>> cfa_positions('RGGB', 'RGBG')
    [(0, 0), (0, 1), (1, 1), (1, 0)]
    >>> cfa_positions('GRBG', 'RGGB')
    [(0, 1), (0, 0), (1, 1), (1, 0)]
    """
    cfa, order = cfa.upper(), order.upper()
    if cfa not in CFA_PATTERNS:
        raise ValueError(f"cfa must be one of {CFA_PATTERNS}, got {cfa!r}")
    if sorted(order) != sorted("RGGB"):
        raise ValueError(f"order must be a permutation of 'RGGB' (e.g. 'RGGB', 'RGBG'), got {order!r}")
    where = {}
    for i, c in enumerate(cfa):
        dy, dx = divmod(i, 2)
        if c == "G":
            red_row = "R" in cfa[2 * dy: 2 * dy + 2]
            where["G1" if red_row else "G2"] = (dy, dx)
        else:
            where[c] = (dy, dx)
    out, greens = [], 0
    for c in order:
        if c == "G":
            greens += 1
            out.append(where[f"G{greens}"])
        else:
            out.append(where[c])
    return out


def pack(mosaic, cfa: str, order: str = "RGGB"):
    """Pack a Bayer mosaic ``(…, H, W)`` (numpy or torch) into ``(…, 4, H/2, W/2)`` in channel
    ``order``: ``'RGBG'`` is SID's packing, ``'RGGB'`` Lamba & Mitra's."""
    h, w = mosaic.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"mosaic must have even height and width to pack, got {h}×{w}")
    planes = [mosaic[..., dy::2, dx::2] for dy, dx in cfa_positions(cfa, order)]
    if isinstance(mosaic, np.ndarray):
        return np.stack(planes, axis=-3)
    return torch.stack(planes, dim=-3)


def unpack(packed, cfa: str, order: str = "RGGB"):
    """Exact inverse of :func:`pack`: ``(…, 4, H/2, W/2)`` → ``(…, H, W)``."""
    if packed.shape[-3] != 4:
        raise ValueError(f"packed input must have 4 channels at dim -3, got shape {tuple(packed.shape)}")
    h2, w2 = packed.shape[-2:]
    shape = tuple(packed.shape[:-3]) + (2 * h2, 2 * w2)
    if isinstance(packed, np.ndarray):
        out = np.empty(shape, dtype=packed.dtype)
    else:
        out = torch.empty(shape, dtype=packed.dtype, device=packed.device)
    for i, (dy, dx) in enumerate(cfa_positions(cfa, order)):
        out[..., dy::2, dx::2] = packed[..., i, :, :]
    return out


def pack_rgb(mosaic, cfa: str):
    """Pack to ``(…, 3, H/2, W/2)`` as R, mean of the two greens, B (GenISP's pre-processing)."""
    p = pack(mosaic, cfa, "RGGB")
    r, g1, g2, b = (p[..., i, :, :] for i in range(4))
    g = (g1 + g2) * 0.5
    if isinstance(p, np.ndarray):
        return np.stack([r, g, b], axis=-3)
    return torch.stack([r, g, b], dim=-3)


def retinanet_resize_shape(h: int, w: int, min_side: int = 800, max_side: int = 1333) -> tuple[int, int]:
    """Output size of the keras-retinanet resize rule (GenISP): keep aspect, short side to
    ``min_side``, or long side to ``max_side`` if it would exceed it.

    >>> retinanet_resize_shape(3648, 5472)
    (800, 1200)
    >>> retinanet_resize_shape(2624, 3936)
    (800, 1200)
    >>> retinanet_resize_shape(600, 2000)
    (400, 1333)
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}×{w}")
    scale = min_side / min(h, w)
    if max(h, w) * scale > max_side:
        scale = max_side / max(h, w)
    return int(round(h * scale)), int(round(w * scale))


def resize_keep_aspect(image: torch.Tensor, min_side: int, max_side: int) -> torch.Tensor:
    """Resize a (…)×C×H×W image to :func:`retinanet_resize_shape` (GenISP): bilinear, no
    anti-aliasing (like keras-retinanet's ``cv2.resize``); the input itself when the size is kept."""
    h, w = image.shape[-2:]
    out = retinanet_resize_shape(h, w, min_side, max_side)
    if out == (h, w):
        return image
    x = torch.nn.functional.interpolate(image.reshape(-1, *image.shape[-3:]), size=out, mode="bilinear",
                                        align_corners=False, antialias=False)
    return x.reshape(*image.shape[:-2], *out)


def scale_boxes(boxes, from_hw: tuple[int, int], to_hw: tuple[int, int]):
    """Scale boxes ``(N, 4)`` in ``[x1, y1, x2, y2]`` or COCO ``[x, y, w, h]`` pixels from an image
    of size ``from_hw`` to one of size ``to_hw`` (each axis by its own ratio). Numpy or torch."""
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    if isinstance(boxes, np.ndarray):
        return boxes.astype(np.float64) * np.array([sx, sy, sx, sy], dtype=np.float64)
    s = torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype if boxes.is_floating_point() else torch.float32,
                     device=boxes.device)
    return boxes.to(s.dtype) * s


def conventional_pipeline(path: str | Path, amplification: float = 1.0, half_size: bool = False,
                          output_bps: int = 16) -> np.ndarray:
    """The "traditional pipeline" baseline: LibRaw's ``postprocess`` (camera white balance, no
    auto-brightening) of the raw data times ``amplification``, clipped at the white level.
    Returns ``float32`` ``H×W×3`` sRGB in ``[0, 1]``."""
    path = Path(path)
    with _open(path) as raw:
        _bayer_pattern(raw, path)  # the same clear error as read() for a non-Bayer file
        if amplification != 1.0:
            img = raw.raw_image_visible  # writable view into LibRaw's buffer
            blk = np.asarray(raw.black_level_per_channel, dtype=np.float32)[raw.raw_colors_visible]
            amp = (img.astype(np.float32) - blk) * amplification + blk
            img[...] = np.clip(amp, 0, float(raw.white_level)).astype(img.dtype)
        rgb = raw.postprocess(use_camera_wb=True, half_size=half_size, no_auto_bright=True,
                              output_bps=output_bps)
    return (rgb.astype(np.float32) / float(2 ** output_bps - 1))
