"""Model cost: parameters, multiply-accumulates, CPU latency and peak memory, and the cost table of
the four studies' networks on one raw frame (Lamba & Mitra's Table 1, on a 4256×2848 Sony frame).

* MACs: ``FlopCounterMode`` counts convolutions, transposed convolutions and matmuls (one MAC = two
  FLOPs), not activations, pooling, pixel (un)shuffle, concatenation or weight normalisation — as
  the papers' tables.
* Latency: CPU wall-clock time of ``model(zeros)`` under :func:`torch.inference_mode`, models
  timed side by side. Peak memory: in a fresh child process (:func:`peak_memory`).
"""
from __future__ import annotations

import copy
import multiprocessing
import queue as queue_module
import resource
import statistics
import sys
import time
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from . import models
from .published import published_value
from .models.lle import LLENet

__all__ = ["count_parameters", "gmacs", "latency", "peak_memory", "FULL_FRAME", "README_FRAME",
           "EFFICIENCY_MODELS", "frame_label", "input_shape", "build_model", "fast_inference",
           "cost_table", "side_by_side_latency", "speedup", "variant_latency", "frame_inference",
           "peak_memory_table"]


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``, trainable or not (weight norm: ``g`` and ``v``, as
    the authors count)."""
    return sum(p.numel() for p in model.parameters())


def gmacs(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Giga multiply-accumulates (FLOPs / 2e9) of one forward pass of ``model`` on a tensor of
    ``input_shape`` (e.g. ``(1, 1, 2848, 4256)``), run on a ``meta`` copy (no memory, no
    arithmetic), or for real on zeros when the model cannot run there."""
    try:
        return _count_gmacs(copy.deepcopy(model).to("meta"), torch.zeros(input_shape, device="meta"))
    except (NotImplementedError, RuntimeError):
        return _count_gmacs(model, torch.zeros(input_shape))


def _count_gmacs(model: nn.Module, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() / 2e9


def latency(timed: dict, rounds: int = 3, warmup: int = 1, threads: int | None = None,
            progress: bool = False) -> dict:
    """CPU wall-clock time of ``model(zeros(shape))`` for several models, side by side: after
    ``warmup`` untimed rounds, each round times one call of every model in turn, so a change of the
    machine's speed affects all alike. ``timed``: name → ``(model in eval mode, input shape)``;
    ``threads``: intra-op threads (``None``: unchanged). Returns name → ``{"times_s": [per round],
    "median_s", "min_s", "threads"}``."""
    if rounds < 1 or warmup < 0:
        raise ValueError("rounds must be ≥ 1 and warmup ≥ 0")
    previous, times = torch.get_num_threads(), {name: [] for name in timed}
    bar = tqdm(total=(rounds + warmup) * len(timed), desc="latency", disable=not progress, leave=False)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        used = torch.get_num_threads()
        with torch.inference_mode():
            for r in range(warmup + rounds):
                for name, (model, shape) in timed.items():
                    x = torch.zeros(shape)
                    start = time.perf_counter()
                    model(x)
                    if r >= warmup:
                        times[name].append(time.perf_counter() - start)
                    bar.update(1)
    finally:
        torch.set_num_threads(previous)
        bar.close()
    return {name: {"times_s": t, "median_s": statistics.median(t), "min_s": min(t), "threads": used}
            for name, t in times.items()}


def _status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status (Linux), in bytes; None where unavailable."""
    try:
        with open("/proc/self/status") as status:
            return next((int(line.split()[1]) * 1024 for line in status if line.startswith(field + ":")), None)
    except OSError:
        return None


def _measure_in_child(queue, fn, args, kwargs) -> None:
    try:
        try:  # Linux ≥ 4.0: reset the peak resident set size (VmHWM) to the current one
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            peak, before = (lambda: _status_bytes("VmHWM")), _status_bytes("VmRSS")
        except OSError:  # elsewhere: the peak so far (after the imports) is the baseline; bytes on macOS
            unit = 1 if sys.platform == "darwin" else 1024
            peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit  # noqa: E731
            before = peak()
        fn(*args, **kwargs)
        queue.put(("ok", peak() - before))
    except BaseException as error:  # report any failure to the parent instead of hanging it
        queue.put(("error", repr(error)))


def peak_memory(fn: Callable, *args, **kwargs) -> int:
    """Peak resident memory (bytes, ≥ 0) that ``fn(*args, **kwargs)`` adds, in a fresh process.

    A *spawn* child unpickles ``fn`` (module-level, or a ``functools.partial`` of one) and the
    arguments, resets its peak RSS (Linux ``/proc/self/clear_refs``; elsewhere the peak so far is
    the baseline), calls ``fn`` and returns its ``VmHWM`` minus the ``VmRSS`` before: what ``fn``
    allocates, weights included. Raises RuntimeError if ``fn`` raises or the child dies.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_measure_in_child, args=(queue, fn, args, kwargs))
    child.start()
    try:
        status = None
        while status is None:
            try:
                status, value = queue.get(timeout=1.0)
            except queue_module.Empty:
                if not child.is_alive() and queue.empty():  # e.g. killed for lack of memory
                    raise RuntimeError(f"memory measurement child exited with code {child.exitcode}")
    finally:
        child.join()
    if status != "ok":
        raise RuntimeError(f"{getattr(fn, '__name__', fn)!r} failed in the measurement child: {value}")
    return max(int(value), 0)


