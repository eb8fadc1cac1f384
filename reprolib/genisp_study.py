"""The GenISP study (``notebooks/genisp.ipynb``): GenISP trained on RAW-NOD's Sony through a frozen
detector (:mod:`reprolib.detect`), tested on its Nikon."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

from . import data, detect, evaluate, raw, study, synth, train
from .models.genisp import GenISP, gray_world_loss

__all__ = ["PAPER_RESIZE", "MINI_RESIZE", "SMOKE_DATA", "INPUT_KINDS", "ROWS", "PROTOCOL", "PARAMETERS",
           "table_rows", "preprocess", "RawNODInputs", "augment", "StepBatches",
           "genisp_loss", "train_genisp", "results_table", "build_detector", "loss_summary", "metric_rows",
           "cst_statistics", "plot_cst_direction", "plot_detections"]
_EPOCH_ORDER, _AUGMENTATION = train.STREAMS["genisp_epoch_order"], train.STREAMS["genisp_augmentation"]

#: the paper's keras-retinanet resize rule: (short side, long-side limit)
PAPER_RESIZE = (800, 1333)
#: the rule at the miniature's scale: raw-nod-mini's packed 192×288 images stay 192×288
MINI_RESIZE = (192, 320)
#: the smoke profile's tiny raw-nod-mini (seconds to generate): 128×192 raw → 64×96 packed
SMOKE_DATA = {"height": 128, "width": 192, "sony": (8, 1, 1), "nikon": (1, 1, 4)}
#: what each kind of input is (for the tables)
INPUT_KINDS = {"conventional": "LibRaw postprocess, camera WB, no auto-brightening, sRGB gamma, half size",
               "raw": "packed raw, greens averaged (camera R, G, B), black-subtracted, no gain",
               "xyz": "packed raw → CIE XYZ with the inverse of rgb_xyz_matrix, no gain",
               "xyz-backwards": "packed raw × rgb_xyz_matrix (the student reproductions' direction), no gain"}
#: Table 1 rows: (row id, label, detector input kind, GenISP in front?)
ROWS = [("conventional", "Conventional ISP → detector", "conventional", False),
        ("raw", "Raw (packed, greens averaged), no CST → detector", "raw", False),
        ("raw-cst", "Raw + CST (camera → XYZ), no learning → detector", "xyz", False),
        ("genisp-no-cst", "GenISP without CST → detector", "raw", True),
        ("genisp", "GenISP (raw + CST) → detector", "xyz", True)]
PROTOCOL = evaluate.DETECTION_PROTOCOL + (" Test set: the camera GenISP never saw in training. Every row "
                                          "goes through the same frozen detector.")

PARAMETERS = study.parameter_table(
    *study.common_parameters("RAW-NOD folder (Sony/, Nikon/, annotations)"), *study.TRAINING_ROWS,
    ("detector", "mini", "mini", "full", "mini: small RetinaNet pretrained here on well-lit scenes; "
     "full: COCO RetinaNet R50-FPN v2", ("mini", "full")),
    ("detector_weights", "", "", "", "full detector's COCO state dict (file or folder); empty = the manifest entry",
     {"recipe": False}),
    ("detector_steps", 10, 400, 400, "mini detector: well-lit pretraining steps (batch 8)", study.positive),
    ("detector_pool", 16, 512, 512, "mini detector: number of distinct well-lit training scenes", study.positive),
    ("detector_test_images", 4, 64, 64, "mini detector: well-lit test scenes", study.positive),
    ("min_well_lit_ap50", 0.0, 0.5, 0.0, "mini detector: stop unless its well-lit AP50 reaches this"),
    ("epochs", 1, 4, 15, "GenISP training epochs (paper: 15)", study.positive),
    ("batch_size", 8, 8, 8, "GenISP batch size (paper: 8)", study.positive),
    ("lr", 1e-2, 1e-2, 1e-2, "Adam learning rate (paper: 1e-2, ×0.1 after 1/3 and 2/3 of the epochs)", study.positive),
    ("use_cst", True, True, True, "run the rows with the camera → XYZ transform (raw + CST, GenISP)"),
    ("cst_matrix", "inverse", "inverse", "inverse", "inverse = camera → XYZ correctly; backwards = "
     "rgb_xyz_matrix as the student reproductions", ("inverse", "backwards")),
    ("gray_world_weight", 0.0, 0.0, 0.0, "weight of the optional gray-world regulariser (0 = off)", study.non_negative),
    ("resize_min", 64, MINI_RESIZE[0], PAPER_RESIZE[0], "resize rule: short side (paper: 800)", study.positive),
    ("resize_max", 128, MINI_RESIZE[1], PAPER_RESIZE[1], "resize rule: long-side limit (paper: 1333)", study.positive),
    ("grid_images", 2, 4, 4, "test images in the detection grid", {"check": study.positive, "recipe": False}))


def table_rows(use_cst: bool = True, cst_matrix: str = "inverse") -> list[tuple]:
    """The Table 1 rows a run computes: :data:`ROWS`, no CST rows unless ``use_cst``, CST backwards if asked."""
    if cst_matrix not in ("inverse", "backwards"):
        raise ValueError(f"cst_matrix must be 'inverse' or 'backwards', got {cst_matrix!r}")
    return [(row_id, label.replace("CST", "CST backwards"), "xyz-backwards", learned)
            if kind == "xyz" and cst_matrix == "backwards" else (row_id, label, kind, learned)
            for row_id, label, kind, learned in ROWS if use_cst or kind != "xyz"]


def preprocess(frame: raw.RawFrame, kind: str = "xyz", min_side: int = PAPER_RESIZE[0],
               max_side: int = PAPER_RESIZE[1]) -> torch.Tensor:
    """One raw frame (:func:`reprolib.raw.read`) → the ``float32`` 3×h×w image a Table 1 row feeds
    GenISP or the detector; ``kind``: a key of :data:`INPUT_KINDS`. (h, w) =
    ``retinanet_resize_shape(H/2, W/2, min_side, max_side)``; raw kinds linear, black-subtracted, no
    gain; conventional in ``[0, 1]``. ``ValueError``: unknown kind, or CST without colour matrix."""
    if kind == "conventional":
        rgb = raw.conventional_pipeline(frame.path, half_size=True)
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    elif kind in ("raw", "xyz", "xyz-backwards"):
        image = torch.from_numpy(raw.pack_rgb(frame.mosaic, frame.cfa))
        if kind != "raw":
            matrix = frame.camera_to_xyz if kind == "xyz" else frame.xyz_to_camera
            if matrix is None:
                raise ValueError(f"{frame.path}: no colour matrix in the file, so no camera → XYZ transform")
            m = torch.as_tensor(np.asarray(matrix, dtype=np.float32)).to(image)
            image = torch.einsum("ij,...jhw->...ihw", m, image)  # row of the matrix = output channel; not clipped
    else:
        raise ValueError(f"kind must be one of {sorted(INPUT_KINDS)}, got {kind!r}")
    return raw.resize_keep_aspect(image.float(), min_side, max_side).contiguous()


class RawNODInputs(data.RawNODDetection):
    """One RAW-NOD camera (``'Sony'``/``'Nikon'``) and split, pre-processed (:func:`preprocess`) for one Table 1
    row. Item: ``(image, target)``: ``float32`` 3×h×w; ``boxes`` in its pixels, ``size`` = (h, w)."""

    def __init__(self, root, camera: str, split: str, kind: str = "xyz", min_side: int = PAPER_RESIZE[0],
                 max_side: int = PAPER_RESIZE[1], in_memory: bool = False, limit: int | None = None):
        if kind not in INPUT_KINDS:
            raise ValueError(f"kind must be one of {sorted(INPUT_KINDS)}, got {kind!r}")
        self.camera, self.split, self.kind, self.min_side, self.max_side = camera, split, kind, min_side, max_side
        super().__init__(*data.raw_nod_paths(root, camera, split), transform=self._transform, in_memory=in_memory,
                         limit=limit)

    def _transform(self, frame, target):
        image = preprocess(frame, self.kind, self.min_side, self.max_side)
        return image, data.scale_target(target, tuple(image.shape[-2:]))


def augment(image: torch.Tensor, target: dict, rng: np.random.Generator):
    """GenISP's training augmentation of a ``float32`` 3×H×W image and its target (boxes N×4 xyxy): brightness ×
    log-uniform [0.7, 1.4]; contrast about the channel means × U(0.8, 1.2), clipped at 0; horizontal flip (p = 0.5);
    zoom: a random 80–100 % crop resized back, boxes keeping < 40 % of their area or thinner than 2 px dropped."""
    h, w = image.shape[-2:]
    boxes, labels = target["boxes"].clone(), target["labels"].clone()
    brightness, contrast = math.exp(rng.uniform(math.log(0.7), math.log(1.4))), rng.uniform(0.8, 1.2)
    mean = image.mean(dim=(-2, -1), keepdim=True)
    image = ((image - mean) * contrast + mean).clamp_min(0) * brightness
    if rng.random() < 0.5:
        image = image.flip(-1)
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    s = rng.uniform(0.8, 1.0)
    ch, cw = max(2, int(round(h * s))), max(2, int(round(w * s)))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    image = F.interpolate(image[None, :, y0:y0 + ch, x0:x0 + cw], size=(h, w), mode="bilinear",
                          align_corners=False)[0]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    shifted = (boxes - torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype))
    shifted = shifted.clamp_min(0).minimum(torch.tensor([cw, ch, cw, ch], dtype=boxes.dtype))
    new = shifted * torch.tensor([w / cw, h / ch, w / cw, h / ch], dtype=boxes.dtype)
    kept_area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    keep = (kept_area >= 0.4 * area) & (new[:, 2] - new[:, 0] >= 2) & (new[:, 3] - new[:, 1] >= 2)
    return image.contiguous(), {**target, "boxes": new[keep], "labels": labels[keep]}


class StepBatches:
    """``step → (images, targets)`` for :func:`reprolib.train.train`: the batch of :func:`reprolib.train.epoch_batch`
    (stream ``genisp_epoch_order``), image ``j`` of step ``k`` augmented with ``default_rng([seed, STREAMS[
    "genisp_augmentation"], k, j])``: a function of the step alone, so ``train``'s DataLoader workers can read it."""

    def __init__(self, dataset, batch_size: int, seed: int, augment: bool = True):
        if len(dataset) < batch_size:
            raise ValueError(f"{len(dataset)} training images is fewer than one batch of {batch_size}")
        self.dataset, self.batch_size, self.seed, self.augment = dataset, batch_size, seed, augment
        self.steps_per_epoch = len(dataset) // batch_size

    def indices(self, step: int) -> np.ndarray:
        """Dataset indices of the batch of ``step``."""
        return train.epoch_batch(len(self.dataset), self.batch_size, self.seed, _EPOCH_ORDER, step)

    def __call__(self, step: int):
        """The batch of ``step``: lists of 3×h×w images and their targets."""
        items = [self.dataset[int(i)] for i in self.indices(step)]
        if self.augment:
            items = [augment(*item, np.random.default_rng([self.seed, _AUGMENTATION, step, j]))
                     for j, item in enumerate(items)]
        return [image for image, _ in items], [target for _, target in items]


