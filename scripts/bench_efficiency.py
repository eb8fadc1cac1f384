"""Efficiency table of Lamba & Mitra (CVPR 2021, Table 1) on this machine's CPU, without the notebook.

Prints, for the SID U-Net and the Lamba & Mitra network (weight-normalised as trained, and its fast
path: weight norm folded, channels-last): parameters and GMACs at the full Sony frame (4256×2848
Bayer) and at 2048×4096 next to the published figures, the CPU latency at the full frame measured
side by side (one untimed round, then the models timed in turn, round after round, so that a change
in the machine's speed affects all of them) and the speed-up SID / ours. Peak memory (extra resident
memory of one full-frame inference, in a fresh process) is optional.

Usage (from the repository root):

    python scripts/bench_efficiency.py [--threads 2] [--rounds 3] [--memory]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reprolib import efficiency, efficiency_study  # noqa: E402
from reprolib.published import published_value  # noqa: E402

NAMES = ["sid", "lle", "lle_fused"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="intra-op CPU threads (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per model (default 3)")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (slow)")
    args = parser.parse_args(argv)

    frame = efficiency.FULL_FRAME
    costs = efficiency.cost_table(NAMES)
    print(f"torch {torch.__version__}, {args.threads} threads, full frame {frame[1]}×{frame[0]}", flush=True)
    timed = efficiency.side_by_side_latency(NAMES, frame, rounds=args.rounds, warmup=1, threads=args.threads)
    memory = efficiency.peak_memory_table(NAMES, frame, args.threads) if args.memory else None
    rows = efficiency_study.efficiency_rows(costs, timed, memory, frame)

    print()
    print(costs.round(3).to_markdown())
    print()
    print(efficiency_study.efficiency_table(rows, frame).round(3).to_markdown())
    for name in ("lle_fused", "lle"):
        ratio = efficiency.speedup(timed, name)
        print(f"\nCPU speed-up SID / {efficiency.EFFICIENCY_MODELS[name][0]}: {ratio['median']:.1f}× (median of the "
              f"per-round ratios; {ratio['of_minima']:.1f}× from the fastest runs)")
    print(f"paper: {published_value('efficiency/speedup_cpu')}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
