"""The Lamba & Mitra study: "Restoring Extremely Dark Images in Real Time" (CVPR 2021).

Used by three notebooks: ``notebooks/lle_rdb.ipynb`` (RDB vs RDB* and the number of blocks),
``notebooks/lle_loss.ipynb`` (the loss ablation) and ``notebooks/efficiency.ipynb`` (the
efficiency rows of the paper's Table 1: parameters, GMACs, CPU time and memory of their network
next to the SID U-Net).

Data: the SID pipeline of :mod:`reprolib.sid_study` (decoded cache, list files, burst-``00``
selection, Bayer-preserving crops and flips, whole-image evaluation), with this network's own
conventions, as in the official code (MohitLamba94/Restoring-Extremely-Dark-Images-In-Real-Time,
``train_test_ours/common_classes.py``):

* input: the **unpacked** mosaic ``B×1×H×W`` (the network packs it itself, R, G, G, B), black-
  subtracted and divided by ``white − black``, multiplied by the amplification and **not
  clipped** afterwards;
* amplification = the **exposure ratio** ``t_long / t_short``, **without SID's cap at 300**: the
  official loader multiplies by the ground-truth amplification as it is (only its estimated
  amplification is clipped to ``[1, 300]``). The authors' own training log
  (``train_amplification.txt``) lists one short exposure per scene with ratio 100 for every 10 s
  ground truth and 300 for every 30 s one — the 0.1 s frames — so the cap never mattered to them.
  We keep SID's selection (every burst-``00`` short exposure: ×100, ×250, ×300), and the 0.033 s
  frames of 10 s scenes are amplified by 303, not 300;
* sizes multiples of 32 (the network's 1/32 branch): whole images are padded by reflection
  (keeps the CFA phase) and cropped back — the official test code crops the image down to a
  multiple of 32 instead; training crops are multiples of 32 and start on even offsets, so every
  crop has the RGGB phase the network assumes;
* ground truth: the long exposure through LibRaw, exactly as SID (and the official code) render it.

Training follows the official loop (Adam, batch 8, 512×512 mosaic crops, step schedule ×0.1,
loss ``L1 + 0.2·(1 − MS-SSIM)``) with SID's sampling of scenes and ratios. Trained checkpoints
are shared between the notebooks: a network trained with the same configuration (variant, loss,
schedule, crops, seed, data) is trained once and reused (:func:`shared_checkpoint`).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import data, losses, metrics, raw, report, sid_study, study, train
from .models.lle import SIZE_MULTIPLE, LLENet

__all__ = [
    "AMPLIFICATION_CAP", "SIZE_MULTIPLE", "SMOKE_DATA", "VARIANTS", "DEFAULT_VARIANT", "LOSS_LABELS",
    "FULL_FRAME", "README_FRAME", "EFFICIENCY_MODELS",
    "parse_names", "parse_frames", "variant_label", "LLEData", "prepare_dataset", "load_data",
    "images", "training_patches", "validation_pairs", "train_config", "shared_checkpoint", "train_variant",
    "evaluate", "evaluate_conventional", "find_official_weights", "official_model", "variant_costs",
    "ablation_table", "plot_curves", "display_mosaic", "crop_grid",
    "input_shape", "build_model", "fast_inference", "parameter_table", "gmacs_table", "readme_scaling",
    "side_by_side_latency", "speedup", "variant_latency", "frame_inference", "peak_memory_table",
    "efficiency_table", "efficiency_figure", "efficiency_rows", "published_rows",
    "rdb_findings", "loss_findings", "efficiency_findings",
    "PARAMETERS_RDB", "PARAMETERS_LOSS", "PARAMETERS_EFFICIENCY",
]

#: the official code amplifies by the ground-truth exposure ratio without a cap (SID caps at 300)
AMPLIFICATION_CAP = None

#: the synthetic set of the smoke profile. Larger than SID's smoke set (96×128) because the
#: MS-SSIM loss at 5 scales needs crops of at least 176 px and a crop needs one spare pixel.
SMOKE_DATA = {"n_train": 2, "n_test": 1, "n_val": 1, "height": 224, "width": 256}

#: the architectural variants of the RDB ablation: name → ``LLENet(block, n_blocks)`` arguments
VARIANTS = {
    "rdb_x3": ("rdb", 3),
    "rdb_star_x2": ("rdb_star", 2),
    "rdb_star_x3": ("rdb_star", 3),
    "rdb_star_x4": ("rdb_star", 4),
}
#: the paper's network
DEFAULT_VARIANT = "rdb_star_x3"

#: the losses of the loss ablation (names of :func:`reprolib.losses.get_loss`) and their labels
LOSS_LABELS = {
    "l1": "L1",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "l1_ms_ssim": "L1 + 0.2·MS-SSIM (official code)",
    "l1_ms_ssim_paper": "0.8·L1 + 0.2·MS-SSIM (paper, as quoted)",
}

#: the full SID Sony frame (H × W raw pixels) of the paper's Table 1, and the README's input
FULL_FRAME = (2848, 4256)
README_FRAME = (2048, 4096)


# ------------------------------------------------------------------------------------------------
# Small parsers for string parameters (papermill passes them as plain strings)
# ------------------------------------------------------------------------------------------------

def parse_names(value: str) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]`` (empty items dropped).

    Used by the RDB and loss notebooks (``variants``, ``losses``) and the efficiency notebook.
    """
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_frames(value: str) -> list[tuple[int, int]]:
    """``"2848x4256, 2048x4096"`` → ``[(2848, 4256), (2048, 4096)]`` (H × W raw pixels).

    Used by the RDB notebook (latency frame) and the efficiency notebook.

    Raises:
        ValueError: an item that is not ``<H>x<W>`` with even positive integers.
    """
    frames = []
    for item in parse_names(value):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"frame {item!r} is not <height>x<width>, e.g. 2848x4256") from None
        if h <= 0 or w <= 0 or h % 2 or w % 2:
            raise ValueError(f"frame {item!r}: height and width must be even and positive (a Bayer frame)")
        frames.append((h, w))
    if not frames:
        raise ValueError("no frame given")
    return frames


def variant_label(name: str) -> str:
    """``'rdb_star_x3'`` → ``'RDB* ×3'`` (RDB and loss notebooks)."""
    block, n = VARIANTS[name]
    return f"{'RDB*' if block == 'rdb_star' else 'RDB'} ×{n}"


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

@dataclass
class LLEData:
    """A SID-layout data set ready for this study (RDB and loss notebooks).

    Attributes:
        root: the data root. name: the data set's name. synthetic: generated by ``reprolib.synth``?
        splits: ``{"train", "val", "test"}`` → :class:`reprolib.data.SIDPair` lists.
        cache: the :class:`reprolib.sid_study.DecodedCache` of the root (already decoded).
        fingerprint: :func:`reprolib.data.fingerprint` of the root.
    """

    root: Path
    name: str
    synthetic: bool
    splits: dict
    cache: sid_study.DecodedCache
    fingerprint: str

    def record(self) -> dict:
        """The ``dataset`` entry of a run record."""
        return {"name": self.name, "fingerprint": self.fingerprint, "root": str(self.root),
                "synthetic": self.synthetic}

    @property
    def label(self) -> str:
        return f"{self.name}{' (synthetic)' if self.synthetic else ''}"


def prepare_dataset(profile: str, data_root: str = "") -> tuple[Path, str, bool]:
    """The data root of a profile: ``(root, name, synthetic?)`` (RDB and loss notebooks).

    As :func:`reprolib.sid_study.prepare_dataset`, except that the smoke profile generates
    :data:`SMOKE_DATA` (images large enough for 192-px crops and the MS-SSIM loss).
    """
    if profile == "smoke" and not data_root:
        return data.prepare("sid-sony-mini", params=SMOKE_DATA), "sid-sony-mini", True
    return sid_study.prepare_dataset(profile, data_root)


