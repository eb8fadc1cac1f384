"""Lamba & Mitra's ablations: ``notebooks/lle_rdb.ipynb`` (blocks) and ``lle_loss.ipynb`` (losses),
on SID's data in :data:`~reprolib.data.LLE_INPUT`: the ratio is not capped (the authors' list has
×100 and ×300; our 0.033 s frames of 10 s scenes get ×303)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from . import data, efficiency, evaluate, losses, study, train
from .models.lle import DENSE_LAYERS, SIZE_MULTIPLE, LLENet

__all__ = ["SMOKE_DATA", "VARIANTS", "DEFAULT_VARIANT", "LOSS_LABELS", "variant_label", "train_config",
           "shared_checkpoint", "validation_pairs", "train_variant", "official_model", "variant_costs",
           "ablation_table", "TRAINING_ROWS", "PARAMETERS_RDB", "PARAMETERS_LOSS"]

#: the smoke profile's synthetic set: MS-SSIM at 5 scales needs crops ≥ 176 px, plus one spare pixel
SMOKE_DATA = {"n_train": 2, "n_test": 1, "n_val": 1, "height": 224, "width": 256}
#: the variants of the RDB ablation: name → ``LLENet(block, n_blocks)`` arguments; the paper's is ×3 RDB*
VARIANTS = {"rdb_x3": ("rdb", 3), **{f"rdb_star_x{n}": ("rdb_star", n) for n in (2, 3, 4)}}
DEFAULT_VARIANT = "rdb_star_x3"
#: the losses of the loss ablation (names of :func:`reprolib.losses.get_loss`) and their labels
LOSS_LABELS = {"l1": "L1", "ssim": "SSIM", "ms_ssim": "MS-SSIM", "l1_ms_ssim": "L1 + 0.2·MS-SSIM (official code)",
               "l1_ms_ssim_paper": "0.8·L1 + 0.2·MS-SSIM (paper, as quoted)"}


def variant_label(name: str) -> str:
    """``'rdb_star_x3'`` → ``'RDB* ×3'``."""
    block, n = VARIANTS[name]
    return f"{'RDB*' if block == 'rdb_star' else 'RDB'} ×{n}"


def train_config(P: dict) -> train.TrainConfig:
    """The optimisation settings in steps: ``steps``, Adam ``lr`` ×0.1 at ``lr_drop``, gradient
    norm clipped at ``grad_clip`` (0: none), validation every ``eval_every`` steps."""
    milestones = (P["lr_drop"],) if 0 < P["lr_drop"] < P["steps"] else ()
    log_every = max(1, min(100, P["steps"] // 20))
    return train.TrainConfig(steps=study.capped(P["steps"], P["max_steps"]), lr=P["lr"], milestones=milestones,
                             gamma=0.1, grad_clip=P["grad_clip"] or None, eval_every=P["eval_every"],
                             log_every=log_every, checkpoint_every=max(log_every, min(1000, P["steps"] // 4 or 1)),
                             **study.checkpointing(P))


def shared_checkpoint(variant: str, loss: str, P: dict, data_fingerprint: str) -> tuple[Path, str]:
    """``(path, config key)`` of a checkpoint, ``<results>/lle_shared/<variant>-<loss>-<hash>.pt`` hashed over all
    that changes the weights or curves (:func:`reprolib.study.shared_checkpoint`): shared by both notebooks."""
    key = {"variant": VARIANTS[variant], "loss": loss, "patch": P["patch"], "batch": P["batch"],
           "seed": P["seed"], "cfg": repr(train_config(P)), "data": data_fingerprint, "burst00": P["burst00"],
           "cap": data.LLE_INPUT.cap}
    return study.shared_checkpoint("lle_shared", f"{variant}-{loss}", key)


def validation_pairs(pairs: Sequence[data.SIDPair]) -> list[data.SIDPair]:
    """One pair per scene, the exposure ratios taken in turn: a cheap validation curve that sees every ratio."""
    groups = [sorted((p for p in pairs if p.scene == scene), key=lambda p: p.ratio)
              for scene in sorted({p.scene for p in pairs})]
    return [group[i % len(group)] for i, group in enumerate(groups)]


def train_variant(variant: str, loss: str, P: dict, splits: dict, cache: data.DecodedCache, data_fingerprint: str,
                  desc: str | None = None) -> tuple[LLENet, train.History]:
    """Build, train (or resume, or reload) one network: ``(model in eval mode, History)``. Weights from
    ``seed``; batches :class:`~reprolib.data.SIDTrainingPatches` of ``splits["train"]`` in ``LLE_INPUT`` (``x``
    ``B×1×patch×patch`` in ``[0, ratio]``, ``y`` ``B×3×patch×patch`` in ``[0, 1]``); float PSNR of
    :func:`validation_pairs` (``val``, else ``test``) every ``eval_every`` steps; :func:`shared_checkpoint`."""
    train.seed_everything(P["seed"], P["deterministic"] is not False)
    model = LLENet(*VARIANTS[variant]).to(P["device"])
    loss_fn = losses.get_loss(loss)
    val = validation_pairs(splits["val"] or splits["test"])
    checkpoint, key = shared_checkpoint(variant, loss, P, data_fingerprint)
    patches = data.SIDTrainingPatches(splits["train"], cache, P["patch"], P["seed"], batch=P["batch"],
                                     convention=data.LLE_INPUT)
    history = train.train(model, patches, lambda m, b: loss_fn(m(b[0]), b[1]), train_config(P), checkpoint=checkpoint,
                          config_key=key, desc=desc or f"{variant_label(variant)}, {loss}", device=P["device"],
                          num_workers=P["num_workers"], tensorboard=checkpoint.with_suffix(".tb"), evaluate_fn=lambda m: {
                              "val_psnr": float(evaluate.evaluate(m, val, cache, convention=data.LLE_INPUT,
                                                                  tile=P["tile"], progress=False)["psnr"].mean())})
    return model, history


def official_model(P: dict) -> tuple[LLENet | None, str]:
    """The authors' network (loaded ``strict=True``) or ``None``, and a message: ``official_weights_path`` (must exist)
    or the ``lle-official-weights`` entry (fetched if ``weights='official'``); missing ones raise only at ``full``."""
    wanted, path = P["weights"] == "official", Path(P["official_weights_path"]).expanduser()
    if P["official_weights_path"] and not path.is_file():
        raise data.DataMissingError(f"official_weights_path {path} does not exist")
    try:
        path = path if P["official_weights_path"] else data.prepare("lle-official-weights", download=wanted) / "weights"
    except data.DataMissingError:
        if wanted and P["profile"] == "full":
            raise
        return None, ("the authors' weights are not in the data cache: `python -m reprolib data prepare "
                      "lle-official-weights` puts them there (3.2 MB), and the next run adds their row")
    return LLENet.from_official(path).to(P["device"]), f"the authors' weights ({path.name})"


def variant_costs(names: Sequence[str], frame: tuple[int, int] = efficiency.FULL_FRAME) -> pd.DataFrame:
    """Per variant (index :func:`variant_label`): ``block``, ``blocks``, ``dense layers``, ``parameters``
    and ``GMACs <W>×<H>`` at ``frame`` (H × W mosaic pixels)."""
    rows = []
    for name in names:
        block, n = VARIANTS[name]
        model = LLENet(block, n)
        rows.append({"variant": variant_label(name), "block": block, "blocks": n,
                     "dense layers": "-".join(map(str, DENSE_LAYERS[n])),
                     "parameters": efficiency.count_parameters(model),
                     f"GMACs {frame[1]}×{frame[0]}": efficiency.gmacs(model, (1, 1, *frame))})
    return pd.DataFrame(rows).set_index("variant")


def ablation_table(summary: pd.DataFrame, costs: pd.DataFrame | None = None, latencies: dict | None = None,
                   baseline: str | None = None) -> pd.DataFrame:
    """``summary`` (:func:`reprolib.evaluate.summarise`) with ``ΔPSNR vs traditional`` (over row ``baseline``),
    ``parameters`` and ``GMACs`` of ``costs`` (:func:`variant_costs`, same labels) and ``latencies`` (label → s)."""
    out = summary.copy()
    if baseline is not None:
        out["ΔPSNR vs traditional"] = out["PSNR"] - out.loc[baseline, "PSNR"]
    if costs is not None:
        out = out.join(costs[[c for c in costs.columns if c == "parameters" or c.startswith("GMACs")]], how="left")
        out["parameters"] = out["parameters"].astype("Int64")  # the baseline row has none
    if latencies:
        out["CPU s (fast path)"] = [latencies.get(i) for i in out.index]
    return out


def _names_check(known) -> callable:
    return lambda value: "give at least one name" if not study.parse_names(value) else next(
        (f"unknown {n!r}; known: {', '.join(known)}" for n in study.parse_names(value) if n not in known), None)


#: the training rows both notebooks share. ``mini`` trials (RDB* ×3; traditional 17.16 dB): 150
#: steps of 4 crops at 1e-3/2e-3/3e-3 gave 18.8/19.4/19.5 dB, 300 of 2 at 2e-3 19.5–19.7; clipped,
#: SSIM alone gave 17.6 (unclipped 4.8); 260 steps (SSIM 17.62; 17.65 at 300) fit 8 min on 2 cores.
TRAINING_ROWS = (
    *study.common_parameters("SID folder (Sony/, Sony_*_list.txt)"), *study.TRAINING_ROWS,
    ("steps", 2, 260, 1_000_000, "training iterations", study.positive),
    ("lr", 1e-4, 2e-3, 1e-4, "Adam learning rate", study.positive),
    ("lr_drop", 0, 208, 500_000, "step at which the learning rate is multiplied by 0.1 (0: never)", study.non_negative),
    ("grad_clip", 0.1, 0.1, 0.0, "clip the gradient norm at this value (0: none, as officially)", study.non_negative),
    ("patch", 192, 192, 512, "training crop side in mosaic pixels, multiple of 32 (MS-SSIM needs >= 176)",
     lambda v: None if v >= SIZE_MULTIPLE and v % SIZE_MULTIPLE == 0 else "must be a positive multiple of 32"),
    ("batch", 1, 2, 8, "crops per step", study.positive),
    ("burst00", True, True, True, "SID's selection: burst-00 short exposures only"),
    ("exclude_misaligned", True, True, True, "drop the misaligned test scenes 10034, 10045, 10172"),
    ("eval_every", 0, 100, 50_000, "validation PSNR every this many steps (0: only at the end)", study.non_negative),
    ("tile", None, None, None, "evaluate in tiles of this many mosaic pixels (None: whole images, as the authors)",
     {"types": (int, None), "check": lambda v: None if v > 64 and (v - 64) % SIZE_MULTIPLE == 0 else
      f"must exceed the 64-px overlap by a multiple of {SIZE_MULTIPLE} (e.g. 1024)"}),
    ("weights", *["trained"] * 3, "'trained', or 'official': evaluate the authors' weights", ("trained", "official")),
    ("official_weights_path", "", "", "", "a copy of the official weights file; empty: the data cache",
     {"recipe": False}),
)
#: parameters of ``notebooks/lle_rdb.ipynb``
PARAMETERS_RDB = study.parameter_table(
    *TRAINING_ROWS,
    ("variants", "rdb_x3,rdb_star_x3", *["rdb_x3,rdb_star_x2,rdb_star_x3,rdb_star_x4"] * 2,
     f"comma-separated, of {', '.join(VARIANTS)}", _names_check(VARIANTS)),
    ("loss", "l1_ms_ssim", "l1_ms_ssim", "l1_ms_ssim", "training loss", tuple(LOSS_LABELS)),
    ("latency_frame", "256x384", "1024x1536", "2848x4256", "H x W mosaic pixels of the timing", study.frames_check),
    ("latency_rounds", 1, 2, 5, "timed rounds per variant (interleaved)", study.positive))
#: parameters of ``notebooks/lle_loss.ipynb``
PARAMETERS_LOSS = study.parameter_table(
    *TRAINING_ROWS,
    ("losses", "l1,l1_ms_ssim", *["l1,ssim,ms_ssim,l1_ms_ssim"] * 2, f"comma-separated, of {', '.join(LOSS_LABELS)}",
     _names_check(LOSS_LABELS)),
    ("variant", *[DEFAULT_VARIANT] * 3, "the network trained with every loss", tuple(VARIANTS)),
    ("grid_crop", 128, 192, 512, "side of the test crops shown per loss", {"check": study.positive, "recipe": False}))
