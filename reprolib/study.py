"""What every study notebook does first and last: resolve its parameters, and write its run record.

:func:`start` validates the literals of the ``parameters`` cell and fills the profile's defaults
(``smoke`` / ``mini`` / ``full``; a value given explicitly overrides its profile);
:func:`write_record` stores parameters, the run's :func:`variant`, data, code (as the run started) and
environment fingerprints, wall time, metrics, curves and figures in ``results/<study>/<run-id>/record.json``.
"""
from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from .train import seed_everything

__all__ = ["Parameter", "resolve_parameters", "parameters_from_namespace", "Run", "write_record",
           "code_fingerprint", "repo_root", "results_dir", "shared_checkpoint", "load_records",
           "is_stale", "PROFILES", "parameter_table", "common_parameters", "parameter_frame",
           "start", "parse_names", "parse_frames", "frames_check", "variant", "RECIPES", "TRAINING_ROWS", "capped",
           "checkpointing"]

PROFILES = ("smoke", "mini", "full")
#: each profile's own recipe: the :func:`variant` of a run that changes none of its recipe parameters
RECIPES = {"smoke": "smoke", "mini": "miniature", "full": "paper"}

# Names IPython / ipykernel put into a notebook's namespace before the first cell runs.
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


@dataclass
class Parameter:
    """One notebook parameter.

    Attributes:
        types: accepted Python types (``None`` in the tuple accepts ``None``).
        profiles: profile name → value, taken when the notebook's value is ``None``.
        choices: allowed values, if categorical. check: value → error message or ``None``.
        help: one line for the error messages and the book.
        recipe: whether the value changes what is trained or evaluated (epochs, crops, learning
            rate, data subsets, caps…); ``False`` for where and how it runs (paths, device, seed,
            workers, checkpointing). Overriding a recipe parameter makes a run ``"debug"`` (:func:`variant`).
    """

    types: tuple
    profiles: dict = field(default_factory=dict)
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None
    help: str = ""
    recipe: bool = True