def load_data(P: dict, progress: bool = True) -> LLEData:
    """Prepare, split and decode the data set of a resolved parameter set (RDB and loss notebooks).

    Every raw file of the three splits is decoded once into the on-disk cache of the SID pipeline.
    """
    root, name, synthetic = prepare_dataset(P["profile"], P["data_root"])
    splits = sid_study.load_splits(root, P["burst00"], P["exclude_misaligned"])
    cache = sid_study.DecodedCache(root)
    for split, pairs in splits.items():
        cache.ensure(pairs, progress=progress, desc=f"decode {split}")
    return LLEData(root, name, synthetic, splits, cache, data.fingerprint(root))


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

def training_patches(pairs: Sequence[data.SIDPair], cache: sid_study.DecodedCache, P: dict
                     ) -> sid_study.SIDTrainingPatches:
    """Training batches with this network's conventions (RDB and loss notebooks).

    Returns a ``batch_fn`` for :func:`reprolib.train.train`: step → ``(x, y)`` with ``x``
    float32 ``B×1×patch×patch`` (the RGGB-phase mosaic, amplified by the exposure ratio, not
    clipped: values in ``[0, ratio]``) and ``y`` float32 ``B×3×patch×patch`` in ``[0, 1]``.
    """
    return sid_study.SIDTrainingPatches(pairs, cache, P["patch"], P["seed"], batch=P["batch"],
                                        representation="mosaic", clip=False, cap=AMPLIFICATION_CAP,
                                        device=P["device"])


