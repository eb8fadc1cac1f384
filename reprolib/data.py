"""Data sets and weights: the registry (``data_manifest.yaml``), getting them, and reading them.

Every data set and weight file the studies use is an entry of ``data_manifest.yaml`` at the
repository root. :func:`prepare` makes an entry usable and returns its folder:

* **synthetic** entries (``sid-sony-mini``, ``raw-nod-mini``, ``zurich-mini``) are generated once
  by their ``generator`` into a cache folder, in the real data set's on-disk format, with a stamp
  file recording the generator, its parameters, a hash of its source and the sha256 of every file;
* **real** data sets are checked where the user put them (``root``); when something is missing
  the error says what to download, from where, and where to put it;
* **small files** (SID lists, RAW-NOD annotations, weights) are downloaded with pooch and checked
  by sha256 — unless downloads are disabled (``download=False`` or ``REPROLIB_OFFLINE=1``).

The readers (:func:`read_sid_list`, :func:`sid_pairs`, :func:`read_raw_nod`,
:class:`RawNODDetection`, :class:`ZurichRawToRGB`) work the same on the real data and on the synthetic miniatures.

Environment variables: ``REPROLIB_DATA`` (cache folder, default ``~/.cache/reprolib``),
``REPROLIB_MANIFEST`` (another manifest file), ``REPROLIB_OFFLINE=1`` (never download).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.utils.data
import yaml

from . import raw

__all__ = [
    "DataMissingError", "DataVerificationError", "UnknownEntryError", "ManifestError", "SIDListError",
    "RawNODFormatError", "MANIFEST_PATH", "STAMP_NAME", "SID_MISALIGNED_SCENES", "RAW_NOD_CLASSES",
    "load_manifest", "cache_dir", "entry", "prepare", "verify", "fingerprint", "manifest_table",
    "SIDPair", "read_sid_list", "sid_pairs",
    "RawNODImage", "RawNODAnnotations", "read_raw_nod", "raw_nod_paths", "RawNODDetection",
    "ZURICH_LAYOUT", "RAW_SCALE", "PACKING_SLICES", "read_zurich_raw", "pack_zurich", "read_zurich_target",
    "ZurichRawToRGB",
]

#: the registry shipped with the repository
MANIFEST_PATH = Path(__file__).resolve().parents[1] / "data_manifest.yaml"
#: file written into every generated (synthetic) data set
STAMP_NAME = ".reprolib-stamp.json"
#: SID test scenes the authors found misaligned with their ground truth (README, Aug 2018):
#: "remove those images for quantitative results"
SID_MISALIGNED_SCENES = frozenset({10034, 10045, 10172})
#: the three COCO categories annotated in RAW-NOD
RAW_NOD_CLASSES = {1: "person", 2: "bicycle", 3: "car"}

KINDS = ("real", "synthetic", "weights")
_SID_SPLITS = {"0": "train", "1": "test", "2": "val"}


class DataMissingError(FileNotFoundError):
    """A data set or file is not where it should be; the message says how to get it."""


class DataVerificationError(RuntimeError):
    """Files are present but their checksums (or sizes) are not the expected ones."""


class UnknownEntryError(KeyError):
    """A name that is not in the manifest; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class ManifestError(ValueError):
    """The manifest file itself is malformed."""


class SIDListError(ValueError):
    """A malformed row in a SID list file (the message gives file and line number)."""


class RawNODFormatError(ValueError):
    """An annotation file that does not follow RAW-NOD's COCO schema."""


# ------------------------------------------------------------------------------------------------
# The manifest
# ------------------------------------------------------------------------------------------------

def load_manifest(path: str | Path | None = None) -> dict:
    """Read and check the data registry.

    Used by every study (through :func:`prepare`) and by the book's data page.

    Args:
        path: a manifest file; default ``$REPROLIB_MANIFEST`` if set, else the repository's
            ``data_manifest.yaml``.

    Returns:
        ``{name: entry}``; every entry is a dict with at least ``kind``, ``title`` and ``layout``
        (a list of ``{'path': …}`` / ``{'glob': …, 'min_count': n}`` items).

    Raises:
        ManifestError: unreadable YAML or an entry missing a required field.
    """
    path = Path(path or os.environ.get("REPROLIB_MANIFEST") or MANIFEST_PATH)
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ManifestError(f"{path}: cannot read the data manifest ({e})") from None
    if not isinstance(manifest, dict) or not manifest:
        raise ManifestError(f"{path}: expected a mapping of entry names to fields")
    for name, e in manifest.items():
        where = f"{path}: entry {name!r}"
        if not isinstance(e, dict):
            raise ManifestError(f"{where}: expected a mapping of fields")
        if e.get("kind") not in KINDS:
            raise ManifestError(f"{where}: kind must be one of {KINDS}, got {e.get('kind')!r}")
        if not e.get("title"):
            raise ManifestError(f"{where}: missing title")
        if e["kind"] == "synthetic":
            if ":" not in str(e.get("generator", "")):
                raise ManifestError(f"{where}: a synthetic entry needs generator: 'module:function'")
            if not isinstance(e.get("params", {}), dict):
                raise ManifestError(f"{where}: params must be a mapping")
        layout = e.get("layout", [])
        if not isinstance(layout, list) or (e["kind"] != "synthetic" and not layout):
            raise ManifestError(f"{where}: layout must be a non-empty list")
        for item in layout:
            if not isinstance(item, dict) or ("path" in item) == ("glob" in item):
                raise ManifestError(f"{where}: each layout item needs exactly one of path / glob, got {item!r}")
            if "url" in item and "path" not in item:
                raise ManifestError(f"{where}: a downloadable layout item needs a path, got {item!r}")
    return manifest


