"""The data registry (``data_manifest.yaml``): getting data sets and weights, checking them, and
their fingerprints. See :mod:`reprolib.data`."""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import os
import secrets
import shutil
import time
from pathlib import Path

import pandas as pd
import pooch
import yaml
from tqdm.auto import tqdm

__all__ = ["DataMissingError", "DataVerificationError", "UnknownEntryError", "ManifestError", "MANIFEST_PATH",
           "STAMP_NAME", "load_manifest", "cache_dir", "entry", "prepare", "verify", "identity_files", "fingerprint",
           "manifest_table", "dataset_for_profile"]

#: the registry shipped with the repository
MANIFEST_PATH = Path(__file__).resolve().parents[2] / "data_manifest.yaml"
#: file written into every generated (synthetic) data set
STAMP_NAME = ".reprolib-stamp.json"
KINDS = ("real", "synthetic", "weights")


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


def load_manifest(path: str | Path | None = None) -> dict:
    """Read and check the data registry at ``path`` (default ``$REPROLIB_MANIFEST``, else
    :data:`MANIFEST_PATH`): ``{name: entry}``, each entry a dict with at least ``kind``, ``title``
    and ``layout`` (``{'path': …}`` / ``{'glob': …, 'min_count': n}`` items). Raises
    :class:`ManifestError` on unreadable YAML or a malformed entry."""
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
        if e["kind"] == "synthetic" and ":" not in str(e.get("generator", "")):
            raise ManifestError(f"{where}: a synthetic entry needs generator: 'module:function'")
        if e["kind"] == "synthetic" and not isinstance(e.get("params", {}), dict):
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
    """The folder of prepared data sets and downloads: ``$REPROLIB_DATA``, else ``~/.cache/reprolib``."""
    return Path(os.environ.get("REPROLIB_DATA") or Path.home() / ".cache" / "reprolib").expanduser()


