"""The PyNET study (``notebooks/pynet.ipynb``), as the official aiff22/PyNET-PyTorch code: levels
5 → 0 trained in turn, evaluation per test patch (batch 1) with the official metrics, averaged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import data, metrics, study, train
from .data import RAW_SCALE, ZurichRawToRGB
from .losses import CONTENT_LOSSES, content_network, pynet_loss
from .metrics import ms_ssim_official, psnr_official
from .models.pynet import LEVELS, PyNET

#: the P20's 10-bit black and white levels, assumed by the naive rendering only
ZURICH_BLACK_LEVEL, ZURICH_WHITE_LEVEL = 64, 1023
#: the small synthetic set of the smoke profile (``data.prepare('zurich-mini', params=...)``)
SMOKE_DATA = {"n_train": 16, "n_test": 3}
#: record rows of a :func:`summarise` table: ``(column, key suffix, metric label)``
PYNET_METRICS = (("psnr", "psnr", "PSNR (dB)"), ("ms_ssim", "ms_ssim", "MS-SSIM"),
                 ("ms_ssim_torchmetrics", "ms_ssim_torchmetrics", "MS-SSIM (torchmetrics)"))
#: the evaluation protocol of the PyNET tables (``.format(dataset, n, patch)``, printed above each)
PROTOCOL = ("Protocol: {n} test patches of {dataset} ({patch}×{patch} output pixels), batch 1; PSNR = "
            "20·log10(1/√MSE) of the sigmoid output (float, [0, 1]) against the 8-bit target JPEG / 255, per patch, "
            "averaged (as the official train_model.py / evaluate_accuracy.py); MS-SSIM: the official msssim.py "
            "definition (5 scales, Gaussian window 11 σ 1.5, valid filtering), per patch, averaged; 'MS-SSIM "
            "(torchmetrics)' is torchmetrics' 5-scale MS-SSIM as a cross-check; no border crop.")


def _six_positive(v) -> str | None:
    ok = len(v) == len(LEVELS) and all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in v)
    return None if ok else "must be six positive integers, for levels 5, 4, 3, 2, 1, 0"


#: parameters of ``notebooks/pynet.ipynb`` (``full``: the official README commands and ``utils.py``)
PARAMETERS = study.parameter_table(
    *study.common_parameters("Zurich RAW-to-RGB folder (train/, test/)"), *study.TRAINING_ROWS,
    ("width", 0.125, 0.25, 1.0, "channel-width multiplier of PyNET (1.0 = the published network)", study.positive),
    ("steps", [2] * 6, [150, 150, 150, 150, 200, 150], None,
     "optimisation steps per level 5…0 (None: epochs × batches per epoch)", _six_positive),
    ("epochs", [8, 8, 17, 17, 25, 50], [8, 8, 17, 17, 25, 50], [8, 8, 17, 17, 25, 50],
     "epochs per level 5…0 when steps is None", _six_positive),
    ("batch_size", [2] * 6, [8, 8, 8, 8, 2, 2], [50, 50, 50, 50, 16, 12], "batch size per level 5…0", _six_positive),
    ("lr", 3e-3, 3e-3, 5e-5, "Adam learning rate of every level", study.positive),
    ("content_loss", "none", "none", "vgg19-imagenet", "content term of levels 3–0", CONTENT_LOSSES),
    ("vgg_root", "", "", "", "folder holding vgg19-dcbb9e9d.pth (empty: the data cache)", {"recipe": False}),
    ("ablation", ["none", "vgg19-random"], [], [], "content terms compared at level 1 (empty: no comparison)",
     lambda v: None if set(v) <= set(CONTENT_LOSSES[1:]) else f"entries must be among {CONTENT_LOSSES[1:]}"),
    ("eval_patches", 2, 8, 0, "test patches of the per-level PSNR in training (0: all)", study.non_negative),
    ("grid", 2, 4, 6, "test patches in the image grid", {"check": study.positive, "recipe": False}))


def vgg_weights(P: dict) -> Path | None:
    """The ImageNet VGG-19 file when ``content_loss`` is ``'vgg19-imagenet'`` (else None), looked up
    in ``vgg_root`` or the data cache, never downloaded at run time (the error says how to get it)."""
    if P["content_loss"] != "vgg19-imagenet":
        return None
    return data.prepare("vgg19-imagenet", P["vgg_root"] or None, download=False) / \
        data.entry("vgg19-imagenet")["layout"][0]["path"]


def naive_rendering(packed: torch.Tensor, black_level: float = ZURICH_BLACK_LEVEL,
                    white_level: float = ZURICH_WHITE_LEVEL, gamma: float = 2.2) -> torch.Tensor:
    """The baseline rendering of ``packed`` (``float32`` B×4×h×w, :func:`reprolib.data.pack_zurich`:
    digital numbers / 1020): levels normalised, gray-world white balance per image, bilinear ×2,
    gamma ``1/gamma``. Returns ``float32`` B×3×2h×2w sRGB-like in ``[0, 1]``."""
    x = (packed * RAW_SCALE - black_level).clamp(min=0) / (white_level - black_level)
    blue, green_r, red, green_b = x.unbind(1)
    green = (green_r + green_b) / 2
    mean_g = green.mean(dim=(-2, -1), keepdim=True)
    red = red * mean_g / red.mean(dim=(-2, -1), keepdim=True).clamp(min=1e-6)
    blue = blue * mean_g / blue.mean(dim=(-2, -1), keepdim=True).clamp(min=1e-6)
    rgb = F.interpolate(torch.stack([red, green, blue], 1), scale_factor=2, mode="bilinear", align_corners=False)
    return rgb.clamp(0, 1) ** (1 / gamma)


def level_plan(P: dict, n_train: int) -> dict[int, dict]:
    """``{level: {"steps", "batch", "epochs"}}`` for levels 5 → 0: ``P["steps"]`` when given (``epochs``
    None), else ``P["epochs"]`` × the whole batches of the training set (the official loop drops the last)."""
    plan = {}
    for i, level in enumerate(LEVELS):
        batch, epochs = int(P["batch_size"][i]), None if P.get("steps") is not None else int(P["epochs"][i])
        if P.get("max_images"):  # a capped check: a batch is at most the capped training set
            batch = min(batch, n_train)
        if batch > n_train:
            raise ValueError(f"batch size {batch} of level {level} exceeds the {n_train} training pairs")
        steps = study.capped(int(P["steps"][i]) if epochs is None else epochs * (n_train // batch), P.get("max_steps"))
        plan[level] = {"steps": steps, "batch": batch, "epochs": epochs}
    return plan


def level_checkpoint(P: dict, plan: dict, level: int, data_fingerprint: str, ablation: str | None = None):
    """``(path, key digest)`` of ``level``'s checkpoint (:func:`reprolib.study.shared_checkpoint`);
    ``ablation``: level 1 trained with that content term from the chain's level-2 weights."""
    key = {"width": P["width"], "seed": P["seed"], "data": data_fingerprint, "lr": P["lr"],
           "content": P["content_loss"], "eval_patches": P["eval_patches"], "ablation": ablation,
           "levels": [[lv, plan[lv]["steps"], plan[lv]["batch"]] for lv in LEVELS[:LEVELS.index(level) + 1]]}
    return study.shared_checkpoint("pynet_shared", f"level{level}" + (f"-{ablation}" if ablation else ""), key)


