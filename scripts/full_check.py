"""`make full-check`: every study notebook at ``profile='full'`` on small full-resolution samples
in the real data sets' layouts and file names, with caps on steps and images.

The samples are the real SID list files and RAW-NOD annotation files (from ``../shared/fixtures``
when present, else downloaded by ``python -m reprolib data prepare``), with every raw file they
name present as a symbolic link to one of a few synthetic full-resolution raws (DNG content under
the real ``.ARW`` / ``.NEF`` names: LibRaw reads a file by its content). Zurich gets its numbered
448×448 PNG / JPG pairs the same way. Symbolic links are what clusters with read-only data sets
use, so the check also runs the readers through them.

Each notebook runs with ``-p profile full -p data_root <sample>`` and caps (``max_steps``,
``max_images``) that shorten nothing else, so the run is labelled ``debug`` in its record; the
check then asserts that the scoreboard, the claims table and the README table show no ``full``
number from these runs. The SID and BatchNorm notebooks start together and train the same shared
network: one trains it, the other waits for the checkpoint lock and reuses it.

Usage::

    python scripts/full_check.py [--out DIR] [--device cpu] [--only sid,genisp] [--keep]

Prints the wall time per study. Nothing is downloaded when ``../shared/fixtures`` is present.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reprolib import data, report, study, synth  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures"
SID_SIZE, SONY_SIZE, NIKON_SIZE, ZURICH_SIZE = (2848, 4256), (3648, 5472), (2624, 3936), (448, 448)

#: notebook → the parameters of its capped full run (besides profile, data_root, device)
RUNS = {
    "sid": {"max_steps": 2, "max_images": 1},
    "sid_batchnorm": {"max_steps": 2, "max_images": 1},
    "lle_rdb": {"max_steps": 2, "max_images": 1, "latency_rounds": 1},
    "lle_loss": {"max_steps": 2, "max_images": 1},
    "efficiency": {"rounds": 1, "warmup": 0},
    "genisp": {"max_steps": 2, "max_images": 4, "batch_size": 4},
    # the ImageNet VGG-19 is a download: its randomly initialised twin takes the same path to the device
    "pynet": {"max_steps": 1, "max_images": 2, "content_loss": "vgg19-random"},
}
DATA = {"sid": "sid", "sid_batchnorm": "sid", "lle_rdb": "sid", "lle_loss": "sid", "efficiency": None,
        "genisp": "raw-nod", "pynet": "zurich"}


def _link_all(target: Path, links: list[Path]) -> None:
    for link in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(target)


def _real_files(entry: str, fixtures: Path, names: list[str], out: Path) -> None:
    """Copy the real files ``names`` into ``out`` from ``fixtures``, or download ``entry`` there."""
    for name in names:
        src, dst = fixtures / name, out / name
        if dst.is_file():
            continue
        if not src.is_file():
            data.prepare(entry, out, download=True)
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def sid_sample(out: Path) -> Path:
    """SID's Sony layout: the three real list files and a link for each of the 2,697 short and 231
    long exposures they name, to two synthetic 4256×2848 α7S II frames (0.1 s and 10 s)."""
    root = out / "sid"
    _real_files("sid-lists", FIXTURES / "sid", [f"Sony_{s}_list.txt" for s in ("train", "val", "test")], root)
    raws = out / "raws"
    if not (raws / "sid_long.dng").is_file():
        sensor, rng = synth.preset("SONY ILCE-7S"), np.random.default_rng(0)
        scene = synth.random_scene(rng, *SID_SIZE)
        for name, exposure in (("sid_long.dng", 0.2), ("sid_short.dng", 0.2 / 100)):
            synth.write_dng(raws / name, synth.render_raw(scene, sensor, exposure, 800, rng), sensor, iso=800)
    shorts, longs = set(), set()
    for split in ("train", "val", "test"):
        for row in (root / f"Sony_{split}_list.txt").read_text().split("\n"):
            if row.strip():
                short, long, *_ = row.split()
                shorts.add(short)
                longs.add(long)
    _link_all((raws / "sid_short.dng").resolve(), [root / s for s in sorted(shorts)])
    _link_all((raws / "sid_long.dng").resolve(), [root / s for s in sorted(longs)])
    return root


def raw_nod_sample(out: Path) -> Path:
    """RAW-NOD's layout: the six real ``raw_*`` annotation files and a link for each image they
    name, to one synthetic RX100 VII frame (5472×3648) and one D750 frame (3936×2624)."""
    root = out / "raw-nod"
    jsons = [p["path"] for p in data.entry("raw-nod")["layout"] if "path" in p]
    _real_files("raw-nod-annotations", FIXTURES / "raw-nod", jsons, root)
    raws = out / "raws"
    for camera, name, (h, w) in (("SONY DSC-RX100M7", "sony.dng", SONY_SIZE),
                                  ("NIKON D750", "nikon.dng", NIKON_SIZE)):
        if not (raws / name).is_file():
            sensor, rng = synth.preset(camera), np.random.default_rng(1)
            scene = synth.random_scene(rng, h, w)
            synth.write_dng(raws / name, synth.render_raw(scene, sensor, 0.02, 3200, rng), sensor, iso=3200)
    for json_path in jsons:
        camera = "Sony" if "/Sony/" in json_path else "Nikon"
        names = [im["file_name"] for im in json.loads((root / json_path).read_text())["images"]]
        _link_all((raws / f"{camera.lower()}.dng").resolve(), [root / camera / n for n in names])
    return root


def zurich_sample(out: Path) -> Path:
    """Zurich RAW-to-RGB's layout: 46,839 training and 1,204 test pairs (``<i>.png`` / ``<i>.jpg``),
    each a link to one synthetic 448×448 pair, and one full-resolution P20 raw."""
    root = out / "zurich"
    pair = out / "raws" / "zurich"
    if not (pair / "test" / "canon" / "0.jpg").is_file():
        synth.write_zurich_dataset(pair, n_train=1, n_test=1, train_size=ZURICH_SIZE[0],
                                   test_size=ZURICH_SIZE[0])
    counts = {e["glob"].split("/")[0]: e["min_count"] for e in data.entry("zurich-raw-to-rgb")["layout"]}
    for split, n in counts.items():
        for folder, ext in (("huawei_raw", "png"), ("canon", "jpg")):
            src = (pair / "test" / folder / f"0.{ext}").resolve()
            _link_all(src, [root / split / folder / f"{i}.{ext}" for i in range(n)])
    return root


def stand_in_weights(out: Path) -> dict[str, str]:
    """Randomly initialised files in the layouts of the weights that ``full`` downloads (the COCO
    RetinaNet, ImageNet VGG-19): they exercise the loading path without a download."""
    folder = out / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    retinanet = folder / "retinanet_resnet50_fpn_v2_coco.pth"
    if not retinanet.is_file():
        torch.manual_seed(0)
        model = torchvision.models.detection.retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None)
        torch.save(model.state_dict(), retinanet)
    return {"detector_weights": str(retinanet)}


def run_notebook(name: str, params: dict, out: Path, env: dict) -> subprocess.Popen:
    args = [sys.executable, "-m", "papermill", str(REPO / "notebooks" / f"{name}.ipynb"),
            str(out / "executed" / f"{name}.ipynb"), "-k", "python3", "--log-level", "WARNING"]
    for k, v in params.items():
        args += ["-y", f"{k}: {json.dumps(v)}"]
    (out / "executed").mkdir(parents=True, exist_ok=True)
    log = open(out / "executed" / f"{name}.log", "w")
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="work folder (default: a temporary folder)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="comma-separated notebooks (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args(argv)
    out = Path(a.out or tempfile.mkdtemp(prefix="full-check-")).resolve()
    names = [n for n in (a.only.split(",") if a.only else RUNS) if n]
    t0 = time.time()
    roots = {"sid": sid_sample, "raw-nod": raw_nod_sample, "zurich": zurich_sample}
    needed = {DATA[n] for n in names} - {None}
    samples = {k: str(roots[k](out)) for k in sorted(needed)}
    weights = stand_in_weights(out) if "genisp" in names else {}
    print(f"samples written in {time.time() - t0:.0f} s: {', '.join(sorted(samples))}", flush=True)
    env = {**os.environ, "REPROLIB_RESULTS": str(out / "results"), "REPROLIB_DATA": str(out / "cache")}
    times, failed = {}, []
    # sid and sid_batchnorm start together: they share the norm='none' network's checkpoint
    batches = [[n for n in names if n in ("sid", "sid_batchnorm")]] + [[n] for n in names
                                                                       if n not in ("sid", "sid_batchnorm")]
    for batch in [b for b in batches if b]:
        started = time.time()
        procs = {}
        for n in batch:
            params = {"profile": "full", "device": a.device, **RUNS[n]}
            if DATA[n]:
                params["data_root"] = samples[DATA[n]]
            if n == "genisp":
                params.update(weights)
            procs[n] = run_notebook(n, params, out, env)
        for n, p in procs.items():
            rc = p.wait()
            times[n] = time.time() - started
            print(f"{n:14s} {'ok' if rc == 0 else 'FAILED'} in {times[n]:.0f} s", flush=True)
            if rc:
                failed.append(n)
                print((out / "executed" / f"{n}.log").read_text()[-3000:])
    records = study.load_records(out / "results")
    problems = [f"{r['notebook']}: variant {r.get('variant')!r}, expected 'debug'"
                for r in records if r.get("variant") != "debug"]
    board = report.scoreboard(records)
    full_cols = [c for c in board.columns if "full" in str(c) and "ours" in str(c)]
    if full_cols and board[full_cols].notna().to_numpy().any():
        problems.append(f"the scoreboard shows capped runs as results: {full_cols}")
    if "(full)" in report.readme_summary(records):
        problems.append("the README table shows a capped run as a full result")
    claims = report.claims_table(records)
    if "verdict (full)" in claims and (claims["verdict (full)"] != "not run").any():
        problems.append("the claims table shows a verdict from a capped run")
    for p in problems:
        print("PROBLEM:", p)
    print(f"full-check: {len(names) - len(failed)}/{len(names)} notebooks ran, {len(problems)} problems, "
          f"{time.time() - t0:.0f} s in all ({out})")
    if not a.keep and not a.out and not failed and not problems:
        shutil.rmtree(out, ignore_errors=True)
    return 1 if failed or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
