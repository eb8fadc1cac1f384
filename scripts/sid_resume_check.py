"""Kill a SID training part-way, run it again, and compare it with an uninterrupted run.

1. ``papermill notebooks/sid.ipynb`` (profile ``mini`` unless ``--profile``) with its results in
   ``<work>/resumed``; as soon as the run's checkpoint shows training part-way (at least
   ``--kill-after-step`` steps, before the end), the papermill process and its kernel are killed
   (SIGKILL: nothing gets to clean up, like a crash or a ``timeout -s KILL``).
2. The same command again: it resumes from the checkpoint in the run folder and finishes.
3. A fresh, uninterrupted run with its results in ``<work>/fresh`` (``REPROLIB_RESULTS``).
4. Prints both final test PSNRs (from the run records) and whether the two runs ended with
   bit-identical weights.

Usage (from the repository root):

    python scripts/sid_resume_check.py [--work runs/sid-resume] [--profile mini] [--kill-after-step 50]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def papermill(out: Path, results: Path, profile: str) -> subprocess.Popen:
    env = {**os.environ, "REPROLIB_RESULTS": str(results)}
    cmd = [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "sid.ipynb"), str(out),
           "-p", "profile", profile, "--cwd", str(REPO / "notebooks"), "--no-progress-bar"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def checkpoint_step(results: Path) -> int | None:
    """The step of the run's checkpoint, or None when there is none yet."""
    import torch

    found = sorted(results.glob("sid_shared/none-*.pt"))
    if not found:
        return None
    try:
        state = torch.load(found[0], map_location="cpu", weights_only=False)
    except Exception:  # being replaced at this instant
        return None
    return int(state["step"])


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL papermill and every process it started (its kernel), by process id."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


def record(results: Path) -> dict:
    found = sorted(results.glob("sid/*/record.json"))
    if not found:
        raise SystemExit(f"no run record under {results}")
    return json.loads(found[0].read_text())


def final_psnr(rec: dict) -> float:
    return next(m["value"] for m in rec["metrics"] if m["key"] == "sid/sony/psnr_float")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for the two results folders")
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--kill-after-step", type=int, default=50,
                        help="kill once the checkpoint holds at least this many steps")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sid-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    resumed, fresh = work / "resumed", work / "fresh"
    print(f"work folder: {work} (load average {os.getloadavg()[0]:.1f})")

    t0 = time.perf_counter()
    proc = papermill(work / "killed.ipynb", resumed, args.profile)
    killed_at = None
    while proc.poll() is None:
        time.sleep(2)
        step = checkpoint_step(resumed)
        if step is not None and step >= args.kill_after_step:
            kill_tree(proc)
            killed_at = step
            break
    if killed_at is None:
        raise SystemExit(f"the run ended (exit {proc.returncode}) before it could be killed part-way:\n"
                         f"{proc.stderr.read()[-2000:]}")
    print(f"1. killed after {time.perf_counter() - t0:.0f} s; checkpoint at step {killed_at}")

    for label, results, out in (("2. resumed", resumed, "resumed.ipynb"), ("3. fresh", fresh, "fresh.ipynb")):
        t = time.perf_counter()
        proc = papermill(work / out, results, args.profile)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{label} run failed ({proc.returncode}):\n{err[-3000:]}")
        rec = record(results)
        print(f"{label} run: {time.perf_counter() - t:.0f} s, resumed from step "
              f"{rec['extra']['resumed_from_step']}, final test PSNR {final_psnr(rec):.4f} dB "
              f"(8-bit {next(m['value'] for m in rec['metrics'] if m['key'] == 'sid/sony/psnr'):.4f})")

    import torch

    a = torch.load(next(resumed.glob("sid_shared/none-*.pt")), map_location="cpu", weights_only=False)["model"]
    b = torch.load(next(fresh.glob("sid_shared/none-*.pt")), map_location="cpu", weights_only=False)["model"]
    identical = all(torch.equal(a[k], b[k]) for k in a)
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    p_resumed, p_fresh = final_psnr(record(resumed)), final_psnr(record(fresh))
    print(f"final PSNR: interrupted + resumed {p_resumed:.4f} dB, uninterrupted {p_fresh:.4f} dB "
          f"(difference {p_resumed - p_fresh:+.4f} dB); weights identical: {identical} (max |Δ| {diff:.2e})")


if __name__ == "__main__":
    main()