def cache_dir() -> Path:
    """The folder where prepared data sets and downloads live by default.

    ``$REPROLIB_DATA`` if set, else ``~/.cache/reprolib``. Used by every study.
    """
    env = os.environ.get("REPROLIB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reprolib"


def entry(name: str) -> dict:
    """One manifest entry by name (a copy, with its ``name`` added).

    Used by every study.

    Raises:
        UnknownEntryError: the name is not in the manifest; the message lists the known names.
    """
    manifest = load_manifest()
    if name not in manifest:
        import difflib

        close = difflib.get_close_matches(name, manifest, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownEntryError(f"unknown data set {name!r}.{hint} Known names: {', '.join(manifest)}")
    return {"name": name, **manifest[name]}


def _offline() -> bool:
    return os.environ.get("REPROLIB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


# ------------------------------------------------------------------------------------------------
# Hashing
# ------------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _walk(root: Path) -> list[Path]:
    """Every regular file under ``root`` except hidden ones (the stamp, ``.DS_Store``…), sorted."""
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _hash_tree(root: Path) -> dict[str, dict]:
    return {p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in _walk(root)}


def _digest(lines) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _files_fingerprint(files: dict[str, dict]) -> str:
    return _digest(f"{name}\0{info['sha256']}" for name, info in sorted(files.items()))


def _code_fingerprint(generator: str) -> str:
    """sha256 of the source file of the generator's module, found without importing it."""
    module = generator.split(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ImportError(f"generator module {module!r} (of {generator!r}) cannot be found")
    return _sha256(Path(spec.origin))


def fingerprint(path: str | Path) -> str:
    """A short, stable hash of a data set folder (or a single file) for run records.

    Used by every study's run record.

    From the stamp of a generated data set when there is one (a hash of every file's sha256),
    else from the relative file names and sizes (cheap, so that a 25 GB data set is not read).
    Hidden files are ignored.

    Returns:
        16 hexadecimal digits.
    """
    path = Path(path)
    if path.is_file():
        return _digest([f"{path.name}\0{path.stat().st_size}"])
    if not path.is_dir():
        raise DataMissingError(f"{path}: no such data set folder")
    stamp = _read_stamp(path)
    if stamp and stamp.get("fingerprint"):
        return stamp["fingerprint"]
    return _digest(f"{p.relative_to(path).as_posix()}\0{p.stat().st_size}" for p in _walk(path))


# ------------------------------------------------------------------------------------------------
# Layout checks
# ------------------------------------------------------------------------------------------------

def _item_problem(root: Path, item: dict, hashes: bool) -> str | None:
    """What is wrong with one layout item under ``root`` (``None`` when it is fine)."""
    if "glob" in item:
        n = sum(1 for p in root.glob(item["glob"]) if p.is_file())
        want = int(item.get("min_count", 1))
        return None if n >= want else f"{item['glob']}: {n} files, expected at least {want}"
    p = root / item["path"]
    if not p.is_file():
        return f"{item['path']}: missing"
    size = p.stat().st_size
    if item.get("size_bytes") is not None and size != item["size_bytes"]:
        return f"{item['path']}: {size} bytes, expected {item['size_bytes']}"
    if hashes and (item.get("sha256") or item.get("sha256_prefix")):
        got = _sha256(p)
        want = item.get("sha256") or item["sha256_prefix"]
        if not got.startswith(want):
            return f"{item['path']}: sha256 {got[:16]}… does not match the expected {want[:16]}…"
    return None


def _layout_lines(e: dict, root: Path) -> str:
    lines = []
    for item in e.get("layout", []):
        what = f"  ({item['what']})" if item.get("what") else ""
        if "glob" in item:
            lines.append(f"  {root / item['glob']}   at least {item.get('min_count', 1)} files{what}")
        else:
            src = f"   from {item['url']}" if item.get("url") else ""
            lines.append(f"  {root / item['path']}{what}{src}")
    return "\n".join(lines)


def _missing_message(e: dict, root: Path, problems: list[str], downloads_off: bool = False) -> str:
    head = f"{e['title']} ({e['name']}) is not complete at {root}:\n" + "\n".join(f"  - {p}" for p in problems)
    if downloads_off:
        head += ("\nDownloads are disabled (download=False or REPROLIB_OFFLINE=1); download these "
                 "files yourself, or allow downloads and run prepare again.")
    how = str(e.get("how_to_get", "")).strip().replace("DATA_ROOT", str(root))
    return (f"{head}\n\nHow to get it (size: {e.get('size', 'unknown')}):\n{how}\n\n"
            f"The folder must contain:\n{_layout_lines(e, root)}")


def _default_root(e: dict, params: dict | None = None) -> Path:
    name = e["name"]
    if params and {**e.get("params", {}), **params} != e.get("params", {}):
        # a set generated with other parameters gets its own folder so that profiles don't
        # keep regenerating over each other
        name += "-" + _digest([json.dumps(params, sort_keys=True, default=str)])[:8]
    return cache_dir() / name


# ------------------------------------------------------------------------------------------------
# prepare / verify
# ------------------------------------------------------------------------------------------------

def prepare(name: str, root: str | Path | None = None, *, download: bool = True,
            params: dict | None = None) -> Path:
    """Make a manifest entry usable and return its folder.

    Used by every study notebook (``prepare('sid-sony-mini')``, ``prepare('raw-nod', data_root)``,
    ``prepare('lle-official-weights')``, …).

    * synthetic: generated once into ``root`` (default ``cache_dir()/name``). Generation writes
      into a temporary sibling folder that is renamed when complete, so an interrupted run never
      leaves a half set that looks complete. Later calls only check the stamp (generator,
      parameters, hash of the generator's source, every file present with its size); a changed
      generator or parameters regenerates.
    * real / weights: checks the layout at ``root`` (default ``cache_dir()/name``): file counts,
      and sha256 where known. Missing downloadable files (lists, annotations, weights) are fetched
      with pooch and checked, unless downloads are disabled.

    Args:
        name: manifest entry name.
        root: the data set folder (for real data sets: where the user put it).
        download: allow downloads of the entry's small files; ``REPROLIB_OFFLINE=1`` also
            disables them.
        params: synthetic only: parameters overriding the manifest's (e.g. a smaller set for
            a smoke run); the default folder then gets a suffix derived from them.

    Returns:
        The folder. For single-file entries (weights) the file is ``folder / layout[0]['path']``.

    Raises:
        UnknownEntryError: unknown name.
        DataMissingError: a real data set (or a file that may not be downloaded) is missing or
            does not match its checksum; the message says what to get, from where, where to put it.
    """
    e = entry(name)
    if e["kind"] == "synthetic":
        return _prepare_synthetic(e, Path(root) if root else _default_root(e, params), params)
    if params:
        raise ValueError(f"{name} is not a synthetic data set: params are not accepted")
    root = Path(root).expanduser() if root else _default_root(e)
    problems, fetch = [], []
    for item in e["layout"]:
        problem = _item_problem(root, item, hashes=True)
        if problem is None:
            continue
        (fetch if item.get("url") else problems).append((item, problem))
    if problems:
        raise DataMissingError(_missing_message(e, root, [p for _, p in problems + fetch]))
    if fetch:
        if not download or _offline():
            raise DataMissingError(_missing_message(e, root, [p for _, p in fetch], downloads_off=True))
        for item, _ in fetch:
            _fetch(item, root)
    return root


def _fetch(item: dict, root: Path) -> Path:
    """Download one layout item with pooch (checked by sha256, or by prefix after the fact)."""
    import pooch

    target = root / item["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()  # a copy with the wrong size or hash
    known = f"sha256:{item['sha256']}" if item.get("sha256") else None
    try:
        pooch.retrieve(item["url"], known_hash=known, fname=target.name, path=target.parent,
                       progressbar=True)
    except ValueError as err:  # pooch: the downloaded file does not have the known hash
        raise DataVerificationError(f"downloaded {item['url']} but its checksum is wrong: {err}") from None
    except Exception as err:  # no network, HTTP error, …
        raise DataMissingError(f"could not download {item['url']} into {target.parent} "
                               f"({type(err).__name__}: {err})") from None
    problem = _item_problem(root, item, hashes=True)
    if problem:
        target.unlink(missing_ok=True)
        raise DataVerificationError(f"downloaded {item['url']} but {problem}")
    return target


def _read_stamp(root: Path) -> dict | None:
    try:
        return json.loads((root / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _stamp_matches(root: Path, wanted: dict) -> bool:
    """Cheap check of a generated set: same generator, params and code, every file with its size."""
    stamp = _read_stamp(root)
    if not stamp or any(_canonical(stamp.get(k)) != _canonical(v) for k, v in wanted.items()):
        return False
    for rel, info in stamp.get("files", {}).items():
        p = root / rel
        if not p.is_file() or p.stat().st_size != info["size"]:
            return False
    return bool(stamp.get("files"))


def _remove_leftovers(root: Path) -> None:
    """Delete partial / old folders of earlier interrupted runs whose process is gone."""
    for p in root.parent.glob(f".{root.name}.*-*"):
        kind_pid = p.name[len(root.name) + 2:]  # 'partial-<pid>-<token>' or 'old-<pid>-<token>'
        kind, _, rest = kind_pid.partition("-")
        if kind not in ("partial", "old"):
            continue
        try:
            os.kill(int(rest.split("-")[0]), 0)
            continue  # still running (maybe another notebook generating the same set)
        except (ProcessLookupError, ValueError):
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            continue


def _wanted(e: dict, overrides: dict | None = None) -> dict:
    """What the stamp of a generated set must say: generator, parameters, hash of its code."""
    params = {"seed": 0, **e.get("params", {}), **(overrides or {})}
    return {"generator": e["generator"], "params": params, "code": _code_fingerprint(e["generator"])}


def _prepare_synthetic(e: dict, root: Path, overrides: dict | None) -> Path:
    wanted = _wanted(e, overrides)
    params = wanted["params"]
    root = root.expanduser()
    if _stamp_matches(root, wanted):
        return root
    if root.exists() and not (root / STAMP_NAME).exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists, is not empty and was not generated by prepare(): "
                              f"not overwriting it. Remove it or choose another root for {e['name']}.")
    module_name, func_name = e["generator"].split(":")
    generate = getattr(importlib.import_module(module_name), func_name)
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        t0 = time.perf_counter()
        generate(tmp, **params)
        files = _hash_tree(tmp)
        if not files:
            raise RuntimeError(f"{e['generator']} wrote no files")
        problems = [p for item in e.get("layout", []) if (p := _item_problem(tmp, item, hashes=False))]
        if problems:
            raise RuntimeError(f"{e['generator']} wrote a data set that does not have the layout of "
                               f"{e['name']}: " + "; ".join(problems))
        stamp = {"name": e["name"], **wanted, "fingerprint": _files_fingerprint(files),
                 "seconds": round(time.perf_counter() - t0, 2), "files": files}
        (tmp / STAMP_NAME).write_text(json.dumps(stamp, indent=1, default=str), encoding="utf-8")
        old = None
        if root.exists():
            old = root.parent / f".{root.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            root.rename(old)
        try:
            tmp.rename(root)
        except OSError:
            if _stamp_matches(root, wanted):  # another process finished the same set first
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            if old is not None and not root.exists():
                old.rename(root)  # put the previous complete set back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def verify(name: str, root: str | Path | None = None) -> dict:
    """Full check of a prepared entry: every known sha256 is recomputed.

    Used by ``python -m reprolib data verify`` and by the full-profile runs before training.

    Returns:
        A report: ``name``, ``root``, ``kind``, ``files`` (number of files counted),
        ``sha256_checked`` (files whose hash was recomputed and matched), ``bytes`` (their total
        size), ``counts`` (files per layout pattern) and ``fingerprint``.

    Raises:
        DataMissingError: the data set is missing or incomplete (the message says how to get it).
        DataVerificationError: a file's hash or size does not match.
    """
    e = entry(name)
    if e["kind"] == "synthetic":
        root = Path(root).expanduser() if root else _default_root(e)
        stamp = _read_stamp(root)
        if stamp is None:
            raise DataMissingError(f"{root}: no generated {name} here (no {STAMP_NAME}); "
                                   f"run: python -m reprolib data prepare {name}")
        problems, total = [], 0
        for rel, info in stamp["files"].items():
            p = root / rel
            if not p.is_file():
                problems.append(f"{rel}: missing")
            elif p.stat().st_size != info["size"]:
                problems.append(f"{rel}: {p.stat().st_size} bytes, expected {info['size']}")
            elif _sha256(p) != info["sha256"]:
                problems.append(f"{rel}: sha256 does not match the stamp")
            else:
                total += info["size"]
        extra = sorted(set(p.relative_to(root).as_posix() for p in _walk(root)) - set(stamp["files"]))
        problems += [f"{rel}: not in the stamp (added after generation)" for rel in extra]
        if problems:
            raise DataVerificationError(f"{name} at {root}: {len(problems)} problem(s):\n"
                                        + "\n".join(f"  - {p}" for p in problems)
                                        + f"\nRegenerate it: delete {root} and run prepare again.")
        counts = {item.get("glob", item.get("path")): _count(root, item) for item in e.get("layout", [])}
        return {"name": name, "root": str(root), "kind": e["kind"], "files": len(stamp["files"]),
                "sha256_checked": len(stamp["files"]), "bytes": total, "counts": counts,
                "fingerprint": stamp.get("fingerprint") or _files_fingerprint(stamp["files"])}

    root = Path(root).expanduser() if root else _default_root(e)
    missing, bad, checked, total = [], [], 0, 0
    for item in e["layout"]:
        if "glob" in item or not (root / item["path"]).is_file():
            problem = _item_problem(root, item, hashes=False)
            if problem:
                missing.append(problem)
            continue
        problem = _item_problem(root, item, hashes=True)
        if problem:
            bad.append(problem)
        elif item.get("sha256") or item.get("sha256_prefix"):
            checked += 1
            total += (root / item["path"]).stat().st_size
    if missing:
        raise DataMissingError(_missing_message(e, root, missing))
    if bad:
        raise DataVerificationError(f"{name} at {root}: checksum mismatch:\n" + "\n".join(f"  - {p}" for p in bad)
                                    + f"\nDelete the file(s) and run: python -m reprolib data prepare {name} --root {root}")
    counts = {item.get("glob", item.get("path")): _count(root, item) for item in e["layout"]}
    return {"name": name, "root": str(root), "kind": e["kind"], "files": sum(counts.values()),
            "sha256_checked": checked, "bytes": total, "counts": counts, "fingerprint": fingerprint(root)}


def _count(root: Path, item: dict) -> int:
    if "glob" in item:
        return sum(1 for p in root.glob(item["glob"]) if p.is_file())
    return int((root / item["path"]).is_file())


def _present(e: dict) -> bool:
    """Cheap presence check in the default location (no hashing, no import of generators)."""
    root = _default_root(e)
    if not root.is_dir():
        return False
    if e["kind"] == "synthetic":
        try:
            return _stamp_matches(root, _wanted(e))
        except ImportError:
            return False
    return all(_item_problem(root, item, hashes=False) is None for item in e["layout"])


def _short_sha(e: dict) -> str:
    if e["kind"] == "synthetic":
        return "stamp"
    known = [item.get("sha256") or item.get("sha256_prefix") for item in e["layout"] if "path" in item]
    known = [h for h in known if h]
    if not known:
        return "unknown"
    if len(known) == 1:
        return known[0][:12] + ("" if len(known[0]) == 64 else " (prefix)")
    return f"{len(known)} files"


def manifest_table():
    """The manifest as a table for the book's data page (and ``python -m reprolib data list``).

    Used by the book (data provenance page).

    Returns:
        ``pandas.DataFrame`` with one row per entry and the columns ``name``, ``kind``, ``what``,
        ``studies``, ``licence``, ``citation``, ``size``, ``how to get``, ``sha256`` (short, or the
        number of checksummed files) and ``present`` (``'yes'``/``'no'`` in the default location,
        checked cheaply: file counts and sizes, no hashing).
    """
    import pandas as pd

    rows = []
    for name, e in load_manifest().items():
        e = {"name": name, **e}
        rows.append({
            "name": name, "kind": e["kind"], "what": f"{e['title']}: {str(e.get('description', '')).strip()}",
            "studies": ", ".join(e.get("studies", [])), "licence": str(e.get("licence", "unknown")).strip(),
            "citation": e.get("citation", ""), "size": e.get("size", "unknown"),
            "how to get": str(e.get("how_to_get", "")).strip(), "sha256": _short_sha(e),
            "present": "yes" if _present(e) else "no",
        })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# SID lists
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SIDPair:
    """One row of a SID list file: a short exposure and its long-exposure ground truth.

    Attributes:
        short, long: paths as written in the list (relative to the data root, e.g.
            ``'./Sony/short/00001_00_0.1s.ARW'``).
        scene: scene id (e.g. ``10034``); its first digit is the split.
        burst: position of the short exposure in its burst (``0`` for ``_00``).
        short_exposure, long_exposure: seconds, parsed from the file names.
        ratio: ``long_exposure / short_exposure`` (SID amplifies by ``min(ratio, 300)``).
        iso: camera ISO. aperture: f-number as written (e.g. ``'F8'``).
        split: ``'train'``, ``'test'`` or ``'val'`` (scene id's first digit 0, 1, 2).
        short_path, long_path: resolved against the data root by :func:`sid_pairs`, else ``None``.
    """

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
    """Parse a SID list file (``Sony_train_list.txt`` …) into :class:`SIDPair` rows, in file order.

    Used by the SID and Lamba & Mitra studies.

    A row is ``<short path> <long path> ISO<n> F<f>``; exposures come from the file names.

    Raises:
        SIDListError: a malformed row, with file name and line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataMissingError(f"{path}: cannot read the SID list ({e.strerror})") from None
    pairs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        fields = line.split()
        if len(fields) != 4:
            raise SIDListError(f"{where}: expected 4 fields '<short> <long> ISO<n> F<f>', got {len(fields)}: {line!r}")
        short, long_, iso, aperture = fields
        parsed = []
        for rel in (short, long_):
            m = _SID_NAME.match(Path(rel).name)
            if m is None:
                raise SIDListError(f"{where}: file name {Path(rel).name!r} is not <scene>_<burst>_<exposure>s.<ext>")
            parsed.append(m)
        (s_scene, s_burst, s_exp), (l_scene, _, l_exp) = (m.groups() for m in parsed)
        if s_scene != l_scene:
            raise SIDListError(f"{where}: short exposure of scene {s_scene} paired with long exposure of scene {l_scene}")
        if not (iso.startswith("ISO") and iso[3:].isdigit()):
            raise SIDListError(f"{where}: ISO field {iso!r} is not ISO<number>")
        if not re.fullmatch(r"F\d+(\.\d+)?", aperture):
            raise SIDListError(f"{where}: aperture field {aperture!r} is not F<number>")
        if s_scene[0] not in _SID_SPLITS:
            raise SIDListError(f"{where}: scene id {s_scene} does not start with 0, 1 or 2 (train, test, val)")
        short_exposure, long_exposure = float(s_exp), float(l_exp)
        if short_exposure <= 0 or long_exposure <= 0:
            raise SIDListError(f"{where}: exposure times must be positive")
        pairs.append(SIDPair(short=short, long=long_, scene=int(s_scene), burst=int(s_burst),
                             short_exposure=short_exposure, long_exposure=long_exposure,
                             ratio=long_exposure / short_exposure, iso=int(iso[3:]), aperture=aperture,
                             split=_SID_SPLITS[s_scene[0]]))
    return pairs


def sid_pairs(list_path: str | Path, root: str | Path, burst00_only: bool = True,
              exclude_misaligned: bool = True) -> list[SIDPair]:
    """The pairs of a SID list with their files resolved against the data root.

    Used by the SID and Lamba & Mitra studies.

    The official scripts only use the burst ``_00`` short exposures (280 training and 93 test
    pairs on Sony); the README asks to drop the misaligned test scenes
    :data:`SID_MISALIGNED_SCENES` for quantitative results (88 test pairs left).

    Args:
        list_path: the list file; a relative path that does not exist is looked up in ``root``.
        root: the data root the list's ``./Sony/...`` paths are relative to.
        burst00_only: keep only burst ``_00`` short exposures, as the official code does.
        exclude_misaligned: drop scenes 10034, 10045, 10172.

    Returns:
        :class:`SIDPair` rows with ``short_path`` / ``long_path`` set. File names are used
        exactly as the list writes them (real lists say ``.ARW``, a synthetic set ``.dng``).

    Raises:
        DataMissingError: a listed file is missing (the message names it).
    """
    root = Path(root)
    list_path = Path(list_path)
    if not list_path.is_absolute() and not list_path.exists() and (root / list_path).exists():
        list_path = root / list_path
    pairs = read_sid_list(list_path)
    if burst00_only:
        pairs = [p for p in pairs if p.burst == 0]
    if exclude_misaligned:
        pairs = [p for p in pairs if p.scene not in SID_MISALIGNED_SCENES]
    out, missing = [], []
    for p in pairs:
        short_path, long_path = root / p.short, root / p.long
        missing += [q for q in (short_path, long_path) if not q.is_file()]
        out.append(dataclasses.replace(p, short_path=short_path, long_path=long_path))
    if missing:
        first = missing[0]
        others = sorted(q.name for q in first.parent.glob(first.stem + ".*")) if first.parent.is_dir() else []
        hint = (f" (found {', '.join(others)} instead: the list and the data set disagree on the file "
                f"extension)") if others else ""
        raise DataMissingError(f"{len(set(missing))} file(s) listed in {list_path} are missing under {root}; "
                               f"first: {first}{hint}")
    return out


# ------------------------------------------------------------------------------------------------
# RAW-NOD annotations
# ------------------------------------------------------------------------------------------------

# COCO keys that are not per-box flags
_COCO_BOX_KEYS = {"id", "image_id", "category_id", "bbox", "area", "segmentation"}


@dataclass
class RawNODImage:
    """One annotated image of RAW-NOD.

    Attributes:
        index: stable integer id: the position of the image in the JSON ``images`` list (RAW-NOD's
            own ids are strings in most files and integers in others).
        id: the image id as the JSON gives it (``'DSC01881'`` or ``125``).
        file_name, width, height: as in the JSON (pixels of the full image).
        boxes: ``float32`` ``N×4`` ``[x1, y1, x2, y2]`` pixels of the full image.
        labels: ``int64`` ``(N,)`` COCO category ids (1 person, 2 bicycle, 3 car).
        flags: extra per-box fields, each an array of length ``N`` (``iscrowd``, and in the
            Sony test file ``isnoisy``, ``isoutoffocus``, … ``islabeled``).
    """

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
    """A RAW-NOD annotation file.

    Attributes:
        path: the JSON file.
        images: :class:`RawNODImage` in the file's order (``images[i].index == i``).
        categories: the ``categories`` list as given (3 entries, or all 80 COCO ones in the
            Nikon test file).
        classes: ``{category id: name}`` of the categories the boxes use (``{1: 'person',
            2: 'bicycle', 3: 'car'}`` on the real files).
        dropped: boxes dropped because their width or height is not positive.
        info: the JSON's ``info`` block.
    """

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
    """Read a RAW-NOD (COCO-style) annotation file.

    Used by the GenISP study.

    COCO ``bbox`` ``[x, y, w, h]`` becomes ``[x1, y1, x2, y2]``. Boxes with zero (or negative)
    width or height — the Nikon test file has one of height 0 in DSC_0674 — are dropped and
    counted in ``dropped``.

    Raises:
        DataMissingError: no such file.
        RawNODFormatError: not RAW-NOD's schema (missing keys, a box of an unknown image, …).
    """
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
    out = []
    for i, im in enumerate(images):
        anns = im["anns"]
        boxes = np.array([ann[:4] for ann in anns], dtype=np.float32).reshape(-1, 4)
        labels = np.array([ann[4] for ann in anns], dtype=np.int64)
        flags = {k: np.array([ann[5].get(k, False) for ann in anns]) for k in sorted(flag_keys)}
        out.append(RawNODImage(index=i, id=im["id"], file_name=im["file_name"], width=im["width"],
                               height=im["height"], boxes=boxes, labels=labels, flags=flags))
    return RawNODAnnotations(path=path, images=out, categories=doc["categories"],
                             classes={c: category_names[c] for c in used}, dropped=dropped,
                             info=doc.get("info", {}))


def raw_nod_paths(root: str | Path, camera: str, split: str) -> tuple[Path, Path]:
    """The images folder and the raw annotation file of one RAW-NOD camera and split.

    Used by the GenISP study.

    Args:
        root: the RAW-NOD data root (real or synthetic).
        camera: ``'Sony'`` or ``'Nikon'``.
        split: ``'train'``, ``'val'`` or ``'test'``.

    Returns:
        ``(root/camera, root/annotations/camera/raw_…_split.json)``. The one ``raw_*_<split>.json``
        file is used, whatever its middle part (the Sony test file is
        ``raw_str_labeled_new_Sony_RX100m7_test.json``, the others ``raw_new_…``).
    """
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


class RawNODDetection(torch.utils.data.Dataset):
    """RAW-NOD images with their boxes, streamed from disk one raw file at a time.

    Used by the GenISP study.

    Holds only the annotation arrays and the images folder: each ``__getitem__`` reads one raw
    file with :func:`reprolib.raw.read`, so memory does not grow with the number of images.

    Args:
        images_dir: folder of the raw files (``root/Sony``, ``root/Nikon``).
        json_path: the annotation file of the split.
        transform: optional ``transform(frame, target) -> (image, target)`` (it gets the target so
            that a resize can scale the boxes).

    Item:
        ``(frame, target)``: a :class:`reprolib.raw.RawFrame` (mosaic ``float32`` ``H×W`` in
        ``[0, 1]``), or whatever ``transform`` returns; ``target`` has ``boxes`` (``float32``
        tensor ``N×4`` ``[x1, y1, x2, y2]`` in pixels of the annotated image size), ``labels``
        (``int64`` ``(N,)``), ``image_id`` (int, the stable index), ``image_size``
        (``(height, width)`` of the annotation) and ``file_name``.
    """

    def __init__(self, images_dir: str | Path, json_path: str | Path, transform=None):
        self.images_dir = Path(images_dir)
        self.annotations = read_raw_nod(json_path)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.annotations.images)

    def missing_files(self) -> list[Path]:
        """Raw files the annotations list but the images folder lacks."""
        return [self.images_dir / im.file_name for im in self.annotations.images
                if not (self.images_dir / im.file_name).is_file()]

    def __getitem__(self, index: int):
        image = self.annotations.images[index]
        path = self.images_dir / image.file_name
        if not path.is_file():
            raise DataMissingError(f"{path}: image {image.id!r} of {self.annotations.path.name} is missing "
                                   f"from {self.images_dir}")
        frame = raw.read(path)
        target = {"boxes": torch.from_numpy(image.boxes.copy()), "labels": torch.from_numpy(image.labels.copy()),
                  "image_id": image.index, "image_size": (image.height, image.width),
                  "file_name": image.file_name}
        if self.transform is not None:
            return self.transform(frame, target)
        return frame, target


# ------------------------------------------------------------------------------------------------
# Zurich RAW-to-RGB (PyNET): the official loader's conventions (aiff22/PyNET-PyTorch load_data.py)
# ------------------------------------------------------------------------------------------------

#: the real data set's folders, relative to the data root (``<split>/<folder>/<i>.<ext>``)
ZURICH_LAYOUT = {"raw": "huawei_raw", "target": "canon", "splits": ("train", "test")}

#: the official input scaling: the 10-bit mosaic divided by 4·255 (``extract_bayer_channels``)
RAW_SCALE = 4 * 255

#: the official packing order, ``(row, column)`` offsets inside the 2×2 tile: channel 0 takes
#: ``raw[1::2, 1::2]``, then ``[0::2, 1::2]``, ``[0::2, 0::2]``, ``[1::2, 0::2]``. The official
#: variable names read B, Gb, R, Gr: with the R G / G B tile of the P20 that is blue, the green
#: on the red row, red, and the green on the blue row.
PACKING_SLICES = ((1, 1), (0, 1), (0, 0), (1, 0))


def read_zurich_raw(path: str | Path) -> np.ndarray:
    """A Zurich raw patch: ``uint16`` ``H×W`` Bayer mosaic in raw digital numbers (black level
    included), read from its 16-bit grey PNG.

    Raises:
        ValueError: the PNG is not a single-channel image with even sides.
    """
    from PIL import Image

    with Image.open(path) as im:
        mosaic = np.asarray(im)
    if mosaic.ndim != 2 or mosaic.shape[0] % 2 or mosaic.shape[1] % 2:
        raise ValueError(f"{path}: expected a single-channel Bayer mosaic with even sides, "
                         f"got shape {mosaic.shape}")
    return mosaic.astype(np.uint16, copy=False)


def pack_zurich(mosaic):
    """Pack a Zurich mosaic as the official code does: the four slice positions of
    :data:`PACKING_SLICES`, divided by :data:`RAW_SCALE` (1020).

    Args:
        mosaic: ``H×W`` (or ``…×H×W``) raw digital numbers, numpy or torch, H and W even.

    Returns:
        ``float32`` ``4×H/2×W/2`` (``…×4×H/2×W/2``): no black subtraction, no clipping, so a
        10-bit white (1023) is 1.003.

    >>> pack_zurich(np.arange(16, dtype=np.uint16).reshape(4, 4))[:, 0, 0] * 1020
    array([5., 1., 0., 4.], dtype=float32)
    """
    h, w = mosaic.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"mosaic must have even sides to pack, got {h}×{w}")
    planes = [mosaic[..., dy::2, dx::2] for dy, dx in PACKING_SLICES]
    if isinstance(mosaic, np.ndarray):
        return np.stack(planes, axis=-3).astype(np.float32) / np.float32(RAW_SCALE)
    return torch.stack(planes, dim=-3).to(torch.float32) / RAW_SCALE


def read_zurich_target(path: str | Path, level: int = 0) -> np.ndarray:
    """A Zurich target photo for PyNET level ``level``.

    As the official loader: the 8-bit JPEG resized by ``1/2^level`` with PIL's bilinear filter
    (what ``scipy.misc.imresize(img, scale)`` did, rounding back to 8 bits), divided by 255.

    Returns:
        ``float32`` ``3×H/2^level×W/2^level`` in ``[0, 1]``.
    """
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if level:
            im = im.resize((im.width // 2 ** level, im.height // 2 ** level), Image.BILINEAR)
        rgb = np.asarray(im)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)


class ZurichRawToRGB(torch.utils.data.Dataset):
    """Zurich RAW-to-RGB pairs read from disk on demand.

    Works on the real data set and on the synthetic ``zurich-mini`` (same layout). Item ``i`` is
    ``(raw, target)``: ``raw`` ``float32`` 4×h×w (:func:`pack_zurich` of
    ``<split>/huawei_raw/<i>.png``) and ``target`` ``float32`` 3×(2h/2^level)×(2w/2^level) in
    ``[0, 1]`` (:func:`read_zurich_target` of ``<split>/canon/<i>.jpg``) — the size of PyNET's
    output at ``level``.

    Args:
        root: the data root (holds ``train/`` and ``test/``).
        split: ``'train'`` or ``'test'``.
        level: the PyNET level whose output size the targets take (:meth:`set_level` changes it).

    Raises:
        DataMissingError: the split's folders are missing, empty, or the file names are not
            ``0 … N−1`` in both folders.
    """

    def __init__(self, root: str | Path, split: str, level: int = 0):
        if split not in ZURICH_LAYOUT["splits"]:
            raise ValueError(f"split must be one of {ZURICH_LAYOUT['splits']}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.raw_dir = self.root / split / ZURICH_LAYOUT["raw"]
        self.target_dir = self.root / split / ZURICH_LAYOUT["target"]
        raws = {p.stem for p in self.raw_dir.glob("*.png")}
        targets = {p.stem for p in self.target_dir.glob("*.jpg")}
        n = len(raws)
        expected = {str(i) for i in range(n)}
        if not n or raws != expected or targets != expected:
            raise DataMissingError(
                f"{self.root / split}: expected {ZURICH_LAYOUT['raw']}/<i>.png and "
                f"{ZURICH_LAYOUT['target']}/<i>.jpg for i = 0 … N−1 (the Zurich RAW-to-RGB layout); "
                f"found {len(raws)} PNG and {len(targets)} JPEG files")
        self.n = n
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
        """The target of item ``i`` at ``level`` (default: the data set's level), 3×H×W float32."""
        return torch.from_numpy(read_zurich_target(self.target_dir / f"{i}.jpg",
                                                   self.level if level is None else level))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} pairs")
        return self.raw(i), self.target(i)

    def batch(self, indices: Sequence[int], threads: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``indices`` stacked: ``(B×4×h×w, B×3×H×W)``. PNG / JPEG decoding runs in a few
        threads (PIL releases the GIL while decoding)."""
        if threads > 1 and len(indices) > 1:
            with ThreadPoolExecutor(min(threads, len(indices))) as pool:
                items = list(pool.map(self.__getitem__, indices))
        else:
            items = [self[i] for i in indices]
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])
