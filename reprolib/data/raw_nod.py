"""RAW-NOD (GenISP study): its COCO-style annotation files and a detection data set over its raw
files, real or ``raw-nod-mini``."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.utils.data

from .. import raw
from .manifest import DataMissingError

__all__ = ["RawNODFormatError", "RAW_NOD_CLASSES", "RawNODImage", "RawNODAnnotations", "read_raw_nod",
           "raw_nod_paths", "RawNODDetection", "scale_target", "split_table"]

#: the three COCO categories annotated in RAW-NOD
RAW_NOD_CLASSES = {1: "person", 2: "bicycle", 3: "car"}


class RawNODFormatError(ValueError):
    """An annotation file that does not follow RAW-NOD's COCO schema."""


_COCO_BOX_KEYS = {"id", "image_id", "category_id", "bbox", "area", "segmentation"}  # not flags


@dataclass
class RawNODImage:
    """One annotated image: ``index`` its position in the JSON ``images`` list (a stable integer
    id; RAW-NOD's own ``id`` is ``'DSC01881'`` in most files, ``125`` in others); ``file_name``,
    ``width``, ``height`` as in the JSON; ``boxes`` ``float32`` ``N×4`` ``[x1, y1, x2, y2]`` and
    ``labels`` ``int64`` ``(N,)`` COCO ids (1 person, 2 bicycle, 3 car), in pixels of the full
    image; ``flags``: the other per-box fields, arrays of length ``N`` (``iscrowd``; in the Sony
    test file also ``isnoisy``, ``isoutoffocus``, … ``islabeled``)."""

    index: int
    id: int | str
    file_name: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    flags: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class RawNODAnnotations:
    """A RAW-NOD annotation file at ``path``: ``images`` (:class:`RawNODImage`, ``images[i].index
    == i``), ``categories`` as given (3, or all 80 COCO ones in the Nikon test file), ``classes``
    ``{category id: name}`` of those the boxes use, ``dropped`` (boxes of non-positive width or
    height), ``info`` (the JSON's ``info`` block)."""

    path: Path
    images: list[RawNODImage]
    categories: list[dict]
    classes: dict[int, str]
    dropped: int
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_boxes(self) -> int:
        """Number of boxes kept (after dropping the degenerate ones)."""
        return sum(len(im.labels) for im in self.images)