# ------------------------------------------------------------------------- the efficiency notebook's table

#: the frames of the papers' tables (H × W raw pixels): Table 1 (a full Sony frame) and the README's
FULL_FRAME, README_FRAME = (2848, 4256), (2048, 4096)

#: the networks: name → (label, short label, :data:`reprolib.models.MODELS` name, arguments, key in
#: ``published.yaml``). ``efficiency/lle/…`` keys carry the fast path (the same function, faster).
EFFICIENCY_MODELS = {
    "sid": ("SID U-Net", "SID U-Net", "sid_unet", {}, "sid"),
    "lle": ("Lamba & Mitra (weight norm, as trained)", "L&M\n(weight norm)", "lle", {}, "lle_weight_norm"),
    "lle_fused": ("Lamba & Mitra (fast path: folded, channels-last)", "L&M\n(fast path)", "lle", {}, "lle"),
    "genisp": ("GenISP", "GenISP", "genisp", {}, "genisp"),
    "pynet": ("PyNET (width 1.0, level 0)", "PyNET", "pynet", {"level": 0, "width": 1.0}, "pynet"),
}


def frame_label(frame: tuple[int, int], sep: str = "×") -> str:
    """``(H, W)`` → ``"W×H"``, as the papers write frames (``sep="x"`` for record keys)."""
    return f"{frame[1]}{sep}{frame[0]}"