def entry(name: str) -> dict:
    """One manifest entry by name (a copy, with its ``name`` added); an unknown name raises
    :class:`UnknownEntryError` listing the known names."""
    manifest = load_manifest()
    if name not in manifest:
        close = difflib.get_close_matches(name, manifest, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownEntryError(f"unknown data set {name!r}.{hint} Known names: {', '.join(manifest)}")
    return {"name": name, **manifest[name]}


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _walk(root: Path) -> list[Path]:
    """Every regular file under ``root`` except hidden ones (the stamp, ``.DS_Store``…), sorted."""
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _digest(lines) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _files_fingerprint(files: dict[str, dict]) -> str:
    return _digest(f"{name}\0{info['sha256']}" for name, info in sorted(files.items()))


def identity_files(root: str | Path) -> list[Path]:
    """The files that make the data set folder ``root`` what it is: the files its reader reads
    (``identity_files`` of :mod:`~reprolib.data.sid`, :mod:`~reprolib.data.raw_nod`,
    :mod:`~reprolib.data.zurich`, the first whose layout is there), else every non-hidden file."""
    from . import raw_nod, sid, zurich  # the readers import this module
    root = Path(root)
    for reader in (sid, raw_nod, zurich):
        if (files := reader.identity_files(root)) is not None:
            return files
    return _walk(root)


_SHA256_SEEN: dict = {}  # (path, size, mtime) -> sha256: a file is read once per process


def _content(path: Path, mode: str) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing"
    if mode == "size":
        return str(st.st_size)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA256_SEEN:
        _SHA256_SEEN[key] = _sha256(path)
    return _SHA256_SEEN[key]


def fingerprint(path: str | Path, mode: str | None = None) -> str:
    """A short, stable hash (16 hex digits) of a data set folder or a file, for the run records
    and the keys of caches and checkpoints. A generated set: its stamp's fingerprint (from every
    file's sha256). Else the relative names of :func:`identity_files` (what the study reads: files
    added or removed beside them, e.g. the downloaded archive, change nothing) with, by ``mode``,
    their sizes (``'size'``: nothing is read) or their sha256 (``'sha256'``: every byte is read,
    once per process). ``mode`` default: ``$REPROLIB_FINGERPRINT``, else ``'size'``."""
    path, mode = Path(path), mode or os.environ.get("REPROLIB_FINGERPRINT") or "size"
    if mode not in ("size", "sha256"):
        raise ValueError(f"fingerprint mode must be 'size' or 'sha256' (REPROLIB_FINGERPRINT), got {mode!r}")
    if path.is_file():
        root, files = path.parent, [path]
    elif not path.is_dir():
        raise DataMissingError(f"{path}: no such data set folder")
    elif (stamp := _read_stamp(path)) and stamp.get("fingerprint"):
        return stamp["fingerprint"]
    else:
        root, files = path, identity_files(path)
    return _digest(sorted(f"{p.relative_to(root).as_posix()}\0{_content(p, mode)}"
                          for p in tqdm(files, desc="sha256", disable=mode != "sha256", leave=False)))


def _count(root: Path, item: dict) -> int:
    if "glob" in item:
        return sum(1 for p in root.glob(item["glob"]) if p.is_file())
    return int((root / item["path"]).is_file())


def _item_problem(root: Path, item: dict, hashes: bool) -> str | None:
    """What is wrong with one layout item under ``root`` (``None`` when it is fine)."""
    if "glob" in item:
        n, want = _count(root, item), int(item.get("min_count", 1))
        return None if n >= want else f"{item['glob']}: {n} files, expected at least {want}"
    p = root / item["path"]
    if not p.is_file():
        return f"{item['path']}: missing"
    if item.get("size_bytes") is not None and p.stat().st_size != item["size_bytes"]:
        return f"{item['path']}: {p.stat().st_size} bytes, expected {item['size_bytes']}"
    if hashes and (item.get("sha256") or item.get("sha256_prefix")):
        got, want = _sha256(p), item.get("sha256") or item["sha256_prefix"]
        if not got.startswith(want):
            return f"{item['path']}: sha256 {got[:16]}… does not match the expected {want[:16]}…"
    return None


def _missing_message(e: dict, root: Path, problems: list[str], downloads_off: bool = False) -> str:
    head = f"{e['title']} ({e['name']}) is not complete at {root}:\n" + "\n".join(f"  - {p}" for p in problems)
    if downloads_off:
        head += ("\nDownloads are disabled (download=False or REPROLIB_OFFLINE=1); download these "
                 "files yourself, or allow downloads and run prepare again.")
    how = str(e.get("how_to_get", "")).strip().replace("DATA_ROOT", str(root))
    lines = []
    for item in e.get("layout", []):
        what = f"  ({item['what']})" if item.get("what") else ""
        if "glob" in item:
            lines.append(f"  {root / item['glob']}   at least {item.get('min_count', 1)} files{what}")
        else:
            lines.append(f"  {root / item['path']}{what}" + (f"   from {item['url']}" if item.get("url") else ""))
    return (f"{head}\n\nHow to get it (size: {e.get('size', 'unknown')}):\n{how}\n\n"
            "The folder must contain:\n" + "\n".join(lines))


def _default_root(e: dict, params: dict | None = None) -> Path:
    name = e["name"]
    if params and {**e.get("params", {}), **params} != e.get("params", {}):
        # other parameters, another folder: profiles don't keep regenerating over each other
        name += "-" + _digest([json.dumps(params, sort_keys=True, default=str)])[:8]
    return cache_dir() / name


def prepare(name: str, root: str | Path | None = None, *, download: bool = True,
            params: dict | None = None) -> Path:
    """Make a manifest entry usable and return its folder (a weights file is ``folder /
    layout[0]['path']``); an unknown name raises :class:`UnknownEntryError`.

    * synthetic: generated once into ``root`` (default ``cache_dir()/name``, with a suffix when
      ``params`` override the manifest's) via a temporary sibling renamed when complete; later calls
      check the stamp (generator, parameters, source hash, file sizes), a change regenerates.
    * real / weights: checks the layout at ``root`` (file counts, sha256 where known); missing
      downloadable files are fetched with pooch and checked unless ``download=False`` or
      ``REPROLIB_OFFLINE=1``; else :class:`DataMissingError` says what to get and where to put it.
    """
    e = entry(name)
    if e["kind"] == "synthetic":
        return _prepare_synthetic(e, Path(root) if root else _default_root(e, params), params)
    if params:
        raise ValueError(f"{name} is not a synthetic data set: params are not accepted")
    root = Path(root).expanduser() if root else _default_root(e)
    problems, fetch = [], []
    for item in e["layout"]:
        if (problem := _item_problem(root, item, hashes=True)) is not None:
            (fetch if item.get("url") else problems).append((item, problem))
    if problems:
        raise DataMissingError(_missing_message(e, root, [p for _, p in problems + fetch]))
    if fetch:
        if not download or os.environ.get("REPROLIB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no"):
            raise DataMissingError(_missing_message(e, root, [p for _, p in fetch], downloads_off=True))
        for item, _ in fetch:
            _fetch(item, root)
    return root


def _fetch(item: dict, root: Path) -> Path:
    """Download one layout item with pooch (checked by sha256, or by prefix after the fact)."""
    target = root / item["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)  # a copy with the wrong size or hash
    known = f"sha256:{item['sha256']}" if item.get("sha256") else None
    try:
        pooch.retrieve(item["url"], known_hash=known, fname=target.name, path=target.parent, progressbar=True)
    except ValueError as err:  # pooch: the downloaded file does not have the known hash
        raise DataVerificationError(f"downloaded {item['url']} but its checksum is wrong: {err}") from None
    except Exception as err:  # no network, HTTP error, …
        raise DataMissingError(f"could not download {item['url']} into {target.parent} "
                               f"({type(err).__name__}: {err})") from None
    if problem := _item_problem(root, item, hashes=True):
        target.unlink(missing_ok=True)
        raise DataVerificationError(f"downloaded {item['url']} but {problem}")
    return target


def _read_stamp(root: Path) -> dict | None:
    try:
        return json.loads((root / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stamp_problems(root: Path, stamp: dict, hashes: bool) -> list[str]:
    """What is wrong with a generated set's files against its stamp (size; sha256 with ``hashes``)."""
    problems = []
    for rel, info in stamp.get("files", {}).items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
        elif p.stat().st_size != info["size"]:
            problems.append(f"{rel}: {p.stat().st_size} bytes, expected {info['size']}")
        elif hashes and _sha256(p) != info["sha256"]:
            problems.append(f"{rel}: sha256 does not match the stamp")
    return problems


def _stamp_matches(root: Path, wanted: dict) -> bool:
    """Cheap check of a generated set: same generator, params and code, every file with its size."""
    stamp = _read_stamp(root)
    if not stamp or any(json.dumps(stamp.get(k), sort_keys=True, default=str)
                        != json.dumps(v, sort_keys=True, default=str) for k, v in wanted.items()):
        return False
    return bool(stamp.get("files")) and not _stamp_problems(root, stamp, hashes=False)


def _remove_leftovers(root: Path) -> None:
    """Delete partial / old folders of earlier interrupted runs whose process is gone."""
    for p in root.parent.glob(f".{root.name}.*-*"):
        kind, _, rest = p.name[len(root.name) + 2:].partition("-")  # 'partial-<pid>-<token>' / 'old-…'
        if kind not in ("partial", "old"):
            continue
        try:
            os.kill(int(rest.split("-")[0]), 0)  # no error: still running (maybe another notebook)
        except (ProcessLookupError, ValueError):
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass


def _wanted(e: dict, overrides: dict | None = None) -> dict:
    """What the stamp of a generated set must say: generator, parameters, and the sha256 of the
    generator module's source file (found without importing it)."""
    module = e["generator"].split(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ImportError(f"generator module {module!r} (of {e['generator']!r}) cannot be found")
    return {"generator": e["generator"], "params": {"seed": 0, **e.get("params", {}), **(overrides or {})},
            "code": _sha256(Path(spec.origin))}


def _prepare_synthetic(e: dict, root: Path, overrides: dict | None) -> Path:
    wanted = _wanted(e, overrides)
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
        generate(tmp, **wanted["params"])
        files = {p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
                 for p in _walk(tmp)}
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
    """Full check of a prepared entry, every known sha256 recomputed (``python -m reprolib data
    verify``): ``{name, root, kind, files (counted), sha256_checked (hashes recomputed and
    matched), bytes (their total size), counts (files per layout pattern), fingerprint}``. Raises
    :class:`DataMissingError` (incomplete; says how to get it) or :class:`DataVerificationError`."""
    e = entry(name)
    root = Path(root).expanduser() if root else _default_root(e)
    if e["kind"] == "synthetic":
        stamp = _read_stamp(root)
        if stamp is None:
            raise DataMissingError(f"{root}: no generated {name} here (no {STAMP_NAME}); "
                                   f"run: python -m reprolib data prepare {name}")
        problems = _stamp_problems(root, stamp, hashes=True)
        problems += [f"{rel}: not in the stamp (added after generation)"
                     for rel in sorted({p.relative_to(root).as_posix() for p in _walk(root)} - set(stamp["files"]))]
        if problems:
            raise DataVerificationError(f"{name} at {root}: {len(problems)} problem(s):\n"
                                        + "\n".join(f"  - {p}" for p in problems)
                                        + f"\nRegenerate it: delete {root} and run prepare again.")
        files = checked = len(stamp["files"])
        total = sum(info["size"] for info in stamp["files"].values())
        fp = stamp.get("fingerprint") or _files_fingerprint(stamp["files"])
    else:
        missing, bad, checked, total = [], [], 0, 0
        for item in e["layout"]:
            if "glob" in item or not (root / item["path"]).is_file():
                if problem := _item_problem(root, item, hashes=False):
                    missing.append(problem)
            elif problem := _item_problem(root, item, hashes=True):
                bad.append(problem)
            elif item.get("sha256") or item.get("sha256_prefix"):
                checked += 1
                total += (root / item["path"]).stat().st_size
        if missing:
            raise DataMissingError(_missing_message(e, root, missing))
        if bad:
            raise DataVerificationError(f"{name} at {root}: checksum mismatch:\n" + "\n".join(f"  - {p}" for p in bad)
                                        + f"\nDelete the file(s) and run: python -m reprolib data prepare {name} --root {root}")
        files, fp = sum(_count(root, item) for item in e["layout"]), fingerprint(root)
    counts = {item.get("glob", item.get("path")): _count(root, item) for item in e.get("layout", [])}
    return {"name": name, "root": str(root), "kind": e["kind"], "files": files, "sha256_checked": checked,
            "bytes": total, "counts": counts, "fingerprint": fp}


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
    known = [h for item in e["layout"] if "path" in item and (h := item.get("sha256") or item.get("sha256_prefix"))]
    if len(known) == 1:
        return known[0][:12] + ("" if len(known[0]) == 64 else " (prefix)")
    return f"{len(known)} files" if known else "unknown"


def manifest_table() -> pd.DataFrame:
    """The manifest as a table (the book's data page, ``python -m reprolib data list``), a row per
    entry: ``name``, ``kind``, ``what``, ``studies``, ``licence``, ``citation``, ``size``, ``how to
    get``, ``sha256`` (short, or the number of checksummed files), ``present`` (``'yes'`` / ``'no'``
    in the default location, from file counts and sizes)."""
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


def dataset_for_profile(profile: str, data_root: str, real: str, synthetic: str,
                        smoke_params: dict | None = None, check=None) -> tuple[Path, dict]:
    """A study's data set for ``profile``: ``(root, record)``, ``record`` the run record's
    ``dataset`` entry (``name``, ``fingerprint``, ``root``, ``synthetic``). ``full``: the real entry
    ``real`` at ``data_root`` (default: the data cache) through :func:`prepare`. Otherwise a given
    ``data_root`` is used as it is (any folder in the layout; ``check(root)`` may verify it), an
    empty one means the entry ``synthetic`` (generated with ``smoke_params`` at ``smoke``)."""
    if profile == "full":
        root, name = prepare(real, Path(data_root).expanduser() if data_root else None), real
    elif data_root:
        root = Path(data_root).expanduser()
        if check is not None:
            check(root)
        name = root.name
    else:
        root, name = prepare(synthetic, params=smoke_params if profile == "smoke" else None), synthetic
    return root, {"name": name, "fingerprint": fingerprint(root), "root": str(root),
                  "synthetic": (root / STAMP_NAME).is_file()}