def read_raw_nod(json_path: str | Path) -> RawNODAnnotations:
    """Read a RAW-NOD (COCO-style) annotation file; COCO ``bbox`` ``[x, y, w, h]`` becomes ``[x1,
    y1, x2, y2]``, boxes of zero or negative width or height (one in the Nikon test file) are
    dropped and counted. Raises :class:`DataMissingError` (no such file) or
    :class:`RawNODFormatError` (not RAW-NOD's schema)."""
    path = Path(json_path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataMissingError(f"{path}: no such annotation file") from None
    except ValueError as e:
        raise RawNODFormatError(f"{path}: not valid JSON ({e})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise RawNODFormatError(f"{path}: missing the COCO list {key!r}")
    category_names = {}
    for c in doc["categories"]:
        try:
            category_names[int(c["id"])] = str(c["name"])
        except (KeyError, TypeError, ValueError):
            raise RawNODFormatError(f"{path}: malformed category {c!r}") from None
    by_id, images = {}, []
    for i, im in enumerate(doc["images"]):
        try:
            images.append({"id": im["id"], "file_name": str(im["file_name"]),
                           "width": int(im["width"]), "height": int(im["height"]), "anns": []})
        except (KeyError, TypeError, ValueError):
            raise RawNODFormatError(f"{path}: image #{i} lacks id / file_name / width / height: {im!r}") from None
        if im["id"] in by_id:
            raise RawNODFormatError(f"{path}: image id {im['id']!r} appears twice")
        by_id[im["id"]] = i
    flag_keys, dropped = set(), 0
    for a in doc["annotations"]:
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            image = images[by_id[a["image_id"]]]
            label = int(a["category_id"])
        except KeyError as e:
            raise RawNODFormatError(f"{path}: annotation {a.get('id')!r}: missing or unknown {e}") from None
        except (TypeError, ValueError):
            raise RawNODFormatError(f"{path}: annotation {a.get('id')!r}: bbox is not [x, y, w, h]: {a.get('bbox')!r}") from None
        if label not in category_names:
            raise RawNODFormatError(f"{path}: annotation {a.get('id')!r}: category {label} is not in categories")
        if w <= 0 or h <= 0:
            dropped += 1
            continue
        flag_keys.update(set(a) - _COCO_BOX_KEYS)
        image["anns"].append((x, y, x + w, y + h, label, a))
    used = sorted({ann[4] for im in images for ann in im["anns"]})
    out = [RawNODImage(index=i, id=im["id"], file_name=im["file_name"], width=im["width"], height=im["height"],
                       boxes=np.array([a[:4] for a in im["anns"]], dtype=np.float32).reshape(-1, 4),
                       labels=np.array([a[4] for a in im["anns"]], dtype=np.int64),
                       flags={k: np.array([a[5].get(k, False) for a in im["anns"]]) for k in sorted(flag_keys)})
           for i, im in enumerate(images)]
    return RawNODAnnotations(path=path, images=out, categories=doc["categories"], dropped=dropped,
                             classes={c: category_names[c] for c in used}, info=doc.get("info", {}))


def raw_nod_paths(root: str | Path, camera: str, split: str) -> tuple[Path, Path]:
    """``(root/camera, root/annotations/camera/raw_*_<split>.json)``: the images folder and the one
    raw annotation file of a RAW-NOD data root (real or synthetic), ``camera`` ``'Sony'`` or
    ``'Nikon'``, ``split`` ``'train'``, ``'val'`` or ``'test'``."""
    root = Path(root)
    if camera not in ("Sony", "Nikon") or split not in ("train", "val", "test"):
        raise ValueError(f"camera must be 'Sony' or 'Nikon' and split 'train', 'val' or 'test', got {camera!r}, {split!r}")
    folder = root / "annotations" / camera
    found = sorted(folder.glob(f"raw_*_{split}.json"))
    if len(found) != 1:
        have = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
        raise DataMissingError(f"{folder}: expected exactly one raw_*_{split}.json annotation file, found "
                               f"{len(found)} (files there: {have or 'none'}); "
                               "run: python -m reprolib data prepare raw-nod-annotations --root " + str(root))
    return root / camera, found[0]


def identity_files(root: str | Path) -> list[Path] | None:
    """What the RAW-NOD readers read under ``root`` (for :func:`~reprolib.data.fingerprint`): the
    raw annotation files ``annotations/<camera>/raw_*_<split>.json`` and every image they name;
    None without any."""
    root = Path(root)
    found = [j for camera in ("Sony", "Nikon") for split in ("train", "val", "test")
             for j in sorted((root / "annotations" / camera).glob(f"raw_*_{split}.json"))]
    if not found:
        return None
    return found + sorted({root / j.parent.name / im.file_name for j in found for im in read_raw_nod(j).images})


class RawNODDetection(torch.utils.data.Dataset):
    """RAW-NOD images with their boxes, one raw file read (:func:`reprolib.raw.read`) per item:
    ``images_dir`` the raw files' folder (``root/Sony``, ``root/Nikon``), ``json_path`` the split's
    annotation file, ``transform(frame, target) -> (image, target)`` optional (it gets the target
    so that a resize can scale the boxes), ``in_memory`` keeps every item after its first read (a
    miniature's few MB). Item ``(frame, target)``: a :class:`reprolib.raw.RawFrame` (mosaic
    ``float32`` H×W in ``[0, 1]``) or what ``transform`` returns; ``target``: ``boxes``
    (``float32`` N×4 xyxy, pixels of the annotated size), ``labels`` (``int64`` N), ``image_id``
    (the stable index), ``image_size`` (annotated (height, width)), ``file_name``. ``limit``: the
    first images of the file only."""

    def __init__(self, images_dir: str | Path, json_path: str | Path, transform=None, in_memory: bool = False,
                 limit: int | None = None):
        self.images_dir = Path(images_dir)
        self.annotations = read_raw_nod(json_path)
        self.images = self.annotations.images[:limit]
        self.transform = transform
        self._memory = {} if in_memory else None

    def __len__(self) -> int:
        return len(self.images)

    def missing_files(self) -> list[Path]:
        """Raw files the annotations list but the images folder lacks."""
        return [self.images_dir / im.file_name for im in self.images if not (self.images_dir / im.file_name).is_file()]

    def __getitem__(self, index: int):
        if self._memory is not None and index in self._memory:
            return self._memory[index]
        image = self.images[index]
        path = self.images_dir / image.file_name
        if not path.is_file():
            raise DataMissingError(f"{path}: image {image.id!r} of {self.annotations.path.name} is missing from {self.images_dir}")
        frame = raw.read(path)
        target = {"boxes": torch.from_numpy(image.boxes.copy()), "labels": torch.from_numpy(image.labels.copy()),
                  "image_id": image.index, "image_size": (image.height, image.width),
                  "file_name": image.file_name}
        item = (frame, target) if self.transform is None else self.transform(frame, target)
        if self._memory is not None:
            self._memory[index] = item
        return item


def scale_target(target: dict, size: tuple[int, int]) -> dict:
    """A :class:`RawNODDetection` target with its boxes scaled from the annotated (full) image size
    (e.g. 2624×3936) to ``size`` = (h, w) (e.g. the packed, resized 800×1200 a network sees):
    ``boxes`` ``float32`` N×4 xyxy in pixels of ``size``, and ``size`` added."""
    boxes = raw.scale_boxes(target["boxes"].float(), target["image_size"], size).float()
    return {**target, "boxes": boxes, "size": tuple(size)}


def split_table(root: str | Path, uses: dict | None = None) -> pd.DataFrame:
    """Images, boxes (kept, degenerate dropped) and image size per RAW-NOD camera and split, and
    ``uses[(camera, split)]`` (what a study uses it for; default GenISP's)."""
    uses = uses or {("Sony", "train"): "GenISP training", ("Nikon", "test"): "Table 1 (unseen camera)"}
    rows = []
    for camera, split in ((c, s) for c in ("Sony", "Nikon") for s in ("train", "val", "test")):
        a = read_raw_nod(raw_nod_paths(root, camera, split)[1])
        rows.append({"camera": camera, "split": split, "images": len(a), "boxes": a.num_boxes,
                     "degenerate boxes dropped": a.dropped,
                     "image size": f"{a.images[0].height}×{a.images[0].width}" if a.images else "-",
                     "used here": uses.get((camera, split), "-")})
    return pd.DataFrame(rows).set_index(["camera", "split"])
