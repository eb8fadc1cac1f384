"""Throughput of the project's raw path: read + normalise + pack, on a full SID-sized frame.

Writes one synthetic 4256×2848 Sony α7S II DNG (the SID frame size) and times
``reprolib.raw.read`` followed by ``reprolib.raw.pack`` (SID's R,G,B,G order).
Prints megapixels per second (median of ``--repeats`` runs). Target on a 2-core machine: ≥ 40 MP/s.

    python scripts/bench_raw_read.py [--repeats 7]
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from reprolib import raw, synth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    sensor = synth.PRESETS["SONY ILCE-7S"]
    h, w = 2848, 4256
    rng = np.random.default_rng(0)
    scene = np.clip(rng.uniform(0, 1, (h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1), 0, 1)
    bayer = synth.render_raw(scene, sensor, 0.2, 400, rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = synth.write_dng(Path(tmp) / "frame.dng", bayer, sensor, iso=400, exposure_time=0.1)
        times = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            frame = raw.read(path)
            packed = raw.pack(frame.mosaic, frame.cfa, "RGBG")
            times.append(time.perf_counter() - t0)
        times = times[1:]  # the first run warms the page cache and imports
    mp = h * w / 1e6
    med = statistics.median(times)
    print(f"frame {w}x{h} ({mp:.1f} MP), packed {tuple(packed.shape)} {packed.dtype}")
    print(f"read+normalise+pack: median {med * 1000:.0f} ms over {args.repeats} runs "
          f"(min {min(times) * 1000:.0f} ms) -> {mp / med:.1f} MP/s")


if __name__ == "__main__":
    main()
