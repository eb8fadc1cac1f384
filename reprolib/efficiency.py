"""Model cost: parameters, multiply-accumulates, CPU latency and peak memory.

Used by the efficiency table of the Lamba & Mitra study (their Table 1: parameters, GMACs and
run time of their network and of the SID U-Net on a full 4256×2848 Sony frame).

Conventions:

* MACs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the
  matrix-multiply-like operators (convolutions, transposed convolutions, matmuls); one MAC is
  two FLOPs. Activations, pooling, pixel (un)shuffle, concatenation and weight normalisation are
  not counted — as in the papers' tables.
* Latency is wall-clock time of ``model(x)`` under :func:`torch.inference_mode` on the CPU with a
  fixed number of intra-op threads, on a zero input (the networks' cost does not depend on
  the values).
* Peak memory is measured in a fresh child process (see :func:`peak_memory`).
"""
from __future__ import annotations

import copy
import multiprocessing
import queue as queue_module
import resource
import statistics
import sys
import time
from typing import Callable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "gmacs", "latency", "peak_memory"]


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (trainable or not).

    For weight-normalised convolutions this counts ``g`` and ``v`` (as the authors' own
    parameter count does), not the derived ``weight``.
    """
    return sum(p.numel() for p in model.parameters())


def gmacs(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Giga multiply-accumulates of one forward pass, counted by ``FlopCounterMode``.

    The model is copied to the ``meta`` device, so no memory is allocated and no arithmetic is
    done: a full 4256×2848 frame is counted in well under a second. If a model cannot run on the
    meta device, it is run for real on a zero input.

    Args:
        model: any module taking one tensor.
        input_shape: shape of that tensor, e.g. ``(1, 1, 2848, 4256)``.

    Returns:
        MACs / 1e9 (FLOPs / 2e9).
    """
    try:
        meta_model = copy.deepcopy(model).to("meta")
        x = torch.zeros(input_shape, device="meta")
        return _count_gmacs(meta_model, x)
    except (NotImplementedError, RuntimeError):
        return _count_gmacs(model, torch.zeros(input_shape))


def _count_gmacs(model: nn.Module, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() / 2e9


def latency(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 5, warmup: int = 1,
            threads: int | None = None) -> dict:
    """CPU wall-clock time of ``model(zeros(input_shape))``.

    Args:
        model: the module, already in the mode to time (normally ``eval()``).
        input_shape: the input tensor's shape.
        repeats: timed calls.
        warmup: untimed calls first (allocator and kernel selection warm-up).
        threads: intra-op threads for the measurement (restored afterwards); ``None`` keeps the
            current setting.

    Returns:
        ``{'median_s', 'min_s', 'times_s', 'threads', 'repeats', 'warmup'}``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be ≥ 1 and warmup ≥ 0")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        used = torch.get_num_threads()
        x = torch.zeros(input_shape)
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "threads": used, "repeats": repeats, "warmup": warmup}


def _proc_status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status (Linux), in bytes; None where unavailable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Resets the process's peak resident set size to the current one (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def _measure_in_child(queue, fn, args, kwargs) -> None:
    try:
        if _reset_peak_rss() and _proc_status_bytes("VmHWM") is not None:
            before = _proc_status_bytes("VmRSS")
            fn(*args, **kwargs)
            queue.put(("ok", _proc_status_bytes("VmHWM") - before))
        else:  # elsewhere: the peak so far (after the imports) is the baseline
            before = _max_rss_bytes()
            fn(*args, **kwargs)
            queue.put(("ok", _max_rss_bytes() - before))
    except BaseException as error:  # report any failure to the parent instead of hanging it
        queue.put(("error", repr(error)))


def peak_memory(fn: Callable, *args, **kwargs) -> int:
    """Peak resident memory that ``fn(*args, **kwargs)`` adds, measured in a fresh process.

    Method: a ``multiprocessing`` *spawn* child (a new interpreter, so nothing the parent has
    allocated or cached counts) imports ``fn`` and unpickles the arguments, resets its peak
    resident set size to the current one (Linux: ``/proc/self/clear_refs``), notes its resident
    set size (``VmRSS``), calls ``fn`` and reads the peak (``VmHWM``); the difference is returned.
    So the figure is the extra resident memory the call needed at its peak, beyond the
    interpreter, the imports and the arguments (model weights built *inside* ``fn`` count).
    Where ``/proc`` is unavailable, the baseline is the child's peak so far (``ru_maxrss``),
    which can under-estimate a call that needs less than the imports did.

    Args:
        fn: a picklable callable (a module-level function or a ``functools.partial`` of one).
        *args, **kwargs: picklable arguments; they are built in the child before the baseline.

    Returns:
        Bytes (≥ 0).

    Raises:
        RuntimeError: if ``fn`` raises in the child or the child dies.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_measure_in_child, args=(queue, fn, args, kwargs))
    child.start()
    try:
        while True:
            try:
                status, value = queue.get(timeout=1.0)
                break
            except queue_module.Empty:
                if not child.is_alive() and queue.empty():  # e.g. killed for lack of memory
                    raise RuntimeError(f"memory measurement child exited with code {child.exitcode}")
    finally:
        child.join()
    if status != "ok":
        raise RuntimeError(f"{getattr(fn, '__name__', fn)!r} failed in the measurement child: {value}")
    return max(int(value), 0)