def genisp_loss(model: GenISP, detector, batch, gray_world_weight: float = 0.0, device: str = "cpu") -> torch.Tensor:
    """Focal + smooth-L1 loss of the frozen detector on GenISP's outputs for a :class:`StepBatches` batch
    (same-size images as one B×3×h×w tensor), plus ``gray_world_weight ×`` ``gray_world_loss`` (0 = off)."""
    images = [im.to(device) for im in batch[0]]
    targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in batch[1]]
    same_size = len({tuple(im.shape) for im in images}) == 1
    outputs = list(model(torch.stack(images))) if same_size else [model(im[None])[0] for im in images]
    losses = detect.detection_losses(detector, outputs, targets)
    loss = losses["classification"] + losses["bbox_regression"]
    if gray_world_weight:
        loss = loss + gray_world_weight * torch.stack([gray_world_loss(o[None]) for o in outputs]).mean()
    return loss


def train_genisp(detector, train_set, P: dict, desc: str = "GenISP", progress: bool = True):
    """Train a GenISP on a :class:`RawNODInputs` through a frozen detector (on ``P['device']``) by
    the paper's recipe (``epochs``, ``batch_size``, Adam ``lr`` ×0.1 after 1/3 and 2/3 of the
    epochs, :func:`augment`, optional ``gray_world_weight``), loss logged per epoch, checkpointed in
    ``<results>/genisp_shared/`` under a key of everything that changes its weights (input kind,
    camera, images, the detector's weights digest; not the device or the paths), so a run resumes
    wherever it is started. Returns ``(eval-mode model, History)``."""
    if not detect.is_frozen(detector):
        raise ValueError("the detector must be frozen first (reprolib.detect.freeze)")
    torch.manual_seed(P["seed"])
    model = GenISP().to(P["device"])
    batches = StepBatches(train_set, P["batch_size"], P["seed"])
    per_epoch, epochs = batches.steps_per_epoch, P["epochs"]
    milestones = tuple(sorted({max(1, round(epochs / 3)) * per_epoch, max(1, round(2 * epochs / 3)) * per_epoch}))
    cfg = train.TrainConfig(steps=study.capped(epochs * per_epoch, P["max_steps"]), lr=P["lr"], milestones=milestones,
                            log_every=per_epoch, checkpoint_every=per_epoch, **study.checkpointing(P))
    path, key = study.shared_checkpoint("genisp_shared", train_set.kind, {
        "cfg": repr(cfg), "kind": train_set.kind, "camera": train_set.camera, "images": len(train_set),
        "batch": P["batch_size"], "seed": P["seed"], "gray_world": P["gray_world_weight"],
        "detector": detect.weights_digest(detector)})
    history = train.train(
        model, batches, lambda m, batch: genisp_loss(m, detector, batch, P["gray_world_weight"], P["device"]), cfg,
        checkpoint=path, desc=desc, config_key=key, progress=progress, num_workers=P["num_workers"],
        tensorboard=path.with_suffix(".tb"))
    return model.eval(), history