def train_config(P: dict) -> train.TrainConfig:
    """The optimisation settings, in steps (RDB and loss notebooks).

    Official: 1,000,000 iterations, Adam 1e-4, ×0.1 at 500,000 (the official loop never lets the
    rate fall below 1e-5), no gradient clipping. The mini profile clips the gradient norm at 0.1
    (``grad_clip``): at its twenty-times higher rate, a few early steps otherwise push most outputs
    out of ``[0, 1]``, where the network's clamp passes no gradient (see :data:`PARAMETERS_RDB`).
    """
    milestones = (P["lr_drop"],) if 0 < P["lr_drop"] < P["steps"] else ()
    log_every = max(1, min(100, P["steps"] // 20))
    return train.TrainConfig(steps=P["steps"], lr=P["lr"], milestones=milestones, gamma=0.1,
                             grad_clip=P["grad_clip"] or None, eval_every=P["eval_every"], log_every=log_every,
                             checkpoint_every=max(log_every, min(1000, P["steps"] // 4 or 1)))


def _training_key(variant: str, loss: str, P: dict, data_fingerprint: str) -> dict:
    """Everything that changes the trained weights or the logged curves."""
    cfg = train_config(P)
    return {"variant": VARIANTS[variant], "loss": loss, "patch": P["patch"], "batch": P["batch"],
            "seed": P["seed"], "cfg": repr(cfg), "data": data_fingerprint, "burst00": P["burst00"],
            "cap": AMPLIFICATION_CAP, "device": str(torch.device(P["device"]).type)}


def shared_checkpoint(variant: str, loss: str, P: dict, data_fingerprint: str) -> tuple[Path, str]:
    """The checkpoint file of a training configuration, shared by the RDB and loss notebooks.

    ``<results>/lle_shared/<variant>-<loss>-<hash>.pt`` (:func:`reprolib.study.shared_checkpoint`),
    the hash taken over the configuration (variant, loss, steps and schedule, crop, batch, seed,
    data fingerprint, …): the paper's network trained with the official loss is the same run in
    both ablations and is trained once; any changed setting gives another file.

    Returns:
        ``(path, config key)`` — pass the key to :func:`reprolib.train.train` as ``config_key``.
    """
    return study.shared_checkpoint("lle_shared", f"{variant}-{loss}", _training_key(variant, loss, P, data_fingerprint))


def validation_pairs(pairs: Sequence[data.SIDPair]) -> list[data.SIDPair]:
    """One pair per scene, the exposure ratios taken in turn (RDB and loss notebooks).

    The validation curve is logged during training: one short exposure per scene keeps it cheap,
    and cycling through each scene's ratios keeps every ratio in it.
    """
    by_scene: dict[int, list] = {}
    for p in pairs:
        by_scene.setdefault(p.scene, []).append(p)
    return [sorted(group, key=lambda p: p.ratio)[i % len(group)]
            for i, (_, group) in enumerate(sorted(by_scene.items()))]


def train_variant(variant: str, loss: str, P: dict, dataset: LLEData, desc: str | None = None
                  ) -> tuple[LLENet, train.History]:
    """Build, train (or resume, or reload) one network (RDB and loss notebooks).

    The weights are initialised from ``seed`` (the same initial weights for every loss), the
    batches come from :func:`training_patches`, the validation PSNR (float, whole images of
    :func:`validation_pairs`) is logged every ``eval_every`` steps. The checkpoint is
    :func:`shared_checkpoint`.

    Returns:
        ``(model in eval mode on P['device'], History)``.
    """
    block, n_blocks = VARIANTS[variant]
    train.seed_everything(P["seed"])
    model = LLENet(block, n_blocks).to(P["device"])
    loss_fn = losses.get_loss(loss)
    val = validation_pairs(dataset.splits["val"] or dataset.splits["test"])

    def validate(m):
        df = evaluate(m, val, dataset.cache, tile=P["tile"], progress=False)
        return {"val_psnr": float(df["psnr"].mean())}

    checkpoint, key = shared_checkpoint(variant, loss, P, dataset.fingerprint)
    history = train.train(model, training_patches(dataset.splits["train"], dataset.cache, P),
                          lambda m, b: loss_fn(m(b[0]), b[1]), train_config(P), checkpoint=checkpoint,
                          evaluate_fn=validate, desc=desc or f"{variant_label(variant)}, {loss}",
                          config_key=key)
    return model, history


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------

def images(pairs: Sequence[data.SIDPair], cache: sid_study.DecodedCache) -> sid_study.SIDImages:
    """Whole images with this network's conventions (RDB and loss notebooks).

    Item ``i``: ``(pair, x, y)`` with ``x`` float32 ``1×1×H×W`` (the mosaic times the exposure ratio,
    not clipped: values in ``[0, ratio]``) and ``y`` float32 ``1×3×H×W`` in ``[0, 1]``.
    """
    return sid_study.SIDImages(pairs, cache, representation="mosaic", clip=False, cap=AMPLIFICATION_CAP)


def evaluate(model: torch.nn.Module, pairs: Sequence[data.SIDPair], cache: sid_study.DecodedCache,
             tile: int | None = None, progress: bool = True, desc: str = "evaluate"):
    """Whole test images through the network, PSNR / SSIM per image (RDB and loss notebooks).

    :func:`reprolib.sid_study.evaluate` with this network's input: the mosaic amplified by the
    exposure ratio, not clipped, padded to a multiple of 32 (tiles of ``tile`` mosaic pixels when
    given). Returns its per-image DataFrame.
    """
    return sid_study.evaluate(model, pairs, cache, tile=tile, multiple=SIZE_MULTIPLE, representation="mosaic",
                              clip=False, cap=AMPLIFICATION_CAP, progress=progress, desc=desc)


def evaluate_conventional(pairs: Sequence[data.SIDPair], cache: sid_study.DecodedCache, progress: bool = True):
    """The traditional-pipeline baseline of the SID study on the same pairs (RDB and loss notebooks).

    The short exposure amplified by SID's ``min(ratio, 300)`` and rendered by LibRaw
    (:func:`reprolib.sid_study.evaluate_baseline`), scored by the same metric code.
    """
    return sid_study.evaluate_baseline(pairs, cache, progress=progress)


def find_official_weights(path: str = "", download: bool = False) -> tuple[Path | None, str]:
    """Where the authors' weights are, or why they are not available (RDB and loss notebooks).

    Args:
        path: an explicit weights file (``official_weights_path``); it must exist.
        download: let :func:`reprolib.data.prepare` fetch them (``weights='official'``); otherwise
            only the data cache is looked at.

    Returns:
        ``(file, message)``; ``file`` is None when the weights are not available, and the
        message then says how to get them.

    Raises:
        reprolib.data.DataMissingError: an explicit ``path`` that does not exist.
    """
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise data.DataMissingError(f"official_weights_path {p} does not exist")
        return p, f"official weights: {p}"
    try:
        folder = data.prepare("lle-official-weights", download=download)
    except data.DataMissingError as error:
        return None, f"official weights not available: {error}"
    return folder / "weights", f"official weights: {folder / 'weights'} (sha256 checked)"


def official_model(P: dict) -> tuple[LLENet | None, str]:
    """The authors' network with their weights (loaded with ``strict=True``), or None and why.

    Used by the RDB and loss notebooks. With ``weights='official'`` the weights are fetched if
    needed; a missing file fails the ``full`` profile and is reported (not raised) otherwise.
    """
    wanted = P["weights"] == "official"
    path, message = find_official_weights(P.get("official_weights_path", ""), download=wanted)
    if path is None:
        if wanted and P["profile"] == "full":
            raise data.DataMissingError(message)
        return None, message
    return LLENet.from_official(path).to(P["device"]), message


def variant_costs(names: Sequence[str], frame: tuple[int, int] = FULL_FRAME) -> "pd.DataFrame":
    """Parameters and GMACs (at ``frame``) of the architectural variants (RDB notebook).

    Returns:
        DataFrame indexed by variant label: ``block``, ``blocks``, ``dense layers``,
        ``parameters``, ``GMACs <W>×<H>``.
    """
    import pandas as pd

    from . import efficiency
    from .models.lle import DENSE_LAYERS

    rows = []
    for name in names:
        block, n = VARIANTS[name]
        model = LLENet(block, n)
        rows.append({"variant": variant_label(name), "block": block, "blocks": n,
                     "dense layers": "-".join(map(str, DENSE_LAYERS[n])),
                     "parameters": efficiency.count_parameters(model),
                     f"GMACs {frame[1]}×{frame[0]}": efficiency.gmacs(model, (1, 1, *frame))})
    return pd.DataFrame(rows).set_index("variant")


def ablation_table(summary: "pd.DataFrame", costs: "pd.DataFrame | None" = None,
                   latencies: dict | None = None, baseline: str | None = None) -> "pd.DataFrame":
    """The ablation table: metrics, PSNR gain over the baseline, and costs (RDB and loss notebooks).

    Args:
        summary: :func:`reprolib.sid_study.summarise` (index = method labels).
        costs: :func:`variant_costs` indexed by the same labels (rows may be missing).
        latencies: label → seconds (median).
        baseline: the label of the traditional-pipeline row, for the ``ΔPSNR`` column.
    """
    out = summary.copy()
    if baseline is not None:
        out["ΔPSNR vs traditional"] = out["PSNR"] - out.loc[baseline, "PSNR"]
    if costs is not None:
        out = out.join(costs[[c for c in costs.columns if c == "parameters" or c.startswith("GMACs")]], how="left")
        out["parameters"] = out["parameters"].astype("Int64")  # the baseline row has none
    if latencies:
        out["CPU s (fast path)"] = [latencies.get(i) for i in out.index]
    return out


# ------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------

def plot_curves(histories: dict, loss_units: str = "training loss"):
    """Training loss and validation PSNR against steps, one line per model (RDB and loss notebooks).

    ``histories``: label → :class:`reprolib.train.History`.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, h in histories.items():
        for ax, name in zip(axes, ("loss", "val_psnr")):
            c = h.curves.get(name, [])
            if c:
                ax.plot([p["step"] for p in c], [p["value"] for p in c],
                        marker="o" if name == "val_psnr" else None, ms=3, label=label)
    axes[0].set(xlabel="step", ylabel=loss_units, yscale="log")
    axes[1].set(xlabel="step", ylabel="validation PSNR (dB, float)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def display_mosaic(x: torch.Tensor, cfa: str = "RGGB") -> np.ndarray:
    """A ``1×1×H×W`` amplified mosaic as camera RGB for display (RDB and loss notebooks).

    Packed R, G, G, B with the greens averaged, nearest-upsampled ×2, clipped to ``[0, 1]``: what
    the network receives, without white balance or gamma. Returns ``H×W×3`` float32.
    """
    r, g1, g2, b = raw.pack(x[0, 0].numpy(), cfa, "RGGB")
    rgb = np.stack([r, (g1 + g2) / 2, b], -1)
    return np.clip(rgb.repeat(2, 0).repeat(2, 1), 0, 1)


def crop_grid(models: dict, pairs: Sequence[data.SIDPair], cache: sid_study.DecodedCache,
              crop: int = 192, tile: int | None = None):
    """Test crops, one row per pair: input, traditional pipeline, each model, ground truth.

    Used by the loss notebook (one column per loss). Each model's title gives its PSNR on the crop.

    Args:
        models: label → network (mosaic in, RGB out).
        pairs: the test pairs to show.
        crop: side of the centre crop, pixels.
    """
    import matplotlib.pyplot as plt

    test_images = images(pairs, cache)
    titles = ["amplified raw input", "traditional pipeline"] + list(models) + ["ground truth"]
    fig, axes = plt.subplots(len(pairs), len(titles), figsize=(2.6 * len(titles), 2.8 * len(pairs)),
                             squeeze=False)
    for r, (row, pair) in enumerate(zip(axes, pairs)):
        x = test_images.input(pair)
        target = test_images.target(pair)
        h, w = target.shape[-2:]
        cy, cx = max(0, (h - crop) // 2) // 2 * 2, max(0, (w - crop) // 2) // 2 * 2
        window = (slice(None), slice(None), slice(cy, cy + crop), slice(cx, cx + crop))
        outputs = [sid_study.conventional_output(pair)] + \
                  [sid_study.infer(m, x, tile=tile, multiple=SIZE_MULTIPLE).clamp(0, 1) for m in models.values()]
        shown = [display_mosaic(x[window])] + [o[window][0].permute(1, 2, 0).numpy() for o in outputs] + \
                [target[window][0].permute(1, 2, 0).numpy()]
        for i, (ax, im) in enumerate(zip(row, shown)):
            ax.imshow(im)
            label = titles[i] if r == 0 else ""
            if 0 < i < len(titles) - 1:
                p = metrics.psnr(outputs[i - 1][window], target[window]).item()
                label += f"\n{p:.2f} dB" if label else f"{p:.2f} dB"
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"scene {pair.scene}, ×{pair.ratio:.0f}", fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Efficiency (Table 1)
# ------------------------------------------------------------------------------------------------

#: the models of the efficiency table: name → (label, input representation)
EFFICIENCY_MODELS = {
    "sid": ("SID U-Net", "packed R,G,B,G 4×H/2×W/2"),
    "lle": ("Lamba & Mitra (weight norm, as trained)", "mosaic 1×H×W"),
    "lle_fused": ("Lamba & Mitra (fast path: folded, channels-last)", "mosaic 1×H×W"),
    "genisp": ("GenISP", "packed, greens averaged 3×H/2×W/2"),
    "pynet": ("PyNET (width 1.0, level 0)", "packed 4×H/2×W/2"),
}


#: short names for plot axes
SHORT_LABELS = {"sid": "SID U-Net", "lle": "L&M\n(weight norm)", "lle_fused": "L&M\n(fast path)", "genisp": "GenISP",
                "pynet": "PyNET"}


def input_shape(name: str, frame: tuple[int, int]) -> tuple[int, ...]:
    """The input of model ``name`` for a raw frame of ``H × W`` pixels (efficiency notebook).

    Each network gets the same raw frame in its own representation: the Lamba & Mitra network
    the 1-channel mosaic; the SID U-Net and PyNET the 4-channel packing at half size; GenISP the
    3-channel packing (greens averaged) at half size.
    """
    h, w = frame
    return {"sid": (1, 4, h // 2, w // 2), "lle": (1, 1, h, w), "lle_fused": (1, 1, h, w),
            "genisp": (1, 3, h // 2, w // 2), "pynet": (1, 4, h // 2, w // 2)}[name]


def build_model(name: str, device: str = "cpu") -> torch.nn.Module:
    """A freshly initialised model of the efficiency table, in eval mode (efficiency notebook).

    Seeded (cost does not depend on the weights). ``device='meta'`` builds it without memory or
    initialisation cost, enough for counting parameters and operations.
    """
    if name not in EFFICIENCY_MODELS:
        raise ValueError(f"unknown model {name!r}; known: {list(EFFICIENCY_MODELS)}")
    from .models.genisp import GenISP
    from .models.pynet import PyNET
    from .models.sid_unet import SIDUNet

    torch.manual_seed(0)
    with torch.device(device):
        if name == "sid":
            model = SIDUNet()
        elif name == "genisp":
            model = GenISP()
        elif name == "pynet":
            model = PyNET(level=0, width=1.0)
        else:
            model = LLENet()
            if name == "lle_fused":
                model = fast_inference(model)
    return model.eval()


def fast_inference(model: LLENet) -> LLENet:
    """The inference fast path of a trained network: the same function, computed faster on a CPU.

    Used by the efficiency and RDB notebooks (timings). Two changes, neither alters the outputs
    beyond float rounding (max abs difference ~1e-6 on a full frame):

    * weight normalisation folded into plain conv weights (:meth:`LLENet.fused`), so that
      ``g · v / ‖v‖`` is not recomputed at every call;
    * channels-last memory layout of the conv weights, which the CPU convolution kernels (oneDNN)
      run faster on these thin feature maps: about 10-15 % on a full 4256×2848 frame in our runs,
      where folding alone is within the run-to-run noise.

    Returns:
        a new module in eval mode; the input stays ``B×1×H×W`` as for :class:`LLENet`.
    """
    return model.fused().eval().to(memory_format=torch.channels_last)


def _paper(key: str):
    try:
        return report.published_value(key)
    except KeyError:
        return None


def parameter_table(names: Sequence[str]) -> "pd.DataFrame":
    """Parameter counts of the models next to the paper's (efficiency notebook).

    The weight-normalised network counts ``g`` and ``v`` (784,768, as the authors count); its fast
    path has one plain weight per conv instead (fewer scalars, the same function).
    """
    import pandas as pd

    from . import efficiency

    paper = {"sid": "efficiency/sid/params_m", "lle": "efficiency/lle/params_m"}
    rows = []
    for name in names:
        n = efficiency.count_parameters(build_model(name, "meta"))
        rows.append({"model": EFFICIENCY_MODELS[name][0], "parameters": n, "M (ours)": n / 1e6,
                     "M (paper)": _paper(paper[name]) if name in paper else None})
    return pd.DataFrame(rows).set_index("model")


def gmacs_table(names: Sequence[str], frames: Sequence[tuple[int, int]] = (FULL_FRAME, README_FRAME)
                ) -> "pd.DataFrame":
    """GMACs of one forward pass at each raw frame, counted by ``torch.utils.flop_counter`` on the
    meta device, next to the paper's (4256×2848) and the README's (2048×4096) figures.

    Used by the efficiency notebook.

    Returns:
        DataFrame indexed by model label with ``input <W×H>``, ``GMACs <W×H>``, the published
        value and the relative difference (%) for each frame that has one.
    """
    import pandas as pd

    from . import efficiency

    published = {FULL_FRAME: "gmacs_sony", README_FRAME: "gmacs_2048x4096"}
    rows = []
    for name in names:
        model = build_model(name, "meta")
        row = {"model": EFFICIENCY_MODELS[name][0]}
        for frame in frames:
            tag = f"{frame[1]}×{frame[0]}"
            shape = input_shape(name, frame)
            value = efficiency.gmacs(model, shape)
            row[f"input {tag}"] = "×".join(map(str, shape[1:]))
            row[f"GMACs {tag}"] = value
            key_model = "lle" if name.startswith("lle") else name
            paper = _paper(f"efficiency/{key_model}/{published[frame]}") if frame in published and \
                key_model in ("sid", "lle") else None
            if frame in published:
                row[f"published {tag}"] = paper
                row[f"Δ {tag} (%)"] = 100 * (value - paper) / paper if paper else None
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def readme_scaling(gmacs: "pd.DataFrame") -> dict:
    """The README's SID figure at 2048×4096 against pixel-count scaling of the paper's figure.

    Used by the efficiency notebook. Both networks are fully convolutional, so their MACs scale
    with the number of pixels: the paper's 562.06 GMACs at 4256×2848 predict
    ``paper · (2048·4096)/(4256·2848)`` at 2048×4096, to compare with the README's figure.

    Returns:
        dict with, for ``sid`` and ``lle``: the published values, the scaled prediction and ours.
    """
    full, readme = FULL_FRAME, README_FRAME
    scale = (readme[0] * readme[1]) / (full[0] * full[1])
    out = {"pixel_ratio": scale}
    for name, label in (("sid", EFFICIENCY_MODELS["sid"][0]), ("lle", EFFICIENCY_MODELS["lle"][0])):
        paper_full = _paper(f"efficiency/{name}/gmacs_sony")
        paper_readme = _paper(f"efficiency/{name}/gmacs_2048x4096")
        out[name] = {"paper_4256x2848": paper_full, "readme_2048x4096": paper_readme,
                     "scaled_from_paper": paper_full * scale,
                     "readme_over_scaled": paper_readme / (paper_full * scale),
                     "ours_2048x4096": float(gmacs.loc[label, f"GMACs {readme[1]}×{readme[0]}"]),
                     "ours_4256x2848": float(gmacs.loc[label, f"GMACs {full[1]}×{full[0]}"])}
    return out


def side_by_side_latency(names: Sequence[str], frame: tuple[int, int], rounds: int = 3, warmup: int = 1,
                         threads: int | None = None, progress: bool = True) -> dict:
    """CPU latency of several models measured side by side (efficiency and RDB notebooks).

    After ``warmup`` untimed rounds, each round times one forward pass of every model in turn
    (:func:`reprolib.efficiency.latency`, inference mode, zero input), so a change of the
    machine's speed during the measurement affects all models alike and their ratio stays fair.

    Returns:
        name → ``{"times_s": [...], "median_s", "min_s", "threads"}``.
    """
    models = {name: build_model(name) for name in names}
    return _interleaved(models, {n: input_shape(n, frame) for n in models}, rounds, warmup, threads, progress)


def _interleaved(models: dict, shapes: dict, rounds: int, warmup: int, threads: int | None,
                 progress: bool) -> dict:
    from tqdm.auto import tqdm

    from . import efficiency

    times = {name: [] for name in models}
    used = None
    bar = tqdm(total=(rounds + warmup) * len(models), desc="latency", disable=not progress, leave=False)
    for r in range(warmup + rounds):
        for name, model in models.items():
            result = efficiency.latency(model, shapes[name], repeats=1, warmup=0, threads=threads)
            used = result["threads"]
            if r >= warmup:
                times[name].append(result["min_s"])
            bar.update(1)
    bar.close()
    return {name: {"times_s": t, "median_s": statistics.median(t), "min_s": min(t), "threads": used}
            for name, t in times.items()}


def speedup(latency: dict, name: str, reference: str = "sid") -> dict:
    """The speed ratio ``reference / name`` of a :func:`side_by_side_latency` result (efficiency
    notebook).

    Returns:
        ``{"per_round": [t_ref / t_name for each round], "median": median of those,
        "of_minima": min t_ref / min t_name}``. Each round timed both models back to back, so the
        per-round ratios are the side-by-side measurements; their median resists a change of
        the machine's load between rounds, and the ratio of the minima is the least disturbed
        estimate when other processes compete for the CPU.
    """
    ref, own = latency[reference]["times_s"], latency[name]["times_s"]
    per_round = [a / b for a, b in zip(ref, own)]
    return {"per_round": per_round, "median": statistics.median(per_round), "of_minima": min(ref) / min(own)}


def variant_latency(models: dict, frame: tuple[int, int], rounds: int = 3, warmup: int = 1,
                    threads: int | None = None, progress: bool = True) -> dict:
    """Side-by-side CPU latency of trained networks (their :func:`fast_inference` copies) at one
    frame (RDB notebook). ``models``: label → :class:`LLENet`. Returns label → median seconds."""
    fused = {label: fast_inference(m.cpu()) for label, m in models.items()}
    out = _interleaved(fused, {label: (1, 1, *frame) for label in fused}, rounds, warmup, threads, progress)
    return {label: r["median_s"] for label, r in out.items()}


def all_models_table(latency: dict, frame: tuple[int, int], reference: str = "lle_fused") -> "pd.DataFrame":
    """Every study's network at one (small) frame: parameters, GMACs, CPU seconds and the time
    relative to ``reference`` (efficiency notebook).

    ``latency`` is a :func:`side_by_side_latency` result at ``frame``. The frame is small because
    PyNET at full width costs about 37× the SID U-Net per pixel (some 20 TMACs on a full Sony
    frame), more time and memory than a CPU book build can give it.

    Returns:
        DataFrame indexed by model label: ``input``, ``parameters (M)``, ``GMACs``, ``median s``,
        ``GMAC/s`` (achieved throughput), ``time / <reference>``.
    """
    import pandas as pd

    from . import efficiency

    rows = []
    for name, r in latency.items():
        model = build_model(name, "meta")
        shape = input_shape(name, frame)
        g = efficiency.gmacs(model, shape)
        rows.append({"model": EFFICIENCY_MODELS[name][0], "input": "×".join(map(str, shape[1:])),
                     "parameters (M)": efficiency.count_parameters(model) / 1e6, "GMACs": g,
                     "median s": r["median_s"], "GMAC/s": g / r["median_s"],
                     f"time / {SHORT_LABELS[reference].replace(chr(10), ' ')}":
                         r["median_s"] / latency[reference]["median_s"]})
    return pd.DataFrame(rows).set_index("model")


def frame_inference(name: str, frame: tuple[int, int], threads: int | None = None) -> None:
    """Build model ``name`` and run one inference on a zero ``frame`` input.

    A module-level function so that :func:`reprolib.efficiency.peak_memory` can run it in a fresh
    process (efficiency notebook).
    """
    if threads:
        torch.set_num_threads(threads)
    model = build_model(name)
    with torch.inference_mode():
        model(torch.zeros(input_shape(name, frame)))


def peak_memory_table(names: Sequence[str], frame: tuple[int, int], threads: int | None = None) -> dict:
    """Extra peak resident memory (GB) of one inference at ``frame`` per model, each measured in a
    fresh process by :func:`reprolib.efficiency.peak_memory` (efficiency notebook).

    The figure includes the model's weights and every intermediate tensor the CPU forward pass
    holds at its peak; it is *CPU* memory, the paper's Table 1 does not say which memory it reports.
    """
    from . import efficiency

    return {name: efficiency.peak_memory(frame_inference, name, tuple(frame), threads) / 1e9 for name in names}


def efficiency_table(params: "pd.DataFrame", gmacs: "pd.DataFrame", latency: dict | None,
                     memory: dict | None, frame: tuple[int, int] = FULL_FRAME) -> "pd.DataFrame":
    """The efficiency rows of the paper's Table 1: ours next to the paper's (efficiency notebook).

    Rows: parameters (M), GMACs at the full 4256×2848 frame, CPU seconds (median) and memory (GB)
    at ``frame`` (the paper's values are shown only when ``frame`` is the full frame); columns: one
    "ours" column per model (SID U-Net, Lamba & Mitra as trained and its fast path) and one "paper"
    column per published model.
    """
    import pandas as pd

    full = f"{FULL_FRAME[1]}×{FULL_FRAME[0]}"
    tag = f"{frame[1]}×{frame[0]}"
    at_full = tuple(frame) == FULL_FRAME
    rows = {"params": "Parameters (M)", "gmacs": f"GMACs ({full})", "cpu": f"CPU inference (s, {tag})",
            "memory": f"Memory (GB, {tag})"}
    columns = {}
    for name, key in (("sid", "sid"), ("lle", "lle"), ("lle_fused", "lle")):
        label = EFFICIENCY_MODELS[name][0]
        if label not in params.index:
            continue
        columns[f"{label}: ours"] = {
            rows["params"]: params.loc[label, "M (ours)"],
            rows["gmacs"]: gmacs.loc[label, f"GMACs {full}"] if label in gmacs.index else None,
            rows["cpu"]: latency[name]["median_s"] if latency and name in latency else None,
            rows["memory"]: memory.get(name) if memory else None}
        if name != "lle_fused":
            columns[f"{label.split(' (')[0]}: paper"] = {
                rows["params"]: _paper(f"efficiency/{key}/params_m"),
                rows["gmacs"]: _paper(f"efficiency/{key}/gmacs_sony"),
                rows["cpu"]: _paper(f"efficiency/{key}/cpu_s") if at_full else None,
                rows["memory"]: _paper(f"efficiency/{key}/memory_gb") if at_full else None}
    return pd.DataFrame(columns)


def efficiency_figure(gmacs: "pd.DataFrame", latency: dict | None, frame: tuple[int, int] = FULL_FRAME):
    """GMACs (full frame) and CPU seconds (at ``frame``) per model, ours next to the paper's, log
    scale (efficiency notebook)."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    full = f"{FULL_FRAME[1]}×{FULL_FRAME[0]}"
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    labels = list(gmacs.index)
    x = np.arange(len(labels))
    axes[0].bar(x - 0.2, gmacs[f"GMACs {full}"].astype(float).to_numpy(), 0.4, label="ours (flop_counter)")
    if f"published {full}" in gmacs:
        axes[0].bar(x + 0.2, gmacs[f"published {full}"].astype(float).fillna(0).to_numpy(), 0.4, label="paper")
    short = {label: SHORT_LABELS[n] for n, (label, _) in EFFICIENCY_MODELS.items()}
    axes[0].set_xticks(x, [short[lab] for lab in labels], fontsize=8)
    axes[0].set(ylabel=f"GMACs at {full}", yscale="log")
    if latency:
        names = list(latency)
        medians = [latency[n]["median_s"] for n in names]
        axes[1].bar(np.arange(len(names)) - 0.2, medians, 0.4, label="ours (median)")
        if tuple(frame) == FULL_FRAME:
            paper = [_paper(f"efficiency/{'lle' if n.startswith('lle') else n}/cpu_s") or 0 for n in names]
            axes[1].bar(np.arange(len(names)) + 0.2, paper, 0.4, label="paper")
        axes[1].set_xticks(np.arange(len(names)), [SHORT_LABELS[n] for n in names], fontsize=8)
        axes[1].set(ylabel=f"CPU seconds at {frame[1]}×{frame[0]}", yscale="log")
        axes[1].yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axes[1].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axes[1].yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def efficiency_rows(params: "pd.DataFrame", gmacs: "pd.DataFrame", latency: dict | None, memory: dict | None,
                    frame: tuple[int, int]) -> list[dict]:
    """Run-record rows of the efficiency notebook, keyed like ``published.yaml``.

    The published keys (``efficiency/lle/...``) carry :func:`fast_inference`, the inference path
    that computes the same function faster; the network as trained (weight norm recomputed
    at every call) gets ``efficiency/lle_weight_norm/...``. Timings and memory carry the published
    key only at the frame the paper (4256×2848) or the README (2048×4096) used.
    """
    key_of = {"sid": "sid", "lle_fused": "lle", "lle": "lle_weight_norm", "genisp": "genisp", "pynet": "pynet"}
    label_to_name = {EFFICIENCY_MODELS[n][0]: n for n in EFFICIENCY_MODELS}
    tag = f"{frame[1]}x{frame[0]}"
    rows = []

    def row(key, name, metric, value, protocol, **extra):
        rows.append({"key": f"efficiency/{key}", "model": EFFICIENCY_MODELS[name][0], "metric": metric,
                     "value": value, "protocol": protocol, **extra})

    for label in params.index:
        name = label_to_name[label]
        row(f"{key_of[name]}/params_m", name, "Parameters (M)", round(float(params.loc[label, "M (ours)"]), 6),
            "count of the module's parameters", parameters=int(params.loc[label, "parameters"]))
        for (h, w), key in ((FULL_FRAME, "gmacs_sony"), (README_FRAME, "gmacs_2048x4096")):
            column = f"GMACs {w}×{h}"
            if column in gmacs.columns and label in gmacs.index:
                row(f"{key_of[name]}/{key}", name, f"GMACs ({w}x{h} Bayer)", round(float(gmacs.loc[label, column]), 4),
                    f"torch.utils.flop_counter, meta device, input {gmacs.loc[label, f'input {w}×{h}']}")
    suffix = {FULL_FRAME: "", README_FRAME: "_2048x4096"}.get(tuple(frame), f"_{tag}")
    if latency:
        first = next(iter(latency.values()))
        timing = (f"CPU, {first['threads']} threads, median of {len(first['times_s'])} interleaved rounds "
                  f"at {tag}")
        for name, r in latency.items():
            row(f"{key_of[name]}/cpu_s{suffix}", name, f"CPU inference (s, {tag})", round(r["median_s"], 4),
                timing, times_s=r["times_s"])
        speed_key = {"": "speedup_cpu", "_2048x4096": "speedup_cpu_readme"}.get(suffix, f"speedup_cpu{suffix}")
        for name, key in (("lle_fused", speed_key), ("lle", f"speedup_cpu_weight_norm{suffix}")):
            if "sid" in latency and name in latency:
                ratio = speedup(latency, name)
                row(key, name, f"CPU speed-up SID / ours (x, {tag})", round(ratio["median"], 3),
                    timing + "; median of the per-round ratios (each round times both models back to back)",
                    per_round=ratio["per_round"], of_minima=ratio["of_minima"])
    for name, gb in (memory or {}).items():
        row(f"{key_of[name]}/memory_gb{suffix}", name, f"Memory (GB, {tag})", round(gb, 4),
            "extra peak resident CPU memory of one inference, fresh process")
    return rows


def published_rows(keys: Sequence[str] | None = None, study: str | None = None) -> "pd.DataFrame":
    """Published values from ``published.yaml`` as a table (all three notebooks).

    Args:
        keys: key prefixes (e.g. ``["lle/sony", "lle/ablation/loss"]``).
        study: or every row of a study (e.g. ``"efficiency"``).

    Returns:
        DataFrame with ``key``, ``kind``, ``model``, ``metric``, ``dataset``, ``value`` (None = not
        available) and ``source``.
    """
    import pandas as pd

    rows = []
    if keys is None:
        rows = report.published(study=study)
    else:
        for key in keys:
            rows += report.published(key=key, study=study)
    columns = ["key", "kind", "model", "metric", "dataset", "value", "source"]
    return pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)


# ------------------------------------------------------------------------------------------------
# Computed findings
# ------------------------------------------------------------------------------------------------

def _baseline_sentence(summary: "pd.DataFrame", methods: Sequence[str], baseline: str) -> str:
    gains = {m: summary.loc[m, "PSNR"] - summary.loc[baseline, "PSNR"] for m in methods}
    worst = min(gains, key=gains.get)
    if all(g > 0 for g in gains.values()):
        return (f"Every trained network beats the traditional pipeline ({summary.loc[baseline, 'PSNR']:.2f} dB) "
                f"on PSNR, by {min(gains.values()):+.2f} dB ({worst}) to {max(gains.values()):+.2f} dB. ")
    losers = [f"{m} ({g:+.2f} dB)" for m, g in gains.items() if g <= 0]
    return (f"Not every trained network beats the traditional pipeline ({summary.loc[baseline, 'PSNR']:.2f} dB): "
            f"{', '.join(losers)} {'does' if len(losers) == 1 else 'do'} not. ")


def rdb_findings(summary: "pd.DataFrame", labels: dict, baseline: str, synthetic: bool,
                 official: str | None = None) -> str:
    """The computed "what we found" paragraph of the RDB notebook.

    Args:
        summary: :func:`reprolib.sid_study.summarise` of every method.
        labels: variant name → its row label in ``summary`` (the variants trained).
        baseline: the traditional pipeline's row label.
        synthetic: the data set is the synthetic miniature.
        official: the row label of the authors' weights, if evaluated.
    """
    text = ""
    if labels:
        text += _baseline_sentence(summary, list(labels.values()), baseline)
        psnr = {n: summary.loc[lab, "PSNR"] for n, lab in labels.items()}
        ssim = {n: summary.loc[lab, "SSIM"] for n, lab in labels.items()}
        if "rdb_x3" in psnr and "rdb_star_x3" in psnr:
            d, ds = psnr["rdb_star_x3"] - psnr["rdb_x3"], ssim["rdb_star_x3"] - ssim["rdb_x3"]
            verdict = ("in the paper's favour" if d > 0 and ds > 0 else "against the paper" if d < 0 and ds < 0
                       else "mixed (PSNR and SSIM disagree)")
            text += (f"RDB* against the canonical RDB at three blocks: {d:+.2f} dB PSNR, {ds:+.3f} SSIM — "
                     f"{verdict}; with one seed a difference of a few tenths of a dB is within seed-to-seed "
                     "spread, so this alone cannot confirm the paper's choice (the public reproduction also found "
                     "it 'not abundantly clear'). ")
        stars = {n: psnr[n] for n in ("rdb_star_x2", "rdb_star_x3", "rdb_star_x4") if n in psnr}
        if len(stars) > 1:
            best = max(stars, key=stars.get)
            text += ("Number of RDB* blocks: " + ", ".join(f"{variant_label(n)} {v:.2f} dB" for n, v in stars.items())
                     + f"; the best here is {variant_label(best)}"
                     + (" — the paper's choice. " if best == DEFAULT_VARIANT else ", not the paper's ×3. ")
                     + f"The spread across block counts is {max(stars.values()) - min(stars.values()):.2f} dB, "
                     "while the parameter count changes by about ±15 % and the MACs by well under 1 % "
                     "(the blocks run at 1/32 of the resolution). ")
    if official is not None and official in summary.index:
        text += (f"The authors' weights score {summary.loc[official, 'PSNR']:.2f} dB / "
                 f"{summary.loc[official, 'SSIM']:.3f} on this test set. ")
        if synthetic:
            text += ("That number is not comparable with the paper's: the synthetic sensor, noise and scenes are "
                     "a different domain from the real Sony α7S II frames the weights were trained on. ")
    if synthetic:
        text += (f"What the miniature cannot say: absolute PSNR/SSIM on the real SID set (the paper's "
                 f"{_paper('lle/sony/psnr'):.2f} dB), "
                 "or differences smaller than the spread of a few seeds, after a training budget thousands of "
                 "times shorter than the official 1M iterations.")
    return text


def loss_findings(summary: "pd.DataFrame", labels: dict, baseline: str, synthetic: bool) -> str:
    """The computed "what we found" paragraph of the loss notebook.

    ``labels``: loss name → row label in ``summary``.
    """
    text = _baseline_sentence(summary, list(labels.values()), baseline)
    psnr = {n: summary.loc[lab, "PSNR"] for n, lab in labels.items()}
    ssim = {n: summary.loc[lab, "SSIM"] for n, lab in labels.items()}
    best_psnr, best_ssim = max(psnr, key=psnr.get), max(ssim, key=ssim.get)
    text += (f"Best PSNR: {LOSS_LABELS[best_psnr]} ({psnr[best_psnr]:.2f} dB); best SSIM: "
             f"{LOSS_LABELS[best_ssim]} ({ssim[best_ssim]:.3f}). ")
    if "l1_ms_ssim" in psnr:
        combined = psnr["l1_ms_ssim"]
        others = {n: v for n, v in psnr.items() if n != "l1_ms_ssim"}
        if others:
            margin = combined - max(others.values())
            text += ("The public reproduction found L1 + MS-SSIM best on PSNR; here it is "
                     + ("the best too" if margin > 0 else "not the best")
                     + f" ({margin:+.2f} dB against the best other loss). ")
    if "l1" in psnr and "ms_ssim" in psnr:
        text += (f"MS-SSIM alone against L1 alone: {psnr['ms_ssim'] - psnr['l1']:+.2f} dB PSNR, "
                 f"{ssim['ms_ssim'] - ssim['l1']:+.3f} SSIM — a structural loss trades per-pixel fidelity for "
                 "structure, and (1 − MS-SSIM) compares mean levels only at its coarsest scale, so it barely "
                 "penalises a uniform colour or brightness shift that L1 penalises everywhere. ")
    text += ("Mean output level ÷ ground truth (1 = as bright): "
             + ", ".join(f"{LOSS_LABELS[n]} {summary.loc[lab, 'brightness']:.2f}" for n, lab in labels.items())
             + f"; traditional pipeline {summary.loc[baseline, 'brightness']:.2f}. ")
    text += "One seed per loss: differences of a few tenths of a dB are within seed-to-seed spread. "
    if synthetic:
        text += ("On the synthetic miniature and a short CPU budget, the ranking says which loss learns fastest "
                 "here, not which is best after the official 1M iterations on real data.")
    return text


def efficiency_findings(gmacs: "pd.DataFrame", latency: dict | None, memory: dict | None,
                        scaling: dict, frame: tuple[int, int], threads: int | None) -> str:
    """The computed "what we found" paragraph of the efficiency notebook."""
    tag = f"{FULL_FRAME[1]}×{FULL_FRAME[0]}"
    sid, lle = EFFICIENCY_MODELS["sid"][0], EFFICIENCY_MODELS["lle"][0]
    g_sid, g_lle = gmacs.loc[sid, f"GMACs {tag}"], gmacs.loc[lle, f"GMACs {tag}"]
    d_sid, d_lle = gmacs.loc[sid, f"Δ {tag} (%)"], gmacs.loc[lle, f"Δ {tag} (%)"]
    within = abs(d_sid) < 1 and abs(d_lle) < 1
    verdict = ("both within 1 %, so the architectures and the counting agree with the paper" if within
               else "not both within 1 %")
    text = (f"Operations: our count gives {g_lle:.2f} GMACs for Lamba & Mitra's network and {g_sid:.2f} for the "
            f"SID U-Net at {tag} ({d_lle:+.2f} % and {d_sid:+.2f} % from the paper's Table 1) — {verdict}; "
            f"{g_sid / g_lle:.1f}× fewer operations (paper: "
            f"{_paper('efficiency/sid/gmacs_sony') / _paper('efficiency/lle/gmacs_sony'):.1f}×). ")
    s = scaling["sid"]
    text += (f"The README's SID figure at 2048×4096, {s['readme_2048x4096']:.2f} GMACs, does not follow from the "
             f"paper's {s['paper_4256x2848']:.2f}: the network is fully convolutional, so the count scales with the "
             f"pixels ({scaling['pixel_ratio']:.3f}×), which predicts {s['scaled_from_paper']:.1f}; we count "
             f"{s['ours_2048x4096']:.1f}. The README's number is {100 * (s['readme_over_scaled'] - 1):.0f} % higher "
             f"than its own paper implies, while its figure for Lamba & Mitra ({scaling['lle']['readme_2048x4096']:.2f}) "
             f"is consistent ({scaling['lle']['scaled_from_paper']:.2f} by scaling, {scaling['lle']['ours_2048x4096']:.2f} "
             "counted). ")
    if latency and "sid" in latency:
        ftag = f"{frame[1]}×{frame[0]}"
        rounds = len(latency["sid"]["times_s"])
        text += (f"CPU at {ftag} ({latency['sid']['threads']} threads, {rounds} interleaved rounds): SID U-Net "
                 f"{latency['sid']['median_s']:.2f} s (median); ")
        for name in ("lle", "lle_fused"):
            if name in latency:
                r = speedup(latency, name)
                text += (f"{EFFICIENCY_MODELS[name][0]} {latency[name]['median_s']:.2f} s, SID/ours "
                         f"{r['median']:.1f}× (median of the per-round ratios "
                         f"{', '.join(f'{v:.1f}' for v in r['per_round'])}; {r['of_minima']:.1f}× from the fastest "
                         "runs); ")
        text += (f"the paper reports {_paper('efficiency/speedup_cpu'):g}× ({_paper('efficiency/sid/cpu_s'):g} s vs "
                 f"{_paper('efficiency/lle/cpu_s'):g} s at 4256×2848), the README "
                 f"{_paper('efficiency/speedup_cpu_readme'):g}× ({_paper('efficiency/sid/cpu_s_2048x4096'):g} s vs "
                 f"{_paper('efficiency/lle/cpu_s_2048x4096'):g} s at 2048×4096). ")
        if "lle" in latency and "lle_fused" in latency:
            fast, faithful = latency["lle_fused"]["median_s"], latency["lle"]["median_s"]
            text += ("The fast path (weight norm folded, channels-last weights; the same outputs) is "
                     + (f"{100 * (1 - fast / faithful):.0f} % faster than" if fast < faithful else
                        f"not faster than (noise: {100 * (fast / faithful - 1):.0f} % slower)")
                     + f" the network as trained ({fast:.2f} s vs {faithful:.2f} s). ")
    if memory:
        text += ("Peak extra CPU memory of one inference: "
                 + ", ".join(f"{EFFICIENCY_MODELS[n][0]} {v:.2f} GB" for n, v in memory.items())
                 + f" (the paper's {_paper('efficiency/sid/memory_gb'):g} / {_paper('efficiency/lle/memory_gb'):g} GB "
                 "were measured on its own set-up, most likely GPU memory). ")
    text += ("Timings depend on the CPU, the thread count and the machine's load; the ratio measured side by side "
             "is the transferable number, the absolute seconds are not.")
    return text


# ------------------------------------------------------------------------------------------------
# Parameters of the three notebooks
# ------------------------------------------------------------------------------------------------

def _names_check(known) -> callable:
    def check(value: str) -> str | None:
        names = parse_names(value)
        if not names:
            return "give at least one name"
        bad = [n for n in names if n not in known]
        return f"unknown {bad}; known: {', '.join(known)}" if bad else None
    return check


def _frames_check(value: str) -> str | None:
    try:
        parse_frames(value)
    except ValueError as error:
        return str(error)
    return None


def _patch_check(v: int) -> str | None:
    return None if v >= SIZE_MULTIPLE and v % SIZE_MULTIPLE == 0 else f"must be a positive multiple of {SIZE_MULTIPLE}"


def _tile_check(v: int) -> str | None:
    return None if v > 64 and (v - 64) % SIZE_MULTIPLE == 0 else \
        f"must exceed the 64-px overlap by a multiple of {SIZE_MULTIPLE} (e.g. 1024)"


def _training_parameters() -> dict:
    P = study.Parameter
    return {
        "profile": P((str,), choices=study.PROFILES, help="smoke (tests), mini (the book), full (the paper)"),
        "data_root": P((str,), profiles={"smoke": "", "mini": "", "full": ""},
                       help="SID folder (Sony/, Sony_*_list.txt); empty: the profile's data set"),
        "device": P((str,), profiles={"smoke": "cpu", "mini": "cpu", "full": "cpu"},
                    check=study.torch_device, help="torch device"),
        "seed": P((int,), profiles={"smoke": 0, "mini": 0, "full": 0}, check=study.non_negative,
                  help="seed of initialisation, crops and scene order"),
        "steps": P((int,), profiles={"smoke": 2, "mini": 260, "full": 1_000_000}, check=study.positive,
                   help="training iterations (official: 1,000,000)"),
        "lr": P((float,), profiles={"smoke": 1e-4, "mini": 2e-3, "full": 1e-4}, check=study.positive,
                help="Adam learning rate (official: 1e-4)"),
        "lr_drop": P((int,), profiles={"smoke": 0, "mini": 208, "full": 500_000}, check=study.non_negative,
                     help="step at which the learning rate is multiplied by 0.1 (0: never; official: 500,000)"),
        "grad_clip": P((float,), profiles={"smoke": 0.1, "mini": 0.1, "full": 0.0}, check=study.non_negative,
                       help="clip the gradient norm at this value (0: no clipping, as the official code)"),
        "patch": P((int,), profiles={"smoke": 192, "mini": 192, "full": 512}, check=_patch_check,
                   help="training crop side in mosaic pixels, multiple of 32 (official: 512; MS-SSIM needs >= 176)"),
        "batch": P((int,), profiles={"smoke": 1, "mini": 2, "full": 8}, check=study.positive,
                   help="crops per step (official: 8)"),
        "burst00": P((bool,), profiles={"smoke": True, "mini": True, "full": True},
                     help="SID's selection: burst-00 short exposures only"),
        "exclude_misaligned": P((bool,), profiles={"smoke": True, "mini": True, "full": True},
                                help="drop the misaligned test scenes 10034, 10045, 10172"),
        "eval_every": P((int,), profiles={"smoke": 0, "mini": 100, "full": 50_000}, check=study.non_negative,
                        help="validation PSNR every this many steps (0: only at the end)"),
        "tile": P((int, None), profiles={"smoke": None, "mini": None, "full": None},
                  check=lambda v: _tile_check(v) if v is not None else None,
                  help="evaluate in tiles of this many mosaic pixels (None: whole images, as the authors)"),
        "weights": P((str,), profiles={"smoke": "trained", "mini": "trained", "full": "trained"},
                     choices=("trained", "official"),
                     help="'trained': train the ablation; 'official': evaluate the authors' weights instead"),
        "official_weights_path": P((str,), profiles={"smoke": "", "mini": "", "full": ""},
                                   help="a copy of the official weights file; empty: the data cache"),
    }


#: parameters of ``notebooks/lle_rdb.ipynb``. The mini budget (260 steps of 2 crops of 192², Adam
#: 2e-3 → 2e-4 at step 208, gradient norm clipped at 0.1) is a CPU miniature of the official 1M
#: iterations of 8 crops of 512² at 1e-4 without clipping. In our trials on ``sid-sony-mini``
#: (RDB* ×3, official loss, test PSNR; the traditional pipeline scores 17.16 dB): 150 steps of 4
#: crops at 1e-3 / 2e-3 / 3e-3 gave 18.8 / 19.4 / 19.5 dB, 300 steps of 2 crops at 2e-3 gave
#: 19.5–19.7 dB for the same number of crops. The structural losses alone are fragile at a high
#: rate: the network clamps its output to [0, 1] (as the official forward does), the clamp passes no
#: gradient, and without clipping SSIM alone drove the output out of range (99 % of the test pixels
#: at 0 or 1 at the end) and stopped learning (4.8 dB; 15.5 dB at 5e-4). Clipping the gradient norm
#: at 0.1 (or 0.03) gave SSIM alone 17.6 dB at 2e-3 and did not hurt the others (300 steps: L1
#: 19.9, L1 + MS-SSIM 19.8, RDB ×3 19.9, RDB* ×2 19.8, RDB* ×4 19.4 dB); MS-SSIM alone stayed at
#: 13–15 dB with or without it (also with torchmetrics' ``normalize='simple'``). SSIM alone, the
#: slowest to learn, gave 17.08 / 17.62 / 17.65 dB after 240 / 260 / 300 steps: 260 steps keep the
#: three notebooks of this study within eight minutes on two cores.
PARAMETERS_RDB = {
    **_training_parameters(),
    "variants": study.Parameter((str,), profiles={"smoke": "rdb_x3,rdb_star_x3",
                                                  "mini": "rdb_x3,rdb_star_x2,rdb_star_x3,rdb_star_x4",
                                                  "full": "rdb_x3,rdb_star_x2,rdb_star_x3,rdb_star_x4"},
                                check=_names_check(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}"),
    "loss": study.Parameter((str,), profiles={"smoke": "l1_ms_ssim", "mini": "l1_ms_ssim", "full": "l1_ms_ssim"},
                            choices=tuple(LOSS_LABELS), help="training loss (official: l1_ms_ssim)"),
    "latency_frame": study.Parameter((str,), profiles={"smoke": "256x384", "mini": "1024x1536", "full": "2848x4256"},
                                     check=_frames_check, help="H x W mosaic pixels at which each variant is timed"),
    "latency_rounds": study.Parameter((int,), profiles={"smoke": 1, "mini": 2, "full": 5}, check=study.positive,
                                      help="timed rounds per variant (interleaved)"),
}

#: parameters of ``notebooks/lle_loss.ipynb`` (same training budget as the RDB notebook, so the
#: RDB* ×3 + official-loss network is shared)
PARAMETERS_LOSS = {
    **_training_parameters(),
    "losses": study.Parameter((str,), profiles={"smoke": "l1,l1_ms_ssim", "mini": "l1,ssim,ms_ssim,l1_ms_ssim",
                                                "full": "l1,ssim,ms_ssim,l1_ms_ssim"},
                              check=_names_check(LOSS_LABELS), help=f"comma-separated, of {', '.join(LOSS_LABELS)}"),
    "variant": study.Parameter((str,), profiles={"smoke": DEFAULT_VARIANT, "mini": DEFAULT_VARIANT,
                                                 "full": DEFAULT_VARIANT},
                               choices=tuple(VARIANTS), help="the network trained with every loss (paper: rdb_star_x3)"),
    "grid_crop": study.Parameter((int,), profiles={"smoke": 128, "mini": 192, "full": 512}, check=study.positive,
                                 help="side of the test crops shown per loss"),
}

#: parameters of ``notebooks/efficiency.ipynb``. The mini profile times the full frame in two
#: interleaved rounds (a SID U-Net forward pass takes ~16 s on two cores); ``full`` takes seven.
PARAMETERS_EFFICIENCY = {
    "profile": study.Parameter((str,), choices=study.PROFILES, help="smoke (tests), mini (the book), full (more repeats)"),
    "data_root": study.Parameter((str,), profiles={"smoke": "", "mini": "", "full": ""},
                                 help="not used: the cost of a network does not depend on the data"),
    "device": study.Parameter((str,), profiles={"smoke": "cpu", "mini": "cpu", "full": "cpu"}, choices=("cpu",),
                              help="CPU only: Table 1's CPU column"),
    "seed": study.Parameter((int,), profiles={"smoke": 0, "mini": 0, "full": 0}, check=study.non_negative,
                            help="seed of the (untrained) weights; cost does not depend on it"),
    "threads": study.Parameter((int, None), profiles={"smoke": None, "mini": None, "full": None},
                               check=lambda v: study.positive(v) if v is not None else None,
                               help="intra-op CPU threads for the timings (None: torch's default)"),
    "latency_frame": study.Parameter((str,), profiles={"smoke": "256x384", "mini": "2848x4256", "full": "2848x4256"},
                                     check=_frames_check, help="H x W raw pixels of the timed frame (paper: 2848x4256)"),
    "rounds": study.Parameter((int,), profiles={"smoke": 1, "mini": 2, "full": 7}, check=study.positive,
                              help="timed rounds (each times every model once, interleaved)"),
    "warmup": study.Parameter((int,), profiles={"smoke": 0, "mini": 0, "full": 1}, check=study.non_negative,
                              help="untimed rounds first"),
    "memory": study.Parameter((bool,), profiles={"smoke": False, "mini": True, "full": True},
                              help="measure peak memory of one inference (fresh process per model)"),
    "other_models": study.Parameter((bool,), profiles={"smoke": True, "mini": True, "full": True},
                                    help="also count GenISP and PyNET (parameters, GMACs, and CPU latency "
                                         "at all_models_frame)"),
    "all_models_frame": study.Parameter((str,), profiles={"smoke": "64x96", "mini": "256x384", "full": "512x768"},
                                        check=_frames_check,
                                        help="H x W raw pixels at which all four studies' networks are timed "
                                             "side by side (PyNET is too costly for the full frame on a CPU)"),
}
