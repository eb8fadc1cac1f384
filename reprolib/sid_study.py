"""The SID study (``notebooks/sid.ipynb``) and its BatchNorm ablation (``sid_batchnorm.ipynb``):
parameters, U-Net training with one shared checkpoint, the ablation's chart."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from pathlib import Path

from . import data, losses, study, train
from . import evaluate as evaluation
from .models.sid_unet import SIDUNet

__all__ = ["SMOKE_DATA", "PARAMETERS", "PARAMETERS_BATCHNORM", "train_config", "train_model", "official_model",
           "bar_chart"]

#: the smoke profile's synthetic set (``sid-sony-mini`` generated at these sizes)
SMOKE_DATA = {"n_train": 2, "n_test": 1, "n_val": 1, "height": 96, "width": 128}


def _patch_check(v: int) -> str | None:
    return None if v >= 16 and v % 16 == 0 else "must be a positive multiple of 16 (packed pixels)"


#: parameters of ``notebooks/sid.ipynb``. ``mini`` trials (test PSNR; traditional 17.16 dB):
#: unclipped, 40/30/26 epochs at 1e-3 gave 21.06/20.59/20.02 dB, 3e-4 1.5 dB less, 2e-3 diverged;
#: clipped, 26 epochs 20.76 (2e-3: 20.70), 22 epochs 20.41 (2e-3: 19.86, BatchNorm erratic).
PARAMETERS = study.parameter_table(
    *study.common_parameters("SID folder (Sony/, Sony_*_list.txt)"), *study.TRAINING_ROWS,
    ("epochs", 1, 22, 4000, "epochs (one epoch = one crop per training scene)", study.positive),
    ("lr", 1e-4, 1e-3, 1e-4, "Adam learning rate", study.positive),
    ("lr_drop", 0, 18, 2000, "epoch at which the learning rate is multiplied by 0.1 (0: never)", study.non_negative),
    ("grad_clip", 0.1, 0.1, 0.0, "clip the gradient norm at this value (0: no clipping, as the official code)",
     study.non_negative),
    ("patch", 32, 64, 512, "training crop side in packed pixels (official: 512)", _patch_check),
    ("batch", 1, 1, 1, "crops per step (official: 1)", study.positive),
    ("burst00", True, True, True, "official selection: burst-00 short exposures only"),
    ("exclude_misaligned", True, True, True, "drop the misaligned test scenes 10034, 10045, 10172"),
    ("eval_every", 0, 5, 500, "validation PSNR every this many epochs (0: only at the end)", study.non_negative),
    ("tile", None, None, 512, "evaluate in tiles of this many packed pixels (None: whole images)", _patch_check),
    ("norm", "none", "none", "none", "BatchNorm variant of the U-Net (none = the official network)",
     ("none", "single", "double")),
    ("weights", *["trained"] * 3, "'trained', or 'official': evaluate the authors' released network",
     ("trained", "official")),
    ("official_weights_path", "", "", "", "the official checkpoint prefix (…/model.ckpt); empty: the data cache",
     {"recipe": False}))
#: parameters of ``notebooks/sid_batchnorm.ipynb``: its ``norm='none'`` network is ``sid.ipynb``'s
PARAMETERS_BATCHNORM = {k: v for k, v in PARAMETERS.items() if k not in ("norm", "weights", "official_weights_path")}


def train_config(P: dict, steps_per_epoch: int) -> train.TrainConfig:
    """The optimisation settings in steps: ``epochs`` × ``steps_per_epoch`` (at most ``max_steps``),
    Adam ``lr`` ×0.1 at epoch ``lr_drop``, validation every ``eval_every`` epochs, loss logged once
    per epoch, at most ~100 checkpoints by steps (every 161 steps would write 370 GB at ``full``)."""
    steps = study.capped(P["epochs"] * steps_per_epoch, P["max_steps"])
    milestones = (P["lr_drop"] * steps_per_epoch,) if 0 < P["lr_drop"] < P["epochs"] else ()
    return train.TrainConfig(
        steps=steps, lr=P["lr"], milestones=milestones, gamma=0.1, grad_clip=P["grad_clip"] or None,
        eval_every=P["eval_every"] * steps_per_epoch, log_every=steps_per_epoch, **study.checkpointing(P),
        checkpoint_every=steps_per_epoch * max(1, math.ceil(max(50, steps // 100) / steps_per_epoch)))


def train_model(norm: str, P: dict, splits: dict, cache: data.DecodedCache, data_fingerprint: str,
                desc: str | None = None) -> tuple[SIDUNet, train.History]:
    """Build (seeded by ``seed``), train, resume or reload a SID U-Net with BatchNorm variant
    ``norm``: ``(model in eval mode on P['device'], History)``. L1 loss on
    :class:`reprolib.data.SIDTrainingPatches` of the train split, validation PSNR (whole images,
    float) every ``eval_every`` epochs, checkpoint ``<results>/sid_shared/<norm>-<hash>.pt``."""
    train.seed_everything(P["seed"], P["deterministic"] is not False)
    model = SIDUNet(norm=norm).to(P["device"])
    patches = data.SIDTrainingPatches(splits["train"], cache, P["patch"], P["seed"], batch=P["batch"])
    cfg = train_config(P, patches.steps_per_epoch)
    val = splits["val"] or splits["test"][:4]

    def validate(m):
        return {"val_psnr": float(evaluation.evaluate(m, val, cache, tile=P["tile"], progress=False)["psnr"].mean())}

    path, key = study.shared_checkpoint(
        "sid_shared", norm, {"norm": norm, "patch": P["patch"], "batch": P["batch"], "seed": P["seed"],
                             "cfg": repr(cfg), "data": data_fingerprint, "burst00": P["burst00"],
                             "val": [p.short for p in val], "tile": P["tile"]})
    history = train.train(model, patches, lambda m, b: losses.l1(m(b[0]), b[1]), cfg,
                          checkpoint=path, evaluate_fn=validate if P["eval_every"] else None,
                          desc=desc or f"SID U-Net ({norm})", config_key=key, device=P["device"],
                          num_workers=P["num_workers"], tensorboard=path.with_suffix(".tb"))
    return model, history


def official_model(P: dict) -> tuple[SIDUNet, str]:
    """The authors' released Sony network (:meth:`SIDUNet.from_official`) on ``P['device']`` and
    where it came from: ``official_weights_path`` (a checkpoint prefix) or the data cache's
    ``sid-official-weights`` entry (never downloaded at run time: the error says how to get it)."""
    if P["official_weights_path"]:
        prefix = Path(P["official_weights_path"]).expanduser()
    else:
        prefix = data.prepare("sid-official-weights", download=False) / "model.ckpt"
    return SIDUNet.from_official(prefix).to(P["device"]).eval(), f"the authors' weights ({prefix.name})"


def bar_chart(ours: "pd.DataFrame", published: "pd.DataFrame", label: str = "ours (miniature)"):
    """PSNR and SSIM per BatchNorm variant (index), ours beside the public reproduction's (BatchNorm notebook)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    x = np.arange(len(ours))
    for ax, col in zip(axes, ("PSNR", "SSIM")):
        ax.bar(x - 0.19, ours[col], 0.38, label=label)
        ax.bar(x + 0.19, published[col].astype(float), 0.38, label="public reproduction (real SID)")
        ax.set_xticks(x, list(ours.index))
        ax.set(ylabel=col + (" (dB)" if col == "PSNR" else ""), xlabel="BatchNorm variant")
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(0, 1.3 * np.nanmax([ours[col].max(), published[col].astype(float).max()]))  # room for the legend
        ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    return fig