def results_table(results: dict, rows: list[tuple]) -> pd.DataFrame:
    """Table 1: ``{row id: evaluate.detection_row(...)}`` for the :func:`table_rows` ``rows``, one row each."""
    return pd.DataFrame([{"row": label, "detector input": ("GenISP output, from " if learned else "") + INPUT_KINDS[kind],
                          **{k: results[row_id][k] for k in ("AP", "AP50", "AP75")},
                          "input mean": results[row_id]["input_mean"], "input std": results[row_id]["input_std"]}
                         for row_id, label, kind, learned in rows]).set_index("row")


def build_detector(root, P: dict):
    """The frozen detector of a run, ``(detector, info)``: ``full`` the COCO RetinaNet of ``detector_weights``
    (:func:`reprolib.detect.coco_weights`); ``mini`` :func:`reprolib.detect.pretrain_mini_detector` on well-lit scenes
    of the packed, resized training images' size, ``RuntimeError`` if its well-lit AP50 < ``min_well_lit_ap50``."""
    if P["detector"] == "full":
        weights = detect.coco_weights(P["detector_weights"])
        detector, info = detect.full_retinanet(weights, P["resize_min"], P["resize_max"]), {"weights": weights.name}
        return detector.to(P["device"]).eval(), info
    first = data.read_raw_nod(data.raw_nod_paths(root, "Sony", "train")[1]).images[0]
    h, w = raw.retinanet_resize_shape(first.height // 2, first.width // 2, P["resize_min"], P["resize_max"])
    steps = P["detector_steps"]
    detector, info = detect.pretrain_mini_detector(detect.MiniDetectorConfig(
        height=h, width=w, min_size=P["resize_min"], max_size=P["resize_max"], steps=steps,
        milestones=(int(steps * 0.72), int(steps * 0.91)), pool=P["detector_pool"],
        test_images=P["detector_test_images"], seed=P["seed"]))
    if info["well_lit"]["AP50"] < P["min_well_lit_ap50"]:
        raise RuntimeError(f"the mini detector's well-lit AP50 {info['well_lit']['AP50']:.3f} is below "
                           f"{P['min_well_lit_ap50']}: train it longer (detector_steps)")
    return detector.to(P["device"]).eval(), info


def loss_summary(histories: dict) -> pd.DataFrame:
    """First- vs last-epoch detection loss on the training camera per trained GenISP (label → History)."""
    df = pd.DataFrame({label: {"first epoch": h.curves["loss"][0]["value"], "last epoch": h.curves["loss"][-1]["value"],
                               "epochs": len(h.curves["loss"]), "steps": h.curves["loss"][-1]["step"],
                               "training time (s)": h.seconds} for label, h in histories.items()}).T
    df = df.astype({"epochs": int, "steps": int})
    df["change (%)"] = 100 * (df["last epoch"] / df["first epoch"] - 1)
    return df


def metric_rows(table, rows: list[tuple], protocol: str, split: str, detector_info: dict | None = None) -> list[dict]:
    """Run-record rows of Table 1: GenISP under the published keys ``genisp/nikon/*``, the conventional ISP under
    ``genisp/conventional/*`` (a backwards-CST row gets keys of its own), and the mini detector's well-lit AP50."""
    out = [{"key": "genisp/detector/well_lit_ap50", "model": "mini detector (frozen)", "metric": "AP50",
            "value": round(float(detector_info["well_lit"]["AP50"]), 5), "protocol": "well-lit synthetic scenes, "
            "same metric code", "split": "well-lit synthetic test"}] if detector_info and "well_lit" in detector_info else []
    for row_id, label, kind, _ in rows:
        prefix = {"genisp": "genisp/nikon", "conventional": "genisp/conventional"}.get(row_id, f"genisp/{row_id}")
        prefix = f"genisp/{row_id}-backwards-cst" if kind == "xyz-backwards" else prefix
        out += evaluate.metric_rows(table, label, label, prefix, protocol, [(m, m.lower(), m) for m in ("AP", "AP50", "AP75")],
                                    split=split, count=None, digits=5)
    return out


def cst_statistics(frame: raw.RawFrame, min_side: int, max_side: int):
    """What the CST's direction does to one image: ``(images, table)``, ``{kind: 3×h×w}`` for ``raw``, ``xyz``,
    ``xyz-backwards`` and per kind the channel means, the share of negative values and the chromaticity (x, y)
    of the mean colour (for XYZ; D65 white is (0.3127, 0.3290))."""
    names = {"raw": "camera RGB (packed)", "xyz": "XYZ = inv(rgb_xyz_matrix) · camera RGB (correct)",
             "xyz-backwards": "'XYZ' = rgb_xyz_matrix · camera RGB (backwards)"}
    images, rows = {k: preprocess(frame, k, min_side, max_side) for k in names}, []
    for k, im in images.items():
        m = im.mean(dim=(1, 2)).double()
        x, y = (float(m[0] / m.sum()), float(m[1] / m.sum())) if k != "raw" else (float("nan"),) * 2
        rows.append({"input": names[k], **{f"mean ch{i}": float(m[i]) for i in range(3)},
                     "negative values (%)": 100 * float((im < 0).float().mean()), "chromaticity x": x, "chromaticity y": y})
    return images, pd.DataFrame(rows).set_index("input")


def plot_cst_direction(frame: raw.RawFrame, images: dict):
    """XYZ from the inverse of ``rgb_xyz_matrix`` (correct) beside XYZ from the matrix itself (backwards),
    ``images`` from :func:`cst_statistics`, through the same gain and XYZ → sRGB (display only)."""
    gain = 0.18 / max(float(images["xyz"][1].mean()), 1e-8)  # mean luminance Y of the correct XYZ → 18 %
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (title, kind) in zip(axes, [("camera → XYZ with inv(rgb_xyz_matrix) (correct)", "xyz"),
                                        ("camera → 'XYZ' with rgb_xyz_matrix (backwards)", "xyz-backwards")]):
        linear = synth.xyz_to_linear_srgb(images[kind].double().numpy().transpose(1, 2, 0) * gain)
        ax.imshow(synth.linear_to_srgb(np.clip(linear, 0.0, 1.0)))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{frame.path.name}: both shown × {gain:.0f}, XYZ → sRGB (display only)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_detections(results: dict, labels: dict, n_images: int = 4, score_threshold: float = 0.5):
    """One row per Table 1 row (``{row id: evaluate.detection_row(...)}``, ``labels``: row id → label), one column
    per test image as the detector receives it (clipped to [0, 1], no brightening), with its detections of score
    ≥ ``score_threshold`` (solid) and the ground truth (dashed white)."""
    def box(ax, b, **style):  # b: xyxy
        ax.add_patch(Rectangle(b[:2].tolist(), *(b[2:] - b[:2]).tolist(), fill=False, **style))

    ids = [r for r in results if results[r]["examples"]]
    n = min(n_images, min(len(results[r]["examples"]) for r in ids))
    fig, axes = plt.subplots(len(ids), n, figsize=(2.9 * n, 2.1 * len(ids)), squeeze=False)
    for (i, row_id), j in ((row, j) for row in enumerate(ids) for j in range(n)):
        r, ax = results[row_id], axes[i, j]
        ax.imshow(r["examples"][j].clamp(0, 1).numpy().transpose(1, 2, 0))
        for b in r["targets"][j]["boxes"]:
            box(ax, b, ec="white", ls="--", lw=0.8)
        p = r["predictions"][j]
        for b, label in zip(p["boxes"][p["scores"] >= score_threshold], p["labels"][p["scores"] >= score_threshold]):
            box(ax, b, ec={1: "tab:red", 2: "tab:orange", 3: "tab:cyan"}.get(int(label), "tab:gray"), lw=1.2)
        ax.set(xticks=[], yticks=[])
        if j == 0:
            ax.set_ylabel(labels[row_id].replace(" → detector", "").replace(", ", ",\n"), fontsize=7)
    fig.suptitle(f"Test camera, as each row's detector input sees it; detections with score ≥ "
                 f"{score_threshold} (red person, orange bicycle, cyan car), ground truth dashed", fontsize=9)
    fig.tight_layout()
    return fig