def parameters_from_namespace(namespace: dict) -> dict:
    """The user-level names of a notebook namespace: no underscores, modules or IPython's names."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _KERNEL_NAMES
            and not isinstance(v, (types.ModuleType, types.FunctionType, type))}


def resolve_parameters(study: str, given: dict, spec: dict[str, Parameter]) -> dict:
    """Validate a notebook's parameters and fill the profile defaults.

    Args:
        study: the study's name (for messages).
        given: name → value as the notebook holds them (:func:`parameters_from_namespace`).
        spec: name → :class:`Parameter`; must contain ``profile``.

    Returns every parameter of ``spec`` resolved, plus ``overridden``: the names set explicitly.
    Raises ValueError listing every problem at once: unknown names (with the closest known one),
    bad types, values outside their choices, failed checks.
    """
    errors = []
    for name in sorted(set(given) - set(spec)):
        close = difflib.get_close_matches(name, list(spec), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        errors.append(f"unknown parameter {name!r}{hint}")
    profile = given.get("profile", "mini")
    if profile not in PROFILES:
        errors.append(f"profile must be one of {PROFILES}, got {profile!r}")
        profile = "mini"
    out, overridden = {}, []
    for name, p in spec.items():
        value = given.get(name)
        if value is None and profile in p.profiles:
            value = p.profiles[profile]
        elif name in given and given[name] is not None and name != "profile":
            overridden.append(name)
        if name == "profile":
            value = profile
        ok_types = tuple(t for t in p.types if t is not None)
        if value is None and None in p.types:
            pass
        elif isinstance(value, bool) and bool not in ok_types:
            errors.append(f"{name} must be {_type_names(p.types)}, got {value!r}")
            continue
        elif float in ok_types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # papermill passes 1e-3 as a float but 1 as an int
        elif not isinstance(value, ok_types):
            hint = (f"; papermill's -p passes text: give a list in YAML with -y \"{name}: {value}\""
                    if isinstance(value, str) and value.lstrip()[:1] in "[{" and {list, tuple, dict} & set(ok_types)
                    else "")
            errors.append(f"{name} must be {_type_names(p.types)}, got {type(value).__name__} {value!r}{hint}")
            continue
        if p.choices is not None and value not in p.choices:
            errors.append(f"{name} must be one of {p.choices}, got {value!r}")
            continue
        if p.check is not None and value is not None:
            msg = p.check(value)
            if msg:
                errors.append(f"{name}: {msg} (got {value!r})")
                continue
        out[name] = value
    if errors:
        raise ValueError(f"{study}: bad parameters:\n  - " + "\n  - ".join(errors)
                         + f"\nknown parameters: {', '.join(spec)}")
    out["overridden"] = overridden
    return out


def _type_names(types) -> str:
    return " or ".join("None" if t is None else t.__name__ for t in types)


def positive(x) -> str | None:
    """A :class:`Parameter` check."""
    return None if x > 0 else "must be > 0"


def non_negative(x) -> str | None:
    """A :class:`Parameter` check."""
    return None if x >= 0 else "must be >= 0"


def torch_device(v: str) -> str | None:
    """A :class:`Parameter` check: ``v`` names a torch device."""
    try:
        torch.device(v)
    except (RuntimeError, TypeError):
        return "not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')"
    return None


def parse_names(value: str) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]`` (empty items dropped)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_frames(value: str) -> list[tuple[int, int]]:
    """``"2848x4256, 2048x4096"`` → ``[(2848, 4256), (2048, 4096)]`` (H × W raw pixels); ValueError
    for an item that is not ``<H>x<W>`` with even positive integers."""
    frames = []
    for item in parse_names(value):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"frame {item!r} is not <height>x<width>, e.g. 2848x4256") from None
        if h <= 0 or w <= 0 or h % 2 or w % 2:
            raise ValueError(f"frame {item!r}: height and width must be even and positive (a Bayer frame)")
        frames.append((h, w))
    if not frames:
        raise ValueError("no frame given")
    return frames


def frames_check(value: str) -> str | None:
    """A :class:`Parameter` check: ``value`` is a list of ``<H>x<W>`` frames."""
    try:
        parse_frames(value)
    except ValueError as error:
        return str(error)
    return None


# --------------------------------------------------------------------------- parameter tables

def parameter_table(*rows) -> dict[str, Parameter]:
    """A study's parameters as one table: the paper's values (``full``) beside ``mini``, ``smoke``.

    Each row is ``(name, smoke, mini, full, help)`` with an optional sixth item: a check, a tuple
    of allowed values, or a dict of :class:`Parameter` fields. The accepted types are those of the
    three values (``None`` among them accepts ``None``; a float accepts an int); give ``types``
    where that is not enough (e.g. ``(int, None)`` when every value is ``None``). ``profile`` is
    added first.

    >>> spec = parameter_table(("epochs", 1, 22, 4000, "epochs of training", positive))
    >>> list(spec), spec["epochs"].profiles["full"]
    (['profile', 'epochs'], 4000)
    """
    spec = {"profile": Parameter((str,), choices=PROFILES,
                                 help="smoke (tests, seconds), mini (the book, minutes), full (the paper, GPU)")}
    for row in rows:
        name, smoke, mini, full, help_text, *extra = row
        values = {"smoke": smoke, "mini": mini, "full": full}
        types = tuple(dict.fromkeys(type(v) for v in values.values() if v is not None)) or (str,)
        if float in types and int in types:
            types = tuple(t for t in types if t is not int)
        if any(v is None for v in values.values()):
            types += (None,)
        fields = {"types": types, "profiles": values, "help": help_text}
        if extra:
            opt = extra[0]
            if isinstance(opt, dict):
                fields.update(opt)
            elif isinstance(opt, tuple):
                fields["choices"] = opt
            else:
                fields["check"] = opt
        spec[name] = Parameter(**fields)
    return spec


def common_parameters(data_help: str, device_choices: tuple | None = None) -> tuple:
    """The rows every study has (for :func:`parameter_table`), none of them recipe: ``data_root``,
    ``device``, ``seed``, ``deterministic`` (resolved by :func:`start`).

    ``data_help``: what ``data_root`` names (the study's data set folder); ``device_choices``:
    restrict ``device`` (e.g. ``("cpu",)``; default: any torch device).
    """
    device = {"choices": device_choices} if device_choices else {"check": torch_device}
    return (("data_root", "", "", "", data_help + "; empty: the profile's data set", {"recipe": False}),
            ("device", "cpu", "cpu", "cpu", "torch device, e.g. 'cuda'", {**device, "recipe": False}),
            ("seed", 0, 0, 0, "seed of initialisation, crop positions and data order",
             {"check": non_negative, "recipe": False}),
            ("deterministic", None, None, None, "deterministic torch kernels (None: on for cpu, off for cuda/mps)",
             {"types": (bool, None), "recipe": False}))


#: the rows of every study that trains: how it runs (workers, checkpoint schedule; not recipe),
#: mixed precision (recipe: the papers train in float32), and the caps of a quick check such as
#: ``make full-check``, which shorten only what they name and make a run ``"debug"`` (:func:`capped`).
TRAINING_ROWS = (
    ("num_workers", 0, 0, 4, "DataLoader worker processes preparing the training batches",
     {"check": non_negative, "recipe": False}),
    ("checkpoint_minutes", 0.0, 0.0, 30.0, "also checkpoint when this many minutes passed (0: by steps only)",
     {"check": non_negative, "recipe": False}),
    ("keep_last", 1, 1, 2, "checkpoints kept per network (the latest and the ones before it)",
     {"check": positive, "recipe": False}),
    ("amp", None, None, None, "mixed precision 'bf16' or 'fp16' (None: float32, as the papers)",
     {"types": (str, None), "choices": (None, "bf16", "fp16")}),
    ("max_steps", None, None, None, "cap on each network's training steps (None: the recipe's)",
     {"types": (int, None), "check": positive}),
    ("max_images", None, None, None, "cap on the images read per split (None: all)",
     {"types": (int, None), "check": positive}))


def checkpointing(P: dict) -> dict:
    """The :class:`~reprolib.train.TrainConfig` fields of :data:`TRAINING_ROWS` in ``P``."""
    return {"amp": P["amp"], "checkpoint_minutes": P["checkpoint_minutes"], "keep_last": P["keep_last"]}


def capped(items, cap: int | None):
    """``items`` (a count or a sequence) limited to ``cap`` (``None``: unchanged)."""
    if cap is None:
        return items
    return min(items, cap) if isinstance(items, int) else items[:cap]


def variant(params: dict, overridden: list, spec: dict[str, Parameter] | None = None) -> str:
    """What a run's numbers are, from its parameters: ``"debug"`` when a recipe parameter
    (:attr:`Parameter.recipe`) other than ``weights`` is in ``overridden`` with a value other than its
    profile's; else ``"official-weights"`` when ``weights`` is ``"official"``; else the profile's
    :data:`RECIPES` (``"paper"`` at full, ``"miniature"`` at mini, ``"smoke"``). Without ``spec`` (a
    record's parameters alone) only :func:`common_parameters`' rows are known not to be recipe.

    >>> variant({"profile": "full", "epochs": 1, "seed": 3}, ["epochs", "seed"])
    'debug'
    """
    spec = spec or parameter_table(*common_parameters(""))
    profile = params.get("profile")
    if any(n != "weights" and (n not in spec or spec[n].recipe and params.get(n) != spec[n].profiles.get(profile))
           for n in overridden):
        return "debug"
    return "official-weights" if params.get("weights") == "official" else RECIPES.get(profile, "debug")


def parameter_frame(spec: dict[str, Parameter], P: dict | None = None):
    """The parameter table as a DataFrame, one row a name: ``smoke``, ``mini``, ``full (paper)``,
    ``this run`` (``*``: given explicitly) and ``help``."""
    rows = {}
    for name, p in spec.items():
        row = {k: repr(p.profiles.get(k)) if k in p.profiles else "" for k in PROFILES}
        if P is not None:
            row["this run"] = repr(P.get(name)) + (" *" if name in P.get("overridden", []) else "")
        row["help"] = p.help
        rows[name] = row
    return pd.DataFrame(rows).T.rename(columns={"full": "full (paper)"})


def start(study: str, namespace: dict, spec: dict[str, Parameter], notebook: str | None = None
          ) -> tuple[dict, "Run"]:
    """A study notebook's first call: validate the parameters in ``namespace`` (its ``globals()``,
    ValueError as :func:`resolve_parameters`), check that ``device`` exists here, resolve
    ``deterministic`` (None: on for cpu), seed every generator, open the run: ``(P, run)``."""
    P = resolve_parameters(study, parameters_from_namespace(namespace), spec)
    device = torch.device(P.get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{study}: device {str(device)!r} was asked for but CUDA is not available here "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}): run with "
                         "-p device cpu, or check the CUDA driver (nvidia-smi) and torch's CUDA build")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"{study}: device {str(device)!r} does not exist: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s), cuda:0 … cuda:{torch.cuda.device_count() - 1}; "
                         "pass one of them with -p device, or check CUDA_VISIBLE_DEVICES")
    if "deterministic" in P and P["deterministic"] is None:
        P["deterministic"] = device.type == "cpu"
    seed_everything(P.get("seed", 0), deterministic=P.get("deterministic", True))
    return P, Run(study, P, notebook=notebook or f"{study}.ipynb", spec=spec)


# --------------------------------------------------------------------------- fingerprints

def repo_root() -> Path:
    """The checkout this library runs from (``reprolib/..``)."""
    return Path(__file__).resolve().parents[1]


def results_dir() -> Path:
    """Where run records go: ``$REPROLIB_RESULTS`` or ``<repo>/results``."""
    env = os.environ.get("REPROLIB_RESULTS")
    return Path(env) if env else repo_root() / "results"


def shared_checkpoint(folder: str, name: str, key: dict) -> tuple[Path, str]:
    """The checkpoint ``<results>/<folder>/<name>-<hash>.pt`` of one training configuration, shared
    by the notebooks that train it, hashed (SHA-256) over ``key``: all that changes the weights or
    curves. Returns ``(path, digest)``; pass the digest to :func:`reprolib.train.train` as
    ``config_key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return results_dir() / folder / f"{name}-{digest[:12]}.pt", digest


def code_fingerprint(notebook: str | Path | None = None) -> dict:
    """Hashes of every ``reprolib`` source file (``library``, what staleness is judged on) and of
    the notebook's code cells when given, plus the git commit when there is one."""
    root = repo_root()
    lib = root / "reprolib"
    files = [p for p in lib.rglob("*") if p.is_file() and p.suffix in (".py", ".yaml", ".json")
             and "__pycache__" not in p.parts]
    rel = {p.relative_to(root): p for p in files}
    h = hashlib.sha256()
    for r in sorted(rel):
        h.update(r.as_posix().encode())
        h.update(hashlib.sha256(rel[r].read_bytes()).digest())
    out = {"library": h.hexdigest()[:16]}
    if notebook is not None:
        out["notebook"] = notebook_code_hash(notebook)
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "reprolib"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["git_commit"] = commit or None
        out["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def notebook_code_hash(path: str | Path) -> str:
    """Hash of a notebook's code cells (sources only: outputs and injected parameters ignored)."""
    nb = json.loads(Path(path).read_text())
    h = hashlib.sha256()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        src = cell.get("source", "")
        h.update(("".join(src) if isinstance(src, list) else src).encode())
    return h.hexdigest()[:16]


def environment() -> dict:
    """Python, torch, device, threads and package versions for the run record."""
    pkgs = {}
    for name in ("torch", "torchvision", "torchmetrics", "numpy", "rawpy", "tifffile", "papermill",
                 "pandas", "matplotlib", "scikit-image", "pycocotools", "jupyter-book"):
        try:
            pkgs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(), "packages": pkgs}


# --------------------------------------------------------------------------- run records

class Run:
    """A study run, finished by :func:`write_record`. ``run.dir``
    (``results/<study>/<profile>-<hash of the parameters>/``) holds its figures and checkpoints, so
    re-running a configuration resumes its checkpoints and replaces its record. ``run.code``: the
    :func:`code_fingerprint` as the run starts (what its record keeps); ``run.variant``: :func:`variant`
    (with ``spec``, the study's parameter table)."""

    def __init__(self, study: str, params: dict, notebook: str | None = None,
                 spec: dict[str, Parameter] | None = None):
        self.study = study
        self.params = {k: v for k, v in params.items() if k != "overridden"}
        self.overridden = params.get("overridden", [])
        self.notebook = notebook
        self.code = code_fingerprint(_notebook_path(notebook))
        self.variant = variant(self.params, self.overridden, spec)
        key = json.dumps(self.params, sort_keys=True, default=str)
        self.run_id = f"{self.params.get('profile', 'run')}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
        self.dir = results_dir() / study / self.run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def path(self, name: str) -> Path:
        """A file inside the run folder."""
        return self.dir / name

    def savefig(self, fig, name: str) -> str:
        """Save a matplotlib figure into the run folder; returns its file name."""
        fig.savefig(self.dir / name, dpi=110, bbox_inches="tight")
        return name


def write_record(run: Run, *, metrics: list[dict], dataset: dict, curves: dict | None = None,
                 figures: list[str] | None = None, paper: list[dict] | None = None,
                 notes: str = "", extra: dict | None = None, claims: list[dict] | None = None) -> Path:
    """Write the run's ``record.json``; returns its path.

    Args:
        metrics: rows of the study's results table, e.g. ``[{"model": "SID U-Net", "metric":
            "PSNR", "value": 27.1, "protocol": "…"}]``; scoreboard rows carry the ``key`` of their
            ``published.yaml`` entry.
        dataset: ``{"name": …, "fingerprint": …, "root": …, "synthetic": bool}``.
        curves: name → list of ``{"step": …, "value": …}``. figures: file names in the run folder.
        paper: published values shown next to ours. notes: free text. extra: anything else.
        claims: rows of :func:`reprolib.report.claim` for the paper's claims this run tests.
    """
    record = {
        "study": run.study, "notebook": run.notebook, "run_id": run.run_id,
        "profile": run.params.get("profile"), "variant": run.variant, "parameters": run.params,
        "overridden": run.overridden, "dataset": dataset, "code": run.code, "environment": environment(),
        "command": " ".join(sys.argv), "host": socket.gethostname(), "started_at": run.started_at,
        "wall_time_s": round(time.time() - run.started, 2), "metrics": metrics,
        "curves": curves or {}, "figures": figures or [], "paper": paper or [], "notes": notes,
        "claims": claims or [], "extra": extra or {},
    }
    out = run.dir / "record.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=_json_default))
    tmp.replace(out)
    return out


def _notebook_path(name: str | None) -> Path | None:
    if not name:
        return None
    p = Path(name)
    if not p.is_absolute():
        p = repo_root() / "notebooks" / p
    return p if p.is_file() else None


def _json_default(o):
    if isinstance(o, (np.integer, np.floating, np.ndarray)):
        return o.tolist()  # Python int / float / list
    return str(o)


def load_records(root: str | Path | None = None, study: str | None = None) -> list[dict]:
    """All run records under ``results/`` (optionally of one study), each with ``stale`` set."""
    root = Path(root) if root else results_dir()
    pattern = f"{study}/*/record.json" if study else "*/*/record.json"
    current = code_fingerprint()["library"]
    out = []
    for p in sorted(root.glob(pattern)):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rec["record_path"] = str(p)
        rec["stale"] = is_stale(rec, current)
        out.append(rec)
    return out


def is_stale(record: dict, current_library_hash: str | None = None) -> bool:
    """True when the record was computed with a ``reprolib`` other than the checkout's."""
    current = current_library_hash or code_fingerprint()["library"]
    return record.get("code", {}).get("library") != current