def train_level(model: PyNET, level: int, train_set: ZurichRawToRGB, test_set: ZurichRawToRGB | None, P: dict,
                plan: dict, content: torch.nn.Module | None, checkpoint: tuple[Path, str] | None,
                desc: str | None = None) -> train.History:
    """Train ``level`` of ``model`` from its current weights with a new Adam for ``plan[level]``
    steps and batch, then log ``test_psnr`` (:func:`evaluate`, first ``P["eval_patches"]`` patches).
    ``checkpoint``: ``(path, key)`` from :func:`level_checkpoint` (resumed when its key matches)."""
    model.set_level(level)
    train_set.set_level(level)
    steps, batch, seed, device = plan[level]["steps"], plan[level]["batch"], P["seed"], P["device"]

    def batch_fn(step):
        return train_set.batch(train.epoch_batch(len(train_set), batch, seed, level, step))

    def evaluate_fn(m):
        return {"test_psnr": float(evaluate(m, test_set, level, False, device, P["eval_patches"])["psnr"].mean())}

    cfg = train.TrainConfig(steps=steps, lr=P["lr"], log_every=max(1, min(10, steps // 10)),
                            checkpoint_every=max(1, min(max(200, steps // 100), steps)), **study.checkpointing(P))
    return train.train(model, batch_fn, lambda m, b: pynet_loss(level, m(b[0]), b[1], content), cfg,
                       checkpoint=checkpoint and checkpoint[0], config_key=checkpoint and checkpoint[1],
                       evaluate_fn=evaluate_fn if test_set is not None else None, desc=desc or f"PyNET level {level}",
                       device=device, num_workers=P["num_workers"],
                       tensorboard=checkpoint and checkpoint[0].with_suffix(".tb"))


def train_levels(model: PyNET, train_set: ZurichRawToRGB, test_set: ZurichRawToRGB, P: dict,
                 content: torch.nn.Module | None, data_fingerprint: str) -> dict[int, train.History]:
    """Train PyNET levels 5 → 0, each from the previous level's weights and checkpointed
    (:func:`level_checkpoint`). Returns ``{level: History}`` in training order."""
    plan = level_plan(P, len(train_set))
    return {level: train_level(model, level, train_set, test_set, P, plan, content,
                               level_checkpoint(P, plan, level, data_fingerprint)) for level in LEVELS}


def evaluate(model, dataset: ZurichRawToRGB, level: int = 0, ms_ssim: bool = True, device: str = "cpu",
             limit: int = 0) -> pd.DataFrame:
    """One row per test patch (batch 1; the first ``limit``, 0: all) of ``model`` — a :class:`PyNET`,
    run at ``level``, or a function of the packed input such as :func:`naive_rendering` — against the
    target at ``level``'s size: ``psnr`` (:func:`~reprolib.metrics.psnr_official`), ``gradient_ratio``
    and, with ``ms_ssim``, ``ms_ssim`` (official) and ``ms_ssim_torchmetrics`` (both sides ≥ 176 px)."""
    net = isinstance(model, PyNET)
    if net:
        was_training, old_level = model.training, model.level
        model.eval().set_level(level)
    rows = []
    with torch.no_grad():
        for i in range(min(limit, len(dataset)) if limit else len(dataset)):
            out, y = model(dataset.raw(i)[None].to(device)), dataset.target(i, level)[None].to(device)
            rows.append({"index": i, "psnr": float(psnr_official(out, y)), "gradient_ratio": gradient_ratio(out, y)})
            if ms_ssim:
                rows[-1]["ms_ssim"] = float(ms_ssim_official(y, out))  # argument order of the official evaluation
                if min(y.shape[-2:]) >= 176:
                    rows[-1]["ms_ssim_torchmetrics"] = float(metrics.ms_ssim(out, y))
    if net:
        model.train(was_training).set_level(old_level)
    return pd.DataFrame(rows)


def summarise(results: dict) -> pd.DataFrame:
    """Mean of each metric per method (``results``: name → :func:`evaluate` frame), with ``patches``."""
    return pd.DataFrame({name: {**{c: df[c].mean() for c in ("psnr", "ms_ssim", "ms_ssim_torchmetrics") if c in df},
                                "patches": len(df)} for name, df in results.items()}).T


def mean_colour_psnr(train_set: ZurichRawToRGB, test_set: ZurichRawToRGB, level: int, limit: int = 0) -> float:
    """PSNR (dB) of the training targets' mean colour predicted at every pixel, on the first ``limit``
    test patches (0: all) at ``level``'s size: what an output blind to the patch's own colour scores."""
    mean = torch.stack([train_set.target(i, 5).mean(dim=(1, 2)) for i in range(len(train_set))]).mean(0)
    targets = (test_set.target(i, level)[None] for i in range(min(limit, len(test_set)) if limit else len(test_set)))
    return float(np.mean([float(psnr_official(mean.view(1, 3, 1, 1).expand_as(y), y)) for y in targets]))


def gradient_ratio(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute image gradient of ``pred`` over ``target``'s (B×3×H×W): below 1 the output is
    smoother than the target (lost texture), above 1 it adds detail or noise."""
    def energy(t):
        return ((t[..., 1:, :] - t[..., :-1, :]).abs().mean() + (t[..., :, 1:] - t[..., :, :-1]).abs().mean())

    return float(energy(pred) / energy(target).clamp(min=1e-8))


def content_ablation(train_set: ZurichRawToRGB, test_set: ZurichRawToRGB, P: dict, histories: dict,
                     data_fingerprint: str) -> tuple[pd.DataFrame, dict]:
    """Level 1 trained from the chain's level-2 weights per content term of ``P["ablation"]`` (the
    chain's own level 1 is the arm ``P["content_loss"]``), tested at level 1: a table by content
    term (``PSNR``, official ``MS-SSIM``, mean :func:`gradient_ratio`, ``final training loss``) and
    the new runs' histories."""
    plan = level_plan(P, len(train_set))
    states = {lv: train.load_checkpoint(level_checkpoint(P, plan, lv, data_fingerprint)[0]) for lv in (2, 1)}
    if any(s is None for s in states.values()):
        raise FileNotFoundError("the level-2 and level-1 checkpoints are missing: train the levels first")
    own = PyNET(level=1, width=P["width"]).to(P["device"])
    own.load_state_dict(states[1]["model"])  # the chain's weights at the end of level 1
    arms, new = {P["content_loss"]: own}, {}
    for kind in P["ablation"]:
        if kind != P["content_loss"]:
            arms[kind] = PyNET(level=1, width=P["width"]).to(P["device"])
            arms[kind].load_state_dict(states[2]["model"])
            content = content_network(kind, seed=P["seed"], device=P["device"])
            new[kind] = train_level(arms[kind], 1, train_set, test_set, P, plan, content,
                                    level_checkpoint(P, plan, 1, data_fingerprint, kind), f"level 1, content {kind}")
    rows = {}
    for kind, arm in arms.items():
        df = evaluate(arm, test_set, 1, device=P["device"])
        rows[kind] = {"PSNR": np.mean(df["psnr"].tolist()), "MS-SSIM": np.mean(df["ms_ssim"].tolist()),
                      "gradient ratio": np.mean(df["gradient_ratio"].tolist()),
                      "final training loss": (new.get(kind) or histories[1]).last("loss")}
    return pd.DataFrame(rows).T.rename_axis("content term at level 1"), new


def loss_name(level: int, content: bool = True) -> str:
    """The form of :func:`~reprolib.losses.pynet_loss` at ``level`` (``content``: with the content term)."""
    name = {5: "MSE", 4: "MSE", 0: "MSE + content + 0.4·(1−MS-SSIM)"}.get(level, "10·MSE + content")
    return name if content else name.replace(" + content", "")
