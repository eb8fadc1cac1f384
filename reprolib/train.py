"""The studies' training loop: seeded, deterministic on CPU, checkpointed, resumable.

Step ``k``'s batch is ``batch_fn(k)``, a function of the step alone, and model, optimiser, torch's
RNG state and the curves are saved atomically every ``checkpoint_every`` steps: a restarted run
ends with the same weights as an uninterrupted one (bit for bit on CPU).
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

#: the random streams of the studies' draws (``np.random.default_rng([seed, stream, …])``);
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
    """The data indices of ``step``'s batch (``int64``, ``batch`` of them in ``[0, n)``): the one
    resumable sampler of every study. Epoch ``e`` visits
    ``default_rng([seed, stream, e]).permutation(n)`` in slices of ``batch``: ``n // batch`` steps
    with ``drop_last``, else ``ceil(n / batch)``, the last slice wrapping round to the first items.

    >>> epoch_batch(5, 2, seed=0, stream=1, step=0).shape
    (2,)
    """
    per_epoch = n // batch if drop_last else math.ceil(n / batch)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, stream, epoch]).permutation(n)
    return order[(k * batch + np.arange(batch)) % n]


@dataclass
class TrainConfig:
    """Optimisation settings: ``steps`` in all; Adam's ``lr`` and ``weight_decay``; the learning
    rate multiplied by ``gamma`` at each of ``milestones`` (steps); ``evaluate_fn`` every
    ``eval_every`` steps and at the end (0: only at the end); the running mean loss logged every
    ``log_every`` steps; a checkpoint every ``checkpoint_every`` steps and at the end; the gradient
    norm clipped at ``grad_clip`` (None: no clipping)."""

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


def train(model: torch.nn.Module, batch_fn: Callable[[int], Any],
          loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], cfg: TrainConfig, *,
          checkpoint: str | Path | None = None, evaluate_fn: Callable[[torch.nn.Module], dict] | None = None,
          parameters=None, progress: bool = True, desc: str = "train",
          config_key: str | None = None) -> History:
    """Train ``model`` (on its device) with Adam and a step schedule, checkpointing and resuming;
    returns its :class:`History`.

    Args:
        batch_fn: ``step -> batch``, a function of the step alone (and a seed).
        loss_fn: ``(model, batch) -> scalar loss``, the model in train mode.
        checkpoint: file to save to and resume from (None: no checkpointing).
        evaluate_fn: ``model -> {metric: value}``, in eval mode under ``torch.no_grad``, every
            ``cfg.eval_every`` steps and at the end.
        parameters: what the optimiser updates (default ``model.parameters()``).
        progress: show a progress bar. config_key: identifies the configuration; a checkpoint saved
            under another key is not resumed.
    """
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, start = History(), 0
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
            tmp = ckpt_path.with_name(ckpt_path.name + ".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "torch_rng": torch.get_rng_state(), "step": step, "curves": history.curves,
                        "seconds": history.seconds, "config_key": key}, tmp)
            os.replace(tmp, ckpt_path)

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
