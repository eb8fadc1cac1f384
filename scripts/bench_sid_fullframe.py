"""Full-frame SID inference on the CPU: seconds and peak memory, tiled against untiled.

Writes a synthetic Sony α7S II pair at the real frame size (4256×2848 raw; DNGs with the camera's
Make/Model, black 512, white 16383) into a temporary folder, then runs, each in a fresh child
process (so the peak resident memory is that of the job alone):

* read → pack (R,G,B,G, ×ratio, clip) → tiled inference of the SID U-Net (``reprolib.evaluate.infer_tiled``);
* the same without tiles (the whole 1×4×1424×2128 packed frame at once), unless ``--no-untiled``;

and reports, for each: seconds per stage and peak RSS (``ru_maxrss`` of the child, interpreter and
imports included), then the PSNR of both outputs against the ground truth (the long exposure
rendered by LibRaw as SID does) and the PSNR between the two outputs.

Usage (from the repository root):

    python scripts/bench_sid_fullframe.py [--checkpoint results/sid_shared/none-xxxxxxxxxxxx.pt]
        [--tile 512] [--overlap 64] [--height 2848 --width 4256] [--no-untiled] [--json out.json]

Without ``--checkpoint`` the network keeps its seeded random initialisation: timings and the
tiled/untiled agreement are still meaningful, the PSNR against the ground truth is not.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RATIO = 100.0  # 10 s long / 0.1 s short, SID's brightest group


def write_pair(folder: Path, height: int, width: int, seed: int = 0) -> tuple[Path, Path]:
    """A short / long exposure pair of one synthetic scene at ``height×width`` raw pixels."""
    from reprolib import synth

    sensor = synth.PRESETS["SONY ILCE-7S"]
    rng = np.random.default_rng(seed)
    scene = synth.random_scene(rng, height, width)
    green = synth.mosaic(synth.xyz_to_camera(synth.linear_srgb_to_xyz(synth.srgb_to_linear(scene)), sensor),
                         sensor.cfa)[0::2, 1::2].mean()
    exposure_long = 0.15 / max(green, 1e-3)
    short = synth.write_dng(folder / "Sony/short/10001_00_0.1s.dng",
                            synth.render_raw(scene, sensor, exposure_long / RATIO, 800, rng), sensor,
                            iso=800, exposure_time=0.1)
    long_ = synth.write_dng(folder / "Sony/long/10001_00_10s.dng",
                            synth.render_raw(scene, sensor, exposure_long, 800, rng), sensor,
                            iso=800, exposure_time=10.0)
    return short, long_


def child(args) -> None:
    """One inference job; prints a JSON line with the timings and the peak RSS."""
    import torch

    from reprolib import data, evaluate, raw
    from reprolib.models.sid_unet import SIDUNet

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SIDUNet().eval()
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state.get("model", state))
    times = {}
    t = time.perf_counter()
    frame = raw.read(args.short)
    times["read_s"] = time.perf_counter() - t
    t = time.perf_counter()
    x = torch.from_numpy(data.model_input(frame.mosaic, frame.cfa, RATIO))[None]
    del frame
    times["pack_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if args.mode == "tiled":
        y = evaluate.infer_tiled(model, x, tile=args.tile, overlap=args.overlap)
    else:
        y = evaluate.infer(model, x)
    times["inference_s"] = time.perf_counter() - t
    np.save(args.output, y[0].clamp(0, 1).numpy())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024
    print(json.dumps({"mode": args.mode, "input": list(x.shape), "output": list(y.shape), **times,
                      "threads": torch.get_num_threads(), "peak_rss_gb": rss_bytes / 1e9}))


def run_child(mode: str, args, short: Path, output: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--short", str(short), "--output", str(output),
           "--tile", str(args.tile), "--overlap", str(args.overlap)]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained SID U-Net (train checkpoint or state dict)")
    parser.add_argument("--tile", type=int, default=512, help="tile side, packed pixels")
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap, packed pixels")
    parser.add_argument("--height", type=int, default=2848)
    parser.add_argument("--width", type=int, default=4256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-untiled", action="store_true", help="skip the whole-frame run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("tiled", "untiled"), help=argparse.SUPPRESS)
    parser.add_argument("--short", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import os

    import torch

    from reprolib import data, metrics

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        short, long_ = write_pair(tmp, args.height, args.width)
        print(f"wrote a {args.width}×{args.height} synthetic Sony pair in {time.perf_counter() - t:.1f} s "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        results = {"frame": [args.height, args.width], "tile": args.tile, "overlap": args.overlap,
                   "checkpoint": str(args.checkpoint) if args.checkpoint else None,
                   "load_average_start": os.getloadavg()}
        modes = ["tiled"] + ([] if args.no_untiled else ["untiled"])
        for mode in modes:
            results[mode] = run_child(mode, args, short, tmp / f"{mode}.npy")
            r = results[mode]
            print(f"{mode:8s}: read {r['read_s']:.1f} s, pack {r['pack_s']:.2f} s, inference {r['inference_s']:.1f} s, "
                  f"peak RSS {r['peak_rss_gb']:.2f} GB ({r['threads']} threads; child wall time {r['wall_s']:.1f} s)")
        gt = torch.from_numpy(data.render_ground_truth(long_).transpose(2, 0, 1).astype(np.float32) / 65535)[None]
        outputs = {m: torch.from_numpy(np.load(tmp / f"{m}.npy"))[None] for m in modes}
        for m, y in outputs.items():
            results[m]["psnr_vs_ground_truth"] = metrics.psnr(y, gt).item()
        if len(outputs) == 2:
            a, b = outputs["tiled"], outputs["untiled"]
            results["psnr_tiled_vs_untiled"] = metrics.psnr(a, b).item()
            results["max_abs_diff"] = (a - b).abs().max().item()
            results["psnr_difference_db"] = results["tiled"]["psnr_vs_ground_truth"] - results["untiled"]["psnr_vs_ground_truth"]
        results["load_average_end"] = os.getloadavg()
    for m in modes:
        print(f"{m:8s}: PSNR against the ground truth {results[m]['psnr_vs_ground_truth']:.3f} dB")
    if len(modes) == 2:
        print(f"tiled − untiled: {results['psnr_difference_db']:+.4f} dB; PSNR between the two outputs "
              f"{results['psnr_tiled_vs_untiled']:.1f} dB, max |difference| {results['max_abs_diff']:.2e}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