def input_shape(name: str, frame: tuple[int, int]) -> tuple[int, ...]:
    """The input of model ``name`` for a raw frame of ``H × W`` pixels: each network gets the same
    frame in its own representation — Lamba & Mitra's the mosaic ``1×1×H×W``; the SID U-Net (R,G,B,G)
    and PyNET the packing ``1×4×H/2×W/2``; GenISP the packing with the greens averaged ``1×3×H/2×W/2``."""
    h, w = frame
    return {"sid": (1, 4, h // 2, w // 2), "lle": (1, 1, h, w), "lle_fused": (1, 1, h, w),
            "genisp": (1, 3, h // 2, w // 2), "pynet": (1, 4, h // 2, w // 2)}[name]


def build_model(name: str, device: str = "cpu") -> nn.Module:
    """A model of :data:`EFFICIENCY_MODELS` initialised from ``torch.manual_seed(0)``, in eval mode
    (``device='meta'``: no memory, enough to count parameters and operations)."""
    if name not in EFFICIENCY_MODELS:
        raise ValueError(f"unknown model {name!r}; known: {list(EFFICIENCY_MODELS)}")
    _, _, family, kwargs, _ = EFFICIENCY_MODELS[name]
    torch.manual_seed(0)
    with torch.device(device):
        model = models.build(family, **kwargs)
        if name == "lle_fused":
            model = fast_inference(model)
    return model.eval()


def fast_inference(model: LLENet) -> LLENet:
    """The inference fast path of a trained network, the same function up to float rounding (~1e-6):
    weight normalisation folded into the conv weights (:meth:`LLENet.fused`), channels-last (10-15 %
    faster with oneDNN). Returns a new module in eval mode; the input stays ``B×1×H×W``."""
    return model.fused().eval().to(memory_format=torch.channels_last)


def cost_table(names: Sequence[str], frames: Sequence[tuple[int, int]] = (FULL_FRAME, README_FRAME),
               timed: dict | None = None, reference: str = "lle_fused") -> pd.DataFrame:
    """Parameters and GMACs (meta device) of models ``names`` at ``H × W`` raw ``frames`` beside the
    published ones: a DataFrame indexed by model label with ``parameters``, ``M (ours)``,
    ``M (paper)``, per frame ``input <W×H>`` (C×H×W) and ``GMACs <W×H>``, at the paper's and
    README's frames ``published <W×H>`` and ``Δ <W×H> (%)`` (None: not published). ``timed`` (a
    :func:`side_by_side_latency` result at ``frames[0]``) adds ``median s``, ``GMAC/s`` and
    ``time / <reference>``."""
    published = {FULL_FRAME: "gmacs_sony", README_FRAME: "gmacs_2048x4096"}
    rows = []
    for name in names:
        key = "lle" if name.startswith("lle") else name  # the paper has one Lamba & Mitra network
        model = build_model(name, "meta")
        n = count_parameters(model)
        row = {"model": EFFICIENCY_MODELS[name][0], "parameters": n, "M (ours)": n / 1e6,
               "M (paper)": None if name == "lle_fused" else published_value(f"efficiency/{key}/params_m", strict=False)}
        for frame in frames:
            tag, shape = frame_label(frame), input_shape(name, frame)
            row[f"input {tag}"] = "×".join(map(str, shape[1:]))
            row[f"GMACs {tag}"] = value = gmacs(model, shape)
            if frame in published:
                paper = published_value(f"efficiency/{key}/{published[frame]}", strict=False)
                row[f"published {tag}"] = paper
                row[f"Δ {tag} (%)"] = 100 * (value - paper) / paper if paper else None
        if timed:
            row["median s"] = seconds = timed[name]["median_s"]
            row["GMAC/s"] = row[f"GMACs {frame_label(frames[0])}"] / seconds
            row[f"time / {EFFICIENCY_MODELS[reference][1].replace(chr(10), ' ')}"] = \
                seconds / timed[reference]["median_s"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def side_by_side_latency(names: Sequence[str], frame: tuple[int, int], rounds: int = 3, warmup: int = 1,
                         threads: int | None = None, progress: bool = True) -> dict:
    """:func:`latency` of models of :data:`EFFICIENCY_MODELS` at one ``H × W`` raw frame, side by side:
    name → ``{"times_s": [...], "median_s", "min_s", "threads"}``."""
    return latency({n: (build_model(n), input_shape(n, frame)) for n in names}, rounds, warmup, threads, progress)


def speedup(timed: dict, name: str, reference: str = "sid") -> dict:
    """The speed ratio ``reference / name`` of a :func:`latency` result: ``{"per_round": [t_ref /
    t_name], "median": their median (robust to load changes between rounds), "of_minima": min t_ref
    / min t_name}``."""
    ref, own = timed[reference]["times_s"], timed[name]["times_s"]
    per_round = [a / b for a, b in zip(ref, own)]
    return {"per_round": per_round, "median": statistics.median(per_round), "of_minima": min(ref) / min(own)}


def variant_latency(nets: dict, frame: tuple[int, int], rounds: int = 3, warmup: int = 1,
                    threads: int | None = None, progress: bool = True) -> dict:
    """Side-by-side CPU latency of trained networks (their :func:`fast_inference` copies) at one
    ``H × W`` frame (RDB notebook). ``nets``: label → :class:`LLENet`. Returns label → median seconds."""
    timed = {label: (fast_inference(m.cpu()), (1, 1, *frame)) for label, m in nets.items()}
    return {label: r["median_s"] for label, r in latency(timed, rounds, warmup, threads, progress).items()}


def frame_inference(name: str, frame: tuple[int, int], threads: int | None = None) -> None:
    """Build model ``name`` and run it once on a zero ``H × W`` frame (for :func:`peak_memory`)."""
    if threads:
        torch.set_num_threads(threads)
    model = build_model(name)
    with torch.inference_mode():
        model(torch.zeros(input_shape(name, frame)))


def peak_memory_table(names: Sequence[str], frame: tuple[int, int], threads: int | None = None) -> dict:
    """Extra peak resident CPU memory (GB) of one inference at ``frame`` per model, weights
    included, each in a fresh process (:func:`peak_memory`)."""
    return {name: peak_memory(frame_inference, name, tuple(frame), threads) / 1e9 for name in names}
