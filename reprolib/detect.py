"""Object detectors for the GenISP study: built, frozen, and scored.

GenISP (Morawski et al., CVPRW 2022) trains a neural ISP *through* an object detector that was
trained on ordinary (well-lit, sRGB) images and then frozen: the detector's weights never change,
only the ISP in front of it learns. Two detectors play that role here:

* ``full`` — torchvision's RetinaNet ResNet-50-FPN v2 with its COCO weights
  (:func:`full_retinanet`; the weights are the ``retinanet-resnet50-fpn-v2-coco`` entry of
  ``data_manifest.yaml``), at the paper's resize rule (``min_size=800``, ``max_size=1333``).
* ``mini`` — no COCO weights can be had offline, so the miniature first trains its own
  "pretrained" detector: a small torchvision :class:`~torchvision.models.detection.RetinaNet`
  (:func:`mini_retinanet`) trained from scratch on well-lit procedural street scenes of the same
  three classes (:func:`pretrain_mini_detector`), then frozen exactly like the COCO one. It is cached
  by a hash of its configuration in ``data.cache_dir()/detectors`` so it is trained once.

Freezing (:func:`freeze`) is more than ``requires_grad_(False)``: torchvision's RetinaNet returns
its losses only in train mode, and train mode makes a ``BatchNorm2d`` use batch statistics and
overwrite its running averages. The v2 COCO model has plain ``BatchNorm2d`` in its ResNet-50
(torchvision only freezes them in the v1 model), so every BatchNorm is replaced by a
``FrozenBatchNorm2d`` holding the same statistics — the detector then computes the same function
in train and eval mode, and nothing in it can change.

Labels are COCO category ids (1 person, 2 bicycle, 3 car — RAW-NOD's classes) for both detectors.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.resnet import BasicBlock
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = [
    "RAW_NOD_LABELS", "tiny_resnet_fpn", "mini_retinanet", "full_retinanet", "freeze", "is_frozen",
    "detection_losses", "detect", "average_precision", "MiniDetectorConfig", "well_lit_scenes",
    "pretrain_mini_detector", "load_mini_detector",
]

#: COCO category ids of RAW-NOD's three classes (person, bicycle, car)
RAW_NOD_LABELS = (1, 2, 3)


# ------------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------------

def _stage(in_channels: int, out_channels: int) -> nn.Module:
    """One stride-2 ResNet stage of a single BasicBlock (with its 1×1 projection shortcut)."""
    downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False),
                               nn.BatchNorm2d(out_channels))
    return BasicBlock(in_channels, out_channels, stride=2, downsample=downsample)


def tiny_resnet_fpn(widths: tuple = (32, 64, 128, 256), fpn_channels: int = 64) -> BackboneWithFPN:
    """A small ResNet (one BasicBlock per stage) with an FPN, RetinaNet style (GenISP study, mini).

    Body: conv3×3 stride 2 (3→``widths[0]``), then four stride-2 BasicBlock stages of widths
    ``widths`` (strides 4, 8, 16, 32). FPN on the last three stages (C3–C5) with ``fpn_channels``
    channels, plus RetinaNet's P6 / P7 (strides 64, 128) from P5.

    Input: ``float32`` B×3×H×W (normalised by the detector's transform). Output: an ordered dict of
    five feature maps B×``fpn_channels``×H/s×W/s, s = 8 … 128.
    """
    c0, c1, c2, c3 = widths
    body = nn.Sequential()
    body.add_module("stem", nn.Sequential(nn.Conv2d(3, c0, 3, stride=2, padding=1, bias=False),
                                          nn.BatchNorm2d(c0), nn.ReLU(inplace=True)))
    body.add_module("layer1", _stage(c0, c0))
    body.add_module("layer2", _stage(c0, c1))
    body.add_module("layer3", _stage(c1, c2))
    body.add_module("layer4", _stage(c2, c3))
    return BackboneWithFPN(body, return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
                           in_channels_list=[c1, c2, c3], out_channels=fpn_channels,
                           extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels))


def mini_retinanet(min_size: int = 192, max_size: int = 320, widths: tuple = (32, 64, 128, 256),
                   fpn_channels: int = 64, anchor_base: int = 16, head_convs: int = 2) -> RetinaNet:
    """The mini study's detector: torchvision's RetinaNet on :func:`tiny_resnet_fpn` (GenISP study).

    * Anchors: three scales (×1, ×2^(1/3), ×2^(2/3)) and three aspect ratios (0.5, 1, 2) per level,
      base sizes ``anchor_base`` · 2^k on P3 … P7 — torchvision's layout (32 … 512 on 800-pixel
      images) scaled down to the miniature's 192-pixel images.
    * Heads: torchvision's RetinaNet heads with GroupNorm (16 groups, no running statistics), cut
      from four to ``head_convs`` conv3×3 layers per branch: on the 2-core CPU of the miniature
      the heads on P3 cost as much as the whole backbone.
    * Box loss: smooth-L1 (see :func:`_use_smooth_l1`), classification: torchvision's α-balanced
      focal loss (α = 0.25, γ = 2) — the losses of the paper's (keras-)RetinaNet.
    * ``min_size`` / ``max_size`` are those of the study's own resize rule, so that torchvision's
      transform does not resize the (already resized) input again; 100 detections per image
      (COCO's ``maxDets``).
    * ``num_classes = 4`` so that the class index *is* the COCO id (index 0 is never a target).

    Returns:
        an untrained :class:`~torchvision.models.detection.RetinaNet` (train it with
        :func:`pretrain_mini_detector`). Input: list of ``float32`` 3×H×W images, roughly
        ``[0, 1]`` sRGB (normalised inside with ImageNet mean / std).
    """
    sizes = tuple(tuple(int(round(anchor_base * 2 ** k * 2 ** (j / 3))) for j in range(3)) for k in range(5))
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))
    backbone = tiny_resnet_fpn(widths, fpn_channels)
    head = RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes=4,
                         norm_layer=partial(nn.GroupNorm, 16))
    head.classification_head.conv = head.classification_head.conv[:head_convs]
    head.regression_head.conv = head.regression_head.conv[:head_convs]
    model = RetinaNet(backbone, num_classes=4, min_size=min_size, max_size=max_size,
                      anchor_generator=anchors, head=head, detections_per_img=100)
    return _use_smooth_l1(model)


def full_retinanet(weights: str | Path | None = None, min_size: int = 800, max_size: int = 1333) -> RetinaNet:
    """The full study's detector: torchvision ``retinanet_resnet50_fpn_v2`` (GenISP study, full).

    Args:
        weights: the COCO state dict file (``data.prepare('retinanet-resnet50-fpn-v2-coco')`` /
            ``retinanet_resnet50_fpn_v2_coco-5905b1c5.pth``); ``None`` leaves the weights random
            (for tests of the plumbing only).
        min_size, max_size: torchvision's resize; the paper's keras-retinanet rule is 800 / 1333.

    Returns:
        the detector, **frozen** (:func:`freeze`), box loss set to smooth-L1 (torchvision's v2
        recipe uses GIoU; the paper's RetinaNet uses smooth-L1), 91 COCO classes, 100 detections
        per image.
    """
    from torchvision.models.detection import retinanet_resnet50_fpn_v2

    model = retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91,
                                      min_size=min_size, max_size=max_size, detections_per_img=100)
    # Replace the BatchNorms *before* loading, so the COCO running statistics land in the frozen
    # layers (FrozenBatchNorm2d ignores the num_batches_tracked entries of the file).
    _freeze_batchnorm(model)
    if weights is not None:
        state = torch.load(Path(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return freeze(_use_smooth_l1(model))


def _use_smooth_l1(model: RetinaNet) -> RetinaNet:
    """Set the regression loss to smooth-L1, as in the paper's RetinaNet.

    torchvision's smooth-L1 uses β = 1 on its own box encoding (centre offsets and log sizes,
    weights 1); keras-retinanet used σ = 3 (β = 1/9) on corner offsets divided by 0.2. The
    frozen detector's regression head is what it is; this loss only steers the ISP in front of it.
    """
    model.head.regression_head._loss_type = "smooth_l1"
    return model


def _freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` (in place, recursively) by a ``FrozenBatchNorm2d`` with the
    same affine parameters and running statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)
    return module


def freeze(detector: nn.Module) -> nn.Module:
    """Freeze a detector as GenISP does: BatchNorm → FrozenBatchNorm2d and no parameter trainable.

    Used by the GenISP study for both detectors. After this, train mode (which torchvision needs to
    return losses) and eval mode compute the same function, and no optimiser or forward pass can
    change a weight or a statistic. Returns the same module (modified in place).
    """
    _freeze_batchnorm(detector)
    detector.requires_grad_(False)
    return detector


def is_frozen(detector: nn.Module) -> bool:
    """True when no parameter is trainable and no normalisation layer keeps running statistics."""
    no_grad = not any(p.requires_grad for p in detector.parameters())
    no_stats = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in detector.modules())
    return no_grad and no_stats


# ------------------------------------------------------------------------------------------------
# Using
# ------------------------------------------------------------------------------------------------

def detection_losses(detector: RetinaNet, images, targets: list[dict]) -> dict:
    """The detector's training losses for a batch (GenISP study).

    Puts the detector in train mode (torchvision returns losses only then; a frozen detector
    computes the same function in both modes) — gradients flow back to whatever produced
    ``images``.

    Args:
        images: list of ``float32`` 3×H×W tensors (or a B×3×H×W tensor), any range.
        targets: per image ``{"boxes": float32 N×4 xyxy pixels of that image, "labels": int64 N}``.

    Returns:
        ``{"classification": focal loss, "bbox_regression": smooth-L1 loss}``, scalar tensors,
        each normalised by the number of anchors matched to a box (torchvision's convention).
    """
    detector.train()
    images = list(images)
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    return detector(images, targets)


@torch.no_grad()
def detect(detector: RetinaNet, images, batch_size: int = 8) -> list[dict]:
    """Detections for a list of images, in eval mode (GenISP study).

    Args:
        images: list of ``float32`` 3×H×W tensors (or a B×3×H×W tensor).

    Returns:
        one dict per image: ``boxes`` (N×4 xyxy, pixels of the input), ``scores`` (N), ``labels``
        (N, COCO ids), on the CPU.
    """
    detector.eval()
    images = list(images)
    out = []
    for i in range(0, len(images), batch_size):
        for d in detector(images[i:i + batch_size]):
            out.append({k: v.detach().cpu() for k, v in d.items()})
    return out


def average_precision(predictions: list[dict], targets: list[dict],
                      labels: tuple = RAW_NOD_LABELS) -> dict:
    """COCO AP, AP50 and AP75 with torchmetrics' ``MeanAveragePrecision`` (GenISP study).

    pycocotools backend, boxes xyxy in pixels, IoU thresholds 0.50:0.05:0.95, up to 100 detections
    per image, area ranges ignored ("all"). Predictions with a label outside ``labels`` (a COCO
    detector's other 77 classes) are dropped: only RAW-NOD's classes are scored.

    Returns:
        ``{"AP": …, "AP50": …, "AP75": …}`` as floats in ``[0, 1]`` (``-1`` when there is no box).
    """
    from torchmetrics.detection import MeanAveragePrecision

    keep = torch.tensor(labels)
    preds = []
    for p in predictions:
        m = torch.isin(p["labels"], keep)
        preds.append({"boxes": p["boxes"][m].float(), "scores": p["scores"][m].float(),
                      "labels": p["labels"][m].long()})
    gts = [{"boxes": t["boxes"].float().reshape(-1, 4), "labels": t["labels"].long()} for t in targets]
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update(preds, gts)
    r = metric.compute()
    return {"AP": float(r["map"]), "AP50": float(r["map_50"]), "AP75": float(r["map_75"])}


# ------------------------------------------------------------------------------------------------
# The mini detector's own "COCO pretraining"
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MiniDetectorConfig:
    """Everything that determines the pretrained mini detector (and so its cache key).

    Attributes:
        height, width: size of the well-lit scenes = the size GenISP's pipeline feeds the detector.
        min_size, max_size: the detector's resize (set so that it does not resize again).
        steps, batch_size, lr, milestones: optimisation (Adam, ×0.1 at each milestone step, gradient
            norm clipped at 10 — :func:`reprolib.train.train` has no warm-up, and the clip keeps the
            first steps of a from-scratch RetinaNet stable).
        pool: number of distinct well-lit training scenes (rendered once, then augmented).
        test_images: well-lit test scenes for the AP50 check.
        seed: seeds the scenes and the initialisation.
        widths, fpn_channels, anchor_base, head_convs: architecture (:func:`mini_retinanet`).
    """

    height: int = 192
    width: int = 288
    min_size: int = 192
    max_size: int = 320
    steps: int = 400
    batch_size: int = 8
    lr: float = 2e-3
    milestones: tuple = (288, 364)
    pool: int = 512
    test_images: int = 64
    seed: int = 0
    widths: tuple = (32, 64, 128, 256)
    fpn_channels: int = 64
    anchor_base: int = 16
    head_convs: int = 2

    def key(self) -> str:
        """16 hex digits identifying this configuration *and* the code that trains it."""
        from . import synth

        code = "".join(inspect.getsource(f) for f in (tiny_resnet_fpn, _stage, mini_retinanet,
                                                      well_lit_scenes, _augment_well_lit,
                                                      synth.render_street_scene))
        text = json.dumps(asdict(self), sort_keys=True) + hashlib.sha256(code.encode()).hexdigest()
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def well_lit_scenes(seed: int, stream: int, n: int, height: int, width: int):
    """``n`` well-lit procedural street scenes (:func:`reprolib.synth.render_street_scene`).

    Used by the GenISP study to pretrain and test the mini detector. Scene ``i`` of ``stream`` is
    drawn from ``np.random.default_rng([seed, stream, i])`` (stream 0: training pool, 1: test).

    Returns:
        ``(images, targets)``: ``uint8`` tensor n×3×H×W (sRGB, 8 bits like an ordinary photo) and a
        list of ``{"boxes": float32 N×4 xyxy, "labels": int64 N}``.
    """
    from . import synth

    images = torch.empty(n, 3, height, width, dtype=torch.uint8)
    targets = []
    for i in range(n):
        img, boxes, labels = synth.render_street_scene(np.random.default_rng([seed, stream, i]), height, width)
        images[i] = torch.from_numpy(np.rint(img * 255).astype(np.uint8).transpose(2, 0, 1))
        targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)})
    return images, targets


def _augment_well_lit(image: torch.Tensor, target: dict, rng: np.random.Generator):
    """Horizontal flip and brightness / contrast jitter of one ``uint8`` 3×H×W scene → float [0, 1]."""
    x = image.float() / 255.0
    boxes = target["boxes"].clone()
    if rng.random() < 0.5:
        x = x.flip(-1)
        w = x.shape[-1]
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    brightness, contrast = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)
    mean = x.mean()
    x = ((x - mean) * contrast + mean) * brightness
    return x.clamp(0, 1), {"boxes": boxes, "labels": target["labels"]}


def pretrain_mini_detector(cfg: MiniDetectorConfig = MiniDetectorConfig(), cache: str | Path | None = None,
                           progress: bool = True) -> tuple[RetinaNet, dict]:
    """Train the mini detector on well-lit scenes once, freeze it, and cache it (GenISP study).

    This is the miniature's stand-in for "a RetinaNet pretrained on COCO": trained on clean sRGB
    scenes of persons, bicycles and cars at the size GenISP's pipeline feeds it, then frozen.
    Training goes through :func:`reprolib.train.train` (Adam, step schedule, checkpointed and
    resumable); the batch of step ``k`` is drawn from ``default_rng([seed, 2, k])`` over a pool of
    ``cfg.pool`` scenes, each flipped and brightness / contrast-jittered.

    Args:
        cfg: the configuration; its :meth:`~MiniDetectorConfig.key` names the cache file.
        cache: folder of the cache (default ``data.cache_dir() / "detectors"``).

    Returns:
        ``(detector, info)``: the frozen detector in eval mode, and ``info`` with ``key``,
        ``config``, ``well_lit`` (AP / AP50 / AP75 on ``cfg.test_images`` unseen well-lit scenes),
        ``curves`` (training loss), ``seconds`` (training time), ``steps_per_second`` and ``cached``
        (True when loaded rather than trained now).
    """
    from . import data, train

    cache = Path(cache) if cache else data.cache_dir() / "detectors"
    path = cache / f"{cfg.key()}.pt"
    if path.is_file():
        return load_mini_detector(path)
    cache.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    model = mini_retinanet(cfg.min_size, cfg.max_size, cfg.widths, cfg.fpn_channels, cfg.anchor_base,
                           cfg.head_convs)
    pool_images, pool_targets = well_lit_scenes(cfg.seed, 0, cfg.pool, cfg.height, cfg.width)

    def batch_fn(step):
        rng = np.random.default_rng([cfg.seed, 2, step])
        idx = rng.choice(cfg.pool, size=cfg.batch_size, replace=False)
        pairs = [_augment_well_lit(pool_images[i], pool_targets[i], rng) for i in idx]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def loss_fn(m, batch):
        losses = m(*batch)
        return losses["classification"] + losses["bbox_regression"]

    tcfg = train.TrainConfig(steps=cfg.steps, lr=cfg.lr, milestones=cfg.milestones, log_every=25,
                             checkpoint_every=100, grad_clip=10.0)
    history = train.train(model, batch_fn, loss_fn, tcfg, checkpoint=cache / f"{cfg.key()}.checkpoint",
                          desc="mini detector (well-lit pretraining)", config_key=cfg.key(), progress=progress)
    freeze(model)
    test_images, test_targets = well_lit_scenes(cfg.seed, 1, cfg.test_images, cfg.height, cfg.width)
    predictions = detect(model, [im.float() / 255.0 for im in test_images])
    info = {"key": cfg.key(), "config": asdict(cfg), "well_lit": average_precision(predictions, test_targets),
            "curves": history.curves, "seconds": history.seconds,
            "steps_per_second": train.steps_per_second(history)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": model.state_dict(), "info": info}, tmp)
    tmp.replace(path)
    (cache / f"{cfg.key()}.checkpoint").unlink(missing_ok=True)
    return model.eval(), {**info, "cached": False}


def load_mini_detector(path: str | Path) -> tuple[RetinaNet, dict]:
    """Load a detector saved by :func:`pretrain_mini_detector` (frozen, eval mode) and its info."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=False)
    c = saved["info"]["config"]
    model = freeze(mini_retinanet(c["min_size"], c["max_size"], tuple(c["widths"]), c["fpn_channels"],
                                  c["anchor_base"], c["head_convs"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), {**saved["info"], "cached": True}
