"""Efficiency table of Lamba & Mitra (CVPR 2021, Table 1) on this machine's CPU.

Prints, for the Lamba & Mitra network (weight-normalised as trained, and with weight norm folded
into the conv weights) and the SID U-Net: parameters, GMACs at the full Sony frame (4256×2848
Bayer) and at 2048×4096 next to the published figures, and the CPU latency at the full frame.
Latencies are measured side by side in one run: after one untimed call per model, the models are
timed in turn, round after round, so that a change in the machine's speed affects all of them.
Peak memory (extra resident memory of one full-frame inference, in a fresh process) is optional.

Usage (from the repository root):

    python scripts/bench_efficiency.py [--threads 2] [--rounds 3] [--memory]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reprolib.efficiency import count_parameters, gmacs, latency, peak_memory  # noqa: E402
from reprolib.models.lle import LLENet  # noqa: E402
from reprolib.models.sid_unet import SIDUNet  # noqa: E402
from reprolib.report import published_value  # noqa: E402

FULL_FRAME = (2848, 4256)  # Sony α7S II raw, H × W
README_FRAME = (2048, 4096)


def input_shape(name: str, hw: tuple[int, int]) -> tuple[int, ...]:
    """LLENet takes the 1-channel mosaic; the SID U-Net the 4-channel packing at half size."""
    h, w = hw
    return (1, 4, h // 2, w // 2) if name == "sid" else (1, 1, h, w)


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "sid":
        return SIDUNet().eval()
    model = LLENet().eval()
    return model.fused() if name == "lle_fused" else model


def full_frame_inference(name: str) -> None:
    """One full-frame inference (picklable, for the memory-measuring child process)."""
    model = build(name)
    with torch.inference_mode():
        model(torch.zeros(input_shape(name, FULL_FRAME)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="intra-op CPU threads (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per model (default 3)")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (slow)")
    args = parser.parse_args(argv)

    names = {"lle": "Lamba & Mitra (weight norm)", "lle_fused": "Lamba & Mitra (fused)", "sid": "SID U-Net"}
    published = {
        "lle": ("efficiency/lle/gmacs_sony", "efficiency/lle/gmacs_2048x4096", "efficiency/lle/cpu_s"),
        "sid": ("efficiency/sid/gmacs_sony", "efficiency/sid/gmacs_2048x4096", "efficiency/sid/cpu_s"),
    }
    published["lle_fused"] = published["lle"]
    models = {name: build(name) for name in names}

    rows = {}
    for name, model in models.items():
        rows[name] = {
            "params": count_parameters(model),
            "gmacs_full": gmacs(model, input_shape(name, FULL_FRAME)),
            "gmacs_readme": gmacs(model, input_shape(name, README_FRAME)),
            "times": [],
        }

    print(f"torch {torch.__version__}, {args.threads} threads, full frame {FULL_FRAME[1]}×{FULL_FRAME[0]}", flush=True)
    for name, model in models.items():  # untimed warm-up call
        latency(model, input_shape(name, FULL_FRAME), repeats=1, warmup=0, threads=args.threads)
    for round_ in range(args.rounds):
        for name, model in models.items():
            result = latency(model, input_shape(name, FULL_FRAME), repeats=1, warmup=0, threads=args.threads)
            rows[name]["times"].append(result["min_s"])
            print(f"  round {round_ + 1}: {names[name]}: {result['min_s']:.2f} s", flush=True)
    if args.memory:
        for name in names:
            rows[name]["peak_gb"] = peak_memory(full_frame_inference, name) / 1e9

    header = (f"| model | parameters | GMACs {FULL_FRAME[1]}×{FULL_FRAME[0]} (paper) | "
              f"GMACs {README_FRAME[1]}×{README_FRAME[0]} (README) | CPU s, median (min) (paper) |")
    if args.memory:
        header += " peak memory GB |"
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, row in rows.items():
        key_full, key_readme, key_cpu = published[name]
        line = (f"| {names[name]} | {row['params']:,} "
                f"| {row['gmacs_full']:.2f} ({published_value(key_full)}) "
                f"| {row['gmacs_readme']:.2f} ({published_value(key_readme)}) "
                f"| {statistics.median(row['times']):.2f} ({min(row['times']):.2f}) ({published_value(key_cpu)}) |")
        if args.memory:
            line += f" {row['peak_gb']:.2f} |"
        print(line)
    ratio = statistics.median(rows["sid"]["times"]) / statistics.median(rows["lle_fused"]["times"])
    print(f"\nCPU speed-up SID / Lamba & Mitra (fused): {ratio:.1f}× (paper: {published_value('efficiency/speedup_cpu')}×)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
