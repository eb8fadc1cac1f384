"""The studies' training loop: seeded, deterministic on CPU, checkpointed, resumable, locked.

Step ``k``'s batch is ``batch_fn(k)``, a function of the step alone, and model, optimiser, torch's
RNG state and the curves are saved atomically every ``checkpoint_every`` steps: a restarted run
ends with the same weights as an uninterrupted one (bit for bit on CPU, with or without DataLoader
workers). A checkpoint that cannot be resumed is an error, never a silent restart from step 0.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import glob
import math
import os
import random
import secrets
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None

__all__ = ["seed_everything", "epoch_batch", "STREAMS", "TrainConfig", "History", "train", "load_checkpoint",
           "CheckpointError", "to_device", "projected_time"]

#: the random streams of the studies' draws (``np.random.default_rng([seed, stream, …])``);
#: PyNET uses its level (0–5) as the stream of its epoch order.
STREAMS = {"sid_crop": 0, "sid_epoch_order": 1, "mini_detector": 2, "genisp_epoch_order": 3,
           "genisp_augmentation": 4}
_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}
_PROJECT_AFTER = (20, 30.0)  # the projected end is printed after this many steps and seconds (both)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch; turn torch's deterministic algorithms on (or off)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def epoch_batch(n: int, batch: int, seed: int, stream: int, step: int, drop_last: bool = True) -> np.ndarray:
    """The data indices of ``step``'s batch (``int64``, ``batch`` of them in ``[0, n)``): the one
    resumable sampler of every study. Epoch ``e`` visits
    ``default_rng([seed, stream, e]).permutation(n)`` in slices of ``batch``: ``n // batch`` steps
    with ``drop_last``, else ``ceil(n / batch)``, the last slice wrapping round to the first items
    (a set smaller than one batch, as a capped check reads, gives one step an epoch, items repeated).

    >>> epoch_batch(5, 2, seed=0, stream=1, step=0).shape
    (2,)
    """
    per_epoch = max(1, n // batch if drop_last else math.ceil(n / batch))
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, stream, epoch]).permutation(n)
    return order[(k * batch + np.arange(batch)) % n]


@dataclass
class TrainConfig:
    """Optimisation settings: ``steps`` in all; Adam's ``lr`` and ``weight_decay``; the learning
    rate multiplied by ``gamma`` at each of ``milestones`` (steps); ``evaluate_fn`` every
    ``eval_every`` steps and at the end (0: only at the end); the running mean loss logged every
    ``log_every`` steps; the gradient norm clipped at ``grad_clip`` (None: no clipping); forward
    pass and loss in ``amp`` ``"bf16"`` or ``"fp16"`` (loss scaled; None: float32, the papers').
    A checkpoint every ``checkpoint_every`` steps, also when ``checkpoint_minutes`` (0: off) passed
    since the last, and at the end; the ``keep_last - 1`` previous ones kept as ``<stem>.step<N><suffix>``.
    ``repr``, which callers hash into checkpoint keys, omits how checkpoints are written and ``amp``
    when None: keys made before these settings existed still resume."""

    steps: int
    lr: float = 1e-4
    milestones: tuple = ()
    gamma: float = 0.1
    weight_decay: float = 0.0
    eval_every: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    grad_clip: float | None = None
    amp: str | None = None
    checkpoint_minutes: float = 0
    keep_last: int = 1

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.amp is not None and self.amp not in _AMP:
            raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {self.amp!r}")
        if self.keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {self.keep_last}")
        self.milestones = tuple(int(m) for m in self.milestones)

    def key_fields(self) -> dict:
        """The settings that identify the run (see the class docstring)."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("checkpoint_minutes", "keep_last") and not (k == "amp" and v is None)}

    def __repr__(self) -> str:
        return f"TrainConfig({', '.join(f'{k}={v!r}' for k, v in self.key_fields().items())})"


@dataclass
class History:
    """What a training run logged: ``loss`` and each evaluation metric as ``[{"step", "value"}]``."""

    curves: dict = field(default_factory=dict)
    seconds: float = 0.0
    resumed_from: int = 0

    def log(self, name: str, step: int, value: float) -> None:
        """Append ``value`` at ``step`` to the curve ``name``."""
        self.curves.setdefault(name, []).append({"step": int(step), "value": float(value)})

    def last(self, name: str) -> float | None:
        """The last value of the curve ``name`` (None before the first)."""
        c = self.curves.get(name)
        return c[-1]["value"] if c else None


def projected_time(steps_done: int, seconds: float, total_steps: int) -> tuple[float, float, _dt.datetime]:
    """``(steps / s, seconds left, end time in UTC)`` after ``steps_done`` of ``total_steps`` steps in ``seconds``.

    >>> projected_time(100, 50.0, 1000)[:2]
    (2.0, 450.0)
    """
    rate = steps_done / seconds
    left = (total_steps - steps_done) / rate
    return rate, left, _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=left)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * cfg.gamma ** sum(step >= m for m in cfg.milestones)


class CheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be resumed (unreadable, torn, not a training checkpoint,
    another configuration's), or that cannot be written."""


_STATE_KEYS = {"model", "optimizer", "torch_rng", "step", "curves", "seconds", "config_key"}


def _earlier(path: Path) -> list[Path]:
    """The previous checkpoints kept beside ``path`` (``<stem>.step<N><suffix>``), oldest first."""
    found = {p: p.name[len(path.stem) + 5:len(p.name) - len(path.suffix)]
             for p in path.parent.glob(f"{glob.escape(path.stem)}.step*{glob.escape(path.suffix)}")}
    return sorted((p for p, n in found.items() if n.isdigit()), key=lambda p: int(found[p]))


def _fix(path: Path) -> str:
    earlier = _earlier(path)
    return f"rename or delete {path.name} to train this configuration from step 0" + (
        f", or restore the previous {earlier[-1].name} (kept by keep_last) by renaming it to {path.name}"
        if earlier else "")


def load_checkpoint(path: str | Path, config_key: str | None = None) -> dict | None:
    """The training checkpoint at ``path`` (on the CPU), or None when there is no file. Raises
    :class:`CheckpointError` (the file, the reason, the fix) when it cannot be read (torn by a kill,
    another format) or, given ``config_key``, was saved by another configuration."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        reason = (str(e).splitlines() or [""])[0]
        raise CheckpointError(f"cannot read the checkpoint {path} ({type(e).__name__}: {reason}): {_fix(path)}") from e
    if not isinstance(state, dict) or not _STATE_KEYS <= set(state):
        raise CheckpointError(f"{path} is not a checkpoint of reprolib.train.train: {_fix(path)}")
    if config_key is not None and state["config_key"] != config_key:
        raise CheckpointError(f"{path} belongs to another configuration (its config_key differs from this "
                              f"run's; checkpoint names are made from the key, so it should not be here): {_fix(path)}")
    return state


def _nbytes(obj) -> int:  # the bytes of the tensors in nested dicts, lists and tuples
    obj = list(obj.values()) if isinstance(obj, dict) else obj
    return obj.nbytes if torch.is_tensor(obj) else sum(map(_nbytes, obj)) if isinstance(obj, (list, tuple)) else 0


def _save(state: dict, path: Path, keep_last: int = 1, previous: int | None = None) -> None:
    """Write ``state`` to ``<name>.<pid>-<random>.tmp`` beside ``path``, fsync it, rename it over
    ``path`` (removed if that fails: ``path`` is left as it was). ``keep_last > 1``: the checkpoint
    at ``path`` (of step ``previous``) is kept as ``<stem>.step<previous><suffix>``, ``keep_last - 1`` of them."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_last > 1 and previous is not None and path.exists():
            kept = path.with_name(f"{path.stem}.step{previous}{path.suffix}")
            kept.unlink(missing_ok=True)
            try:
                os.link(path, kept)
            except OSError:  # no hard links on this file system
                shutil.copyfile(path, kept)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(
                f"no space left in {path.parent} for the checkpoint {path.name} of step {state['step']}: it needs "
                f"about {_nbytes(state):,} bytes, {shutil.disk_usage(path.parent).free:,} are free. Free space "
                f"there and rerun: the previous checkpoint is intact and resumes") from e
        raise
    if keep_last > 1:
        earlier = _earlier(path)
        for old in earlier[:max(0, len(earlier) - keep_last + 1)]:
            old.unlink(missing_ok=True)


@contextlib.contextmanager
def _lock(path: Path):
    """Hold an exclusive ``flock`` on ``<path>.lock``, waiting (saying so once) while another process
    holds it; a warning and no lock where the file system has no locks."""
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a+") as f:
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                pid, _, since = f.read().strip().partition(" ")
                tqdm.write(f"waiting for {lock} (held by pid {pid or '?'} since {since or '?'})")
                fcntl.flock(f, fcntl.LOCK_EX)
            f.truncate(0)
            f.write(f"{os.getpid()} {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC\n")
            f.flush()
        except (OSError, AttributeError) as e:  # AttributeError: no fcntl (Windows)
            warnings.warn(f"cannot lock {lock} ({e}): two runs of this configuration at once would both train it")
        yield


def to_device(batch, device, non_blocking: bool = False):
    """``batch`` (a tensor, or tuples / lists / dicts of them, nested; other leaves as they are) on
    ``device``: the one place where batches change device."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        items = [to_device(v, device, non_blocking) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return batch


@dataclass
class _Steps(torch.utils.data.Dataset):
    """``batch_fn`` as a data set indexed by step, for DataLoader workers."""
    batch_fn: Callable[[int], Any]
    __getitem__ = lambda self, step: self.batch_fn(step)  # noqa: E731


def _as_is(batch):  # the DataLoader's collate_fn: batches as batch_fn makes them
    return batch


def train(model: torch.nn.Module, batch_fn: Callable[[int], Any],
          loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], cfg: TrainConfig, *,
          checkpoint: str | Path | None = None, evaluate_fn: Callable[[torch.nn.Module], dict] | None = None,
          parameters=None, progress: bool = True, desc: str = "train", config_key: str | None = None,
          device: str | torch.device | None = None, num_workers: int = 0,
          tensorboard: str | Path | None = None) -> History:
    """Train ``model`` (on its device) with Adam and a step schedule, checkpointing and resuming;
    returns its :class:`History`.

    Args:
        batch_fn: ``step -> batch``, a function of the step alone and a seed (e.g. drawn from
            ``np.random.default_rng([seed, step])``; a global generator differs in DataLoader workers).
        loss_fn: ``(model, batch) -> scalar loss``, the model in train mode.
        checkpoint: file to save to and resume from (None: no checkpointing), :class:`CheckpointError`
            if it cannot be read or has another ``config_key``. ``<checkpoint>.lock`` is held
            (``flock``: local disks, NFSv4; a warning and no lock where the file system has none)
            for the whole call: a second process training the same configuration waits, then
            resumes from the first's checkpoint (a finished one: no training).
        evaluate_fn: ``model -> {metric: value}``, in eval mode under ``torch.no_grad``, every
            ``cfg.eval_every`` steps and at the end.
        parameters: what the optimiser updates (default ``model.parameters()``).
        progress: a progress bar with the projected end, and the projection printed once.
        config_key: identifies the configuration (default: ``cfg``'s :meth:`TrainConfig.key_fields`).
        device: each batch is moved there (:func:`to_device`); None: batches as ``batch_fn`` makes them.
        num_workers: ``batch_fn`` runs in this process (0) or in that many ``DataLoader`` workers, a
            few steps ahead: the same run (then ``batch_fn`` makes CPU batches, and must pickle where
            processes are not forked).
        tensorboard: folder of a TensorBoard log of every curve and the learning rate.
    """
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    device_type = torch.device(device).type if device is not None else params[0].device.type
    scaler = torch.amp.GradScaler(device_type, enabled=cfg.amp == "fp16")  # disabled: the plain calls
    history, start, saved, writer = History(), 0, None, None
    ckpt_path = Path(checkpoint) if checkpoint else None
    key = config_key or repr(cfg.key_fields())
    with contextlib.ExitStack() as stack:
        if ckpt_path is not None:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(_lock(ckpt_path))
            if (state := load_checkpoint(ckpt_path, key)) is not None:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                torch.set_rng_state(state["torch_rng"])
                if "scaler" in state:
                    scaler.load_state_dict(state["scaler"])
                history = History(curves=state["curves"], seconds=state["seconds"], resumed_from=state["step"])
                start = saved = state["step"]
        if tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter
            writer = stack.enter_context(SummaryWriter(str(tensorboard)))

        def log(name: str, step: int, value: float) -> None:
            history.log(name, step, value)
            if writer is not None:
                writer.add_scalar(name, value, step)

        def save(step: int) -> None:
            nonlocal saved, last_save
            if ckpt_path is not None:
                _save({"model": model.state_dict(), "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(),
                       "step": step, "curves": history.curves, "seconds": history.seconds, "config_key": key,
                       **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {})},
                      ckpt_path, cfg.keep_last, saved)
                saved, last_save = step, time.perf_counter()
            if writer is not None:
                writer.flush()

        def run_eval(step: int) -> None:
            if evaluate_fn is not None:
                model.eval()
                with torch.no_grad():
                    metrics = evaluate_fn(model)
                model.train()
                for name, value in metrics.items():
                    log(name, step, value)

        pinned = device is not None and device_type == "cuda"
        batches = map(batch_fn, range(start, cfg.steps))
        if num_workers and start < cfg.steps:  # its own generator: the global RNG is not drawn from
            batches = iter(torch.utils.data.DataLoader(
                _Steps(batch_fn), batch_size=None, sampler=range(start, cfg.steps), num_workers=num_workers,
                collate_fn=_as_is, pin_memory=pinned, persistent_workers=True, prefetch_factor=4,
                generator=torch.Generator()))
            stack.callback(batches._shutdown_workers)  # also when a step raises
        model.train()
        running, count, ends, announced = 0.0, 0, None, False
        t0 = last_save = time.perf_counter()
        bar = tqdm(total=cfg.steps, initial=start, desc=desc, disable=not progress, leave=False, mininterval=2.0)
        for step in range(start, cfg.steps):
            lr = _lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = next(batches) if device is None else to_device(next(batches), device, pinned)
            with torch.autocast(device_type, dtype=_AMP[cfg.amp]) if cfg.amp else contextlib.nullcontext():
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            running += loss.item()
            count += 1
            done, now = step + 1, time.perf_counter()
            if done == start + 1:
                t1 = now  # the pace is measured after the first step (a warm-up)
            elif progress:
                rate, left, ends = projected_time(done - start - 1, now - t1, cfg.steps - start - 1)
                if not announced and done - start - 1 >= _PROJECT_AFTER[0] and now - t1 >= _PROJECT_AFTER[1]:
                    announced = True
                    hours, minutes = divmod(round(left / 60), 60)
                    tqdm.write(f"{desc} projected: {hours} h {minutes} min for {cfg.steps - done:,} more steps at "
                               f"{rate:.1f} steps/s (ends ≈ {ends:%Y-%m-%d %H:%M} UTC)")
            if done % cfg.log_every == 0 or done == cfg.steps:
                log("loss", done, running / count)
                if writer is not None:
                    writer.add_scalar("lr", lr, done)
                bar.set_postfix(loss=f"{running / count:.4f}",
                                **({"ends": f"≈{ends.astimezone():%a %H:%M}"} if ends else {}))
                running, count = 0.0, 0
            if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
                run_eval(done)
            bar.update(1)
            if done != cfg.steps and (done % cfg.checkpoint_every == 0 or cfg.checkpoint_minutes
                                      and now - last_save >= 60 * cfg.checkpoint_minutes):
                history.seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                save(done)
        bar.close()
        history.seconds += time.perf_counter() - t0
        if start < cfg.steps or (evaluate_fn is not None and set(history.curves) <= {"loss"}):
            run_eval(cfg.steps)  # a finished checkpoint keeps its metrics and is not written again
            save(cfg.steps)
    model.eval()
    return history


def steps_per_second(history: History) -> float:
    """Average training speed of a history (steps / s), for the record."""
    steps = history.curves["loss"][-1]["step"] - history.resumed_from if history.curves.get("loss") else 0
    return steps / history.seconds if history.seconds > 0 and steps > 0 else math.nan
