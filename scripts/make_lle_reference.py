"""Regenerates tests/data/lle_official_reference.json from the authors' own network code.

The JSON is a small fingerprint (shape, mean, std, channel means, 4×4 block means, a few pixels)
of the output of the official Lamba & Mitra network, with the official pretrained weights, on a
fixed pseudo-random input. ``tests/test_lle.py`` checks that ``LLENet.from_official`` reproduces
it. The official code is not part of this repository (its licence does not allow it): fetch
``network.py`` from MohitLamba94/Restoring-Extremely-Dark-Images-In-Real-Time yourself and pass
its path.

Usage (from the repository root):

    python scripts/make_lle_reference.py --official-network path/to/network.py \
        [--weights ../shared/fixtures/lle/weights] [--out tests/data/lle_official_reference.json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

#: the input: a dark, noise-like mosaic that does not saturate the clamped output
INPUT_RECIPE = {
    "generator": "numpy.random.default_rng",
    "seed": 0,
    "distribution": "uniform",
    "low": 0.0,
    "high": 0.01,
    "amplification": 100.0,
    "shape": [1, 1, 256, 256],
    "dtype": "float32",
    "formula": "(default_rng(seed).uniform(low, high, shape) * amplification).astype(float32)",
}

#: (row, column) positions of the output whose RGB values are recorded
PIXELS = [(0, 0), (0, 255), (255, 0), (255, 255), (128, 128), (31, 97), (200, 17), (77, 190)]


def reference_input(recipe: dict = INPUT_RECIPE) -> torch.Tensor:
    """Builds the ``1×1×256×256`` float32 input mosaic described by ``recipe``."""
    rng = np.random.default_rng(recipe["seed"])
    x = rng.uniform(recipe["low"], recipe["high"], tuple(recipe["shape"])) * recipe["amplification"]
    return torch.from_numpy(x.astype(np.float32))


def fingerprint(rgb: torch.Tensor) -> dict:
    """Summarises a ``1×3×H×W`` output: statistics, 4×4 block means per channel, a few pixels."""
    rgb = rgb.double()
    blocks = torch.nn.functional.adaptive_avg_pool2d(rgb, 4)[0]
    return {
        "shape": list(rgb.shape),
        "mean": rgb.mean().item(),
        "std": rgb.std().item(),
        "channel_means": rgb.mean(dim=(0, 2, 3)).tolist(),
        "block_means_4x4": blocks.tolist(),
        "pixels": [{"row": r, "col": c, "rgb": rgb[0, :, r, c].tolist()} for r, c in PIXELS],
    }


def load_official_net(network_py: Path):
    """Imports ``Net`` from the official ``network.py`` without adding it to the repository."""
    spec = importlib.util.spec_from_file_location("lle_official_network", network_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Net


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-network", type=Path, required=True,
                        help="path to the authors' network.py (defines Net)")
    parser.add_argument("--weights", type=Path, default=ROOT.parent / "shared" / "fixtures" / "lle" / "weights",
                        help="the official pretrained weights (demo_imgs/weights)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "lle_official_reference.json")
    parser.add_argument("--code-source",
                        default="MohitLamba94/Restoring-Extremely-Dark-Images-In-Real-Time : network.py (commit not recorded)",
                        help="where the network.py was taken from: repository : path @commit")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    net = load_official_net(args.official_network)()
    checkpoint = torch.load(args.weights, map_location="cpu", weights_only=True)
    net.load_state_dict(checkpoint["model"], strict=True)
    net.eval()
    x = reference_input()
    with torch.no_grad():
        rgb = net(x)

    # cross-check against this project's implementation, when it is importable
    sys.path.insert(0, str(ROOT))
    from reprolib.models.lle import LLENet

    with torch.no_grad():
        ours = LLENet.from_official(args.weights)(x)
    max_abs_diff = (ours - rgb).abs().max().item()
    print(f"max |LLENet.from_official - official Net| on the reference input: {max_abs_diff:.3e}")

    record = {
        "source": {
            "code": args.code_source,
            "weights": "MohitLamba94/Restoring-Extremely-Dark-Images-In-Real-Time : demo_imgs/weights @4a6722c",
            "how": ("computed by scripts/make_lle_reference.py with the authors' Net (legacy weight norm), "
                    "the official weights loaded with strict=True, eval mode, torch.no_grad, float32 on the CPU, "
                    f"torch {torch.__version__}"),
        },
        "input": INPUT_RECIPE,
        "output": fingerprint(rgb),
        "check_max_abs_diff_ours_vs_official": max_abs_diff,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
