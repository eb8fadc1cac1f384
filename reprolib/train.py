"""The shared training loop: seeded, deterministic on CPU, checkpointed, resumable.

Used by the SID, Lamba & Mitra, GenISP and PyNET studies.

Determinism and resume: the batch for step ``k`` is drawn by ``batch_fn(k)`` — a function of the
step alone (seed it with ``np.random.default_rng([seed, k])``) — so a run that is killed and started
again replays exactly the batches it would have seen. Model, optimiser, learning-rate schedule,
torch's RNG state and the logged curves are saved together, atomically, every
``checkpoint_every`` steps; a restarted run continues from the last checkpoint and ends with the same
weights as an uninterrupted one (bit for bit on CPU with ``torch.use_deterministic_algorithms``).
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["seed_everything", "epoch_batch", "STREAMS", "TrainConfig", "History", "train", "load_checkpoint"]

#: the random streams of the studies' batch and crop draws: each draw seeds
#: ``np.random.default_rng([seed, stream, …])``, so a step's batch is a function of the step alone.
#: PyNET uses its level (0–5) as the stream of its epoch order.
STREAMS = {"sid_crop": 0, "sid_epoch_order": 1, "mini_detector": 2, "genisp_epoch_order": 3,
           "genisp_augmentation": 4}


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch; make torch's CPU kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def epoch_batch(n: int, batch: int, seed: int, stream: int, step: int, drop_last: bool = True) -> np.ndarray:
    """The data indices of ``step``'s batch: the one resumable sampler of every study.

    Epoch ``e`` visits ``default_rng([seed, stream, e]).permutation(n)`` in slices of ``batch``.
    With ``drop_last`` an epoch has ``n // batch`` steps (as ``DataLoader(shuffle=True,
    drop_last=True)``); without, ``ceil(n / batch)``, the last slice wrapping round to the epoch's
    first items. A function of the step alone, so a resumed run replays the same batches.

    Returns:
        ``int64`` array of ``batch`` indices in ``[0, n)``.

    >>> epoch_batch(5, 2, seed=0, stream=1, step=0).shape
    (2,)
    """
    per_epoch = n // batch if drop_last else math.ceil(n / batch)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, stream, epoch]).permutation(n)
    return order[(k * batch + np.arange(batch)) % n]


@dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes:
        steps: total optimisation steps.
        lr: Adam learning rate.
        milestones: steps at which the learning rate is multiplied by ``gamma`` (step schedule).
        gamma: the factor at each milestone.
        weight_decay: Adam weight decay.
        eval_every: evaluate (``evaluate_fn``) every this many steps and at the end; 0 = only at the end.
        log_every: record the running mean training loss every this many steps.
        checkpoint_every: save a checkpoint every this many steps (and at the end).
        grad_clip: clip the gradient norm (None = no clipping).
    """

    steps: int
    lr: float = 1e-4
    milestones: tuple = ()
    gamma: float = 0.1
    weight_decay: float = 0.0
    eval_every: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    grad_clip: float | None = None

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        self.milestones = tuple(int(m) for m in self.milestones)


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


def _lr_at(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * cfg.gamma ** sum(step >= m for m in cfg.milestones)


def load_checkpoint(path: str | Path) -> dict | None:
    """The checkpoint at ``path``, or None when there is none (or it is unreadable)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a torn file from a kill during a save would fail here; start over
        return None


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(model: torch.nn.Module, batch_fn: Callable[[int], Any],
          loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], cfg: TrainConfig, *,
          checkpoint: str | Path | None = None, evaluate_fn: Callable[[torch.nn.Module], dict] | None = None,
          parameters=None, progress: bool = True, desc: str = "train",
          config_key: str | None = None) -> History:
    """Train ``model`` with Adam and a step schedule, checkpointing and resuming.

    Args:
        model: the network (moved to its device by the caller).
        batch_fn: ``step -> batch``; must depend only on the step (and a seed) for resumability.
        loss_fn: ``(model, batch) -> scalar loss``; the model is in train mode.
        cfg: :class:`TrainConfig`.
        checkpoint: file to save to and resume from (None = no checkpointing).
        evaluate_fn: ``model -> {metric: value}``, called in eval mode under ``torch.no_grad`` every
            ``cfg.eval_every`` steps and at the end.
        parameters: what the optimiser updates (default: ``model.parameters()``); e.g. only
            GenISP's weights when the detector is frozen.
        progress: show a tqdm progress bar.
        config_key: a string identifying the configuration; a checkpoint saved under another key
            is ignored (not resumed) so a changed configuration never continues an old run.

    Returns:
        The :class:`History` (curves of loss and metrics).
    """
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = History()
    start = 0
    ckpt_path = Path(checkpoint) if checkpoint else None
    key = config_key or repr(asdict(cfg))
    if ckpt_path is not None:
        state = load_checkpoint(ckpt_path)
        if state is not None and state.get("config_key") == key:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            history = History(curves=state["curves"], seconds=state["seconds"], resumed_from=state["step"])
            start = state["step"]
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)

    def save(step: int) -> None:
        if ckpt_path is not None:
            _save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "torch_rng": torch.get_rng_state(), "step": step,
                                         "curves": history.curves, "seconds": history.seconds,
                                         "config_key": key})

    def run_eval(step: int) -> None:
        if evaluate_fn is None:
            return
        model.eval()
        with torch.no_grad():
            metrics = evaluate_fn(model)
        model.train()
        for name, value in metrics.items():
            history.log(name, step, value)

    model.train()
    running, count = 0.0, 0
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, desc=desc, disable=not progress, leave=False,
               mininterval=2.0)
    for step in range(start, cfg.steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        batch = batch_fn(step)
        loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        running += loss.item()
        count += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            history.log("loss", done, running / count)
            bar.set_postfix(loss=f"{running / count:.4f}")
            running, count = 0.0, 0
        if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
            run_eval(done)
        bar.update(1)
        if done % cfg.checkpoint_every == 0 and done != cfg.steps:
            history.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save(done)
    bar.close()
    history.seconds += time.perf_counter() - t0
    if start < cfg.steps or set(history.curves) <= {"loss"}:  # a finished checkpoint keeps its metrics
        run_eval(cfg.steps)
    save(cfg.steps)
    model.eval()
    return history


def steps_per_second(history: History) -> float:
    """Average training speed of a history (steps / s), for the record."""
    steps = history.curves["loss"][-1]["step"] - history.resumed_from if history.curves.get("loss") else 0
    return steps / history.seconds if history.seconds > 0 and steps > 0 else math.nan
