"""Training steps per second at the ``full`` crop, with the batches built in the main process (as
before DataLoader workers) and in ``--workers`` worker processes, side by side in one run.

SID (U-Net, batch 1, 512² packed crops) and Lamba & Mitra (batch 8, 512² mosaic crops) on the
full-resolution samples of ``make full-check`` (4256×2848 frames in SID's layout). Also the time to
build one batch alone, which is what the workers take off the training loop.

    python scripts/bench_training_input.py [--steps 6] [--workers 2] [--out DIR]

Timings belong here and in the closing notes, never in test assertions.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import full_check  # noqa: E402

from reprolib import data, losses, train  # noqa: E402
from reprolib.models.lle import LLENet  # noqa: E402
from reprolib.models.sid_unet import SIDUNet  # noqa: E402

SETUPS = {"SID U-Net": (SIDUNet, data.SID_INPUT, 1, losses.l1),
          "Lamba & Mitra": (LLENet, data.LLE_INPUT, 8, losses.get_loss("l1_ms_ssim"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="steps per setting (the first included)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="folder of the samples and the decode cache")
    a = ap.parse_args(argv)
    out = Path(a.out or tempfile.mkdtemp(prefix="bench-input-"))
    root = full_check.sid_sample(out)
    pairs = data.load_splits(root, limit=8)["train"]
    cache = data.DecodedCache(root, folder=out / "decoded")
    cache.ensure(pairs)
    print(f"{len(pairs)} training pairs of 4256×2848, {torch.get_num_threads()} torch threads")
    for name, (network, convention, batch, loss) in SETUPS.items():
        patches = data.SIDTrainingPatches(pairs, cache, 512, seed=0, batch=batch, convention=convention)
        t0 = time.perf_counter()
        for step in range(3):
            patches(step)
        build = (time.perf_counter() - t0) / 3
        speeds = {}
        for workers in (0, a.workers):
            torch.manual_seed(0)
            model = network()
            cfg = train.TrainConfig(steps=a.steps, lr=1e-4, log_every=1, checkpoint_every=a.steps)
            history = train.train(model, patches, lambda m, b: loss(m(b[0]), b[1]), cfg, progress=False,
                                  device="cpu", num_workers=workers)
            speeds[workers] = train.steps_per_second(history)
        print(f"{name}: batch of {batch} built in {1000 * build:.0f} ms; steps/s with the batches built "
              f"in the loop {speeds[0]:.3f}, in {a.workers} workers {speeds[a.workers]:.3f} "
              f"(× {speeds[a.workers] / speeds[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
