"""The frozen detectors of the GenISP study (Morawski et al., CVPRW 2022), through which its ISP
is trained; labels are COCO ids (1 person, 2 bicycle, 3 car). ``full``: torchvision's RetinaNet
ResNet-50-FPN v2 with COCO weights (:func:`full_retinanet`); ``mini``: a small RetinaNet trained
here on well-lit procedural street scenes and cached (:func:`pretrain_mini_detector`).

torchvision's RetinaNet returns losses only in train mode, where BatchNorm uses batch statistics:
:func:`freeze` makes each a ``FrozenBatchNorm2d``, the same function in both modes.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import RetinaNet, retinanet_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.resnet import BasicBlock
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from . import data, synth, train

__all__ = ["RAW_NOD_LABELS", "tiny_resnet_fpn", "mini_retinanet", "full_retinanet", "coco_weights",
           "freeze", "is_frozen", "weights_digest", "detection_losses", "detect",
           "average_precision", "MiniDetectorConfig", "well_lit_scenes", "pretrain_mini_detector",
           "load_mini_detector"]

#: COCO category ids of RAW-NOD's three classes (person, bicycle, car)
RAW_NOD_LABELS = (1, 2, 3)


def _stage(in_channels: int, out_channels: int) -> nn.Module:
    """One stride-2 ResNet stage of a single BasicBlock (with its 1×1 projection shortcut)."""
    downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False),
                               nn.BatchNorm2d(out_channels))
    return BasicBlock(in_channels, out_channels, stride=2, downsample=downsample)


def tiny_resnet_fpn(widths: tuple = (32, 64, 128, 256), fpn_channels: int = 64) -> BackboneWithFPN:
    """The mini detector's backbone: conv3×3 stride 2 (3→``widths[0]``), four stride-2 stages of
    one BasicBlock (``widths``), an FPN on C3–C5 with ``fpn_channels`` plus P6 / P7 from P5.
    Input ``float32`` B×3×H×W (normalised); output an ordered dict of five
    B×``fpn_channels``×H/s×W/s, s = 8 … 128."""
    c0, c1, c2, c3 = widths
    body = nn.Sequential()
    body.add_module("stem", nn.Sequential(nn.Conv2d(3, c0, 3, stride=2, padding=1, bias=False),
                                          nn.BatchNorm2d(c0), nn.ReLU(inplace=True)))
    for i, (a, b) in enumerate([(c0, c0), (c0, c1), (c1, c2), (c2, c3)], start=1):
        body.add_module(f"layer{i}", _stage(a, b))
    return BackboneWithFPN(body, return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
                           in_channels_list=[c1, c2, c3], out_channels=fpn_channels,
                           extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels))


def mini_retinanet(min_size: int = 192, max_size: int = 320, widths: tuple = (32, 64, 128, 256),
                   fpn_channels: int = 64, anchor_base: int = 16, head_convs: int = 2) -> RetinaNet:
    """The mini detector, untrained: torchvision's RetinaNet on :func:`tiny_resnet_fpn`.

    Anchors: scales 2^(j/3), ratios 0.5, 1, 2, base ``anchor_base`` · 2^k on P3 … P7 (torchvision's
    sizes scaled from 800- to 192-pixel images). Heads: GroupNorm (16), ``head_convs`` conv3×3 per
    branch. Losses: smooth-L1 boxes, focal (α = 0.25, γ = 2). ``min_size`` / ``max_size``: the
    study's resize rule (no second resize); 100 detections per image; 4 classes, so the class
    index is the COCO id. Input: list of ``float32`` 3×H×W, roughly ``[0, 1]`` sRGB.
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
    """The full detector, frozen: torchvision's ``retinanet_resnet50_fpn_v2``, 91 COCO classes, 100
    detections per image, smooth-L1 box loss as the paper. ``weights``: the COCO state dict file
    (:func:`coco_weights`; ``None``: random); ``min_size``, ``max_size``: resize (800 / 1333)."""
    model = retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91,
                                      min_size=min_size, max_size=max_size, detections_per_img=100)
    # frozen before loading, so the COCO running statistics land in the FrozenBatchNorm2d layers
    _freeze_batchnorm(model)
    if weights is not None:
        model.load_state_dict(torch.load(Path(weights), map_location="cpu", weights_only=True))
    return freeze(_use_smooth_l1(model))


def coco_weights(path: str | Path | None = None) -> Path:
    """The COCO weights file: ``path`` if it is not a folder, else the manifest entry
    ``retinanet-resnet50-fpn-v2-coco`` prepared in the folder ``path`` (empty: the data cache)."""
    if path and not Path(path).is_dir():
        if not Path(path).is_file():
            raise data.DataMissingError(
                f"detector_weights {Path(path).name!r}: no such file. Give the COCO state dict of torchvision's "
                "RetinaNet ResNet-50-FPN v2, or a folder to fetch it into (`python -m reprolib data prepare "
                "retinanet-resnet50-fpn-v2-coco --root FOLDER`), or leave it empty for the data cache")
        return Path(path)
    name = "retinanet-resnet50-fpn-v2-coco"
    return data.prepare(name, Path(path) if path else None) / data.entry(name)["layout"][0]["path"]


def _use_smooth_l1(model: RetinaNet) -> RetinaNet:
    """Smooth-L1 box loss as the paper's RetinaNet (torchvision's β = 1 on its own box encoding)."""
    model.head.regression_head._loss_type = "smooth_l1"
    return model


def _freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in place by a ``FrozenBatchNorm2d`` with the same values."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                for name_ in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, name_).copy_(getattr(child, name_))
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)
    return module


def freeze(detector: nn.Module) -> nn.Module:
    """Freeze a detector in place, return it: BatchNorm → FrozenBatchNorm2d, nothing trainable."""
    _freeze_batchnorm(detector)
    detector.requires_grad_(False)
    return detector


def is_frozen(detector: nn.Module) -> bool:
    """True when no parameter is trainable and no normalisation layer keeps running statistics."""
    return not any(p.requires_grad for p in detector.parameters()) and \
        not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in detector.modules())


def weights_digest(module: nn.Module) -> str:
    """16 hex digits of a module's state dict, names and values."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def detection_losses(detector: RetinaNet, images, targets: list[dict]) -> dict:
    """The detector's training losses (train mode). ``images``: list of ``float32`` 3×H×W (or
    B×3×H×W), any range, gradients reach them; ``targets``: per image ``{"boxes": float32 N×4 xyxy
    pixels, "labels": int64 N}``. Returns scalars ``{"classification", "bbox_regression"}``."""
    detector.train()
    images = list(images)
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    return detector(images, targets)


@torch.no_grad()
def detect(detector: RetinaNet, images, batch_size: int = 8) -> list[dict]:
    """Eval-mode detections of ``images`` (list of ``float32`` 3×H×W, or B×3×H×W): per image, on the
    CPU, ``boxes`` (N×4 xyxy, input pixels), ``scores`` (N), ``labels`` (N, COCO ids)."""
    detector.eval()
    images, out = list(images), []
    for i in range(0, len(images), batch_size):
        out += [{k: v.detach().cpu() for k, v in d.items()} for d in detector(images[i:i + batch_size])]
    return out


def average_precision(predictions: list[dict], targets: list[dict],
                      labels: tuple = RAW_NOD_LABELS) -> dict:
    """COCO AP, AP50, AP75 (torchmetrics, pycocotools backend; boxes xyxy pixels, ≤ 100 detections,
    all areas) over ``labels``, other labels dropped: floats in ``[0, 1]`` (``-1``: no box)."""
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


# --------------------------------------------------------------- the mini detector's pretraining

@dataclass(frozen=True)
class MiniDetectorConfig:
    """Everything that determines the pretrained mini detector, and the size of its well-lit test.

    Attributes:
        height, width: the well-lit scenes (the size GenISP's pipeline feeds the detector).
        min_size, max_size: the detector's resize. seed: of the scenes and the initialisation.
        steps, batch_size, lr, milestones: Adam, ×0.1 at each milestone, gradient norm clipped 10.
        pool: distinct training scenes. test_images: scenes of the AP check (not in the key).
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
        """16 hex digits of every field but ``test_images`` and of the code that builds and trains
        the detector (docstrings and comments left out)."""
        weights = {k: v for k, v in asdict(self).items() if k != "test_images"}
        code = [_code_without_docstrings(f) for f in (_stage, tiny_resnet_fpn, mini_retinanet, _use_smooth_l1,
                                                      well_lit_scenes, _augment_well_lit, _train_mini,
                                                      synth.render_street_scene)]
        text = json.dumps(weights, sort_keys=True) + hashlib.sha256("".join(code).encode()).hexdigest()
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _code_without_docstrings(function) -> str:
    """A function's syntax tree without docstrings and comments."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def well_lit_scenes(seed: int, stream: int, n: int, height: int, width: int):
    """``n`` well-lit street scenes (:func:`reprolib.synth.render_street_scene`) to pretrain
    (stream 0) or test (stream 1) the mini detector, scene ``i`` from ``default_rng([seed, stream,
    i])``. Returns ``uint8`` n×3×H×W sRGB and a list of ``{"boxes": float32 N×4 xyxy, "labels":
    int64 N}``."""
    images = torch.empty(n, 3, height, width, dtype=torch.uint8)
    targets = []
    for i in range(n):
        img, boxes, labels = synth.render_street_scene(np.random.default_rng([seed, stream, i]), height, width)
        images[i] = torch.from_numpy(np.rint(img * 255).astype(np.uint8).transpose(2, 0, 1))
        targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)})
    return images, targets


def _augment_well_lit(image: torch.Tensor, target: dict, rng: np.random.Generator):
    """Horizontal flip and brightness / contrast jitter of one ``uint8`` 3×H×W scene → float [0, 1]."""
    x, boxes = image.float() / 255.0, target["boxes"].clone()
    if rng.random() < 0.5:
        x = x.flip(-1)
        boxes[:, [0, 2]] = x.shape[-1] - boxes[:, [2, 0]]
    brightness, contrast = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)
    mean = x.mean()
    x = ((x - mean) * contrast + mean) * brightness
    return x.clamp(0, 1), {"boxes": boxes, "labels": target["labels"]}


def _train_mini(cfg: MiniDetectorConfig, checkpoint: Path, progress: bool):
    """Train the mini detector of ``cfg`` from scratch and freeze it: ``(model, history)``."""
    torch.manual_seed(cfg.seed)
    model = mini_retinanet(cfg.min_size, cfg.max_size, cfg.widths, cfg.fpn_channels, cfg.anchor_base, cfg.head_convs)
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
    history = train.train(model, batch_fn, loss_fn, tcfg, checkpoint=checkpoint, config_key=cfg.key(),
                          desc="mini detector (well-lit pretraining)", progress=progress)
    return freeze(model), history


def _well_lit_ap(model: RetinaNet, cfg: MiniDetectorConfig) -> dict:
    """AP / AP50 / AP75 of a mini detector on ``cfg.test_images`` unseen well-lit scenes."""
    test_images, test_targets = well_lit_scenes(cfg.seed, 1, cfg.test_images, cfg.height, cfg.width)
    return average_precision(detect(model, [im.float() / 255.0 for im in test_images]), test_targets)


def pretrain_mini_detector(cfg: MiniDetectorConfig = MiniDetectorConfig(), cache: str | Path | None = None,
                           progress: bool = True) -> tuple[RetinaNet, dict]:
    """Train the mini detector on well-lit scenes once (the miniature's "COCO pretraining"), freeze
    and cache it in ``cache`` (default ``data.cache_dir()/detectors``) as ``<cfg.key()>.pt``. Step
    ``k``'s batch: ``default_rng([seed, 2, k])`` over ``cfg.pool`` flipped and jittered scenes.

    Returns ``(detector, info)``: the frozen detector in eval mode; ``info`` with ``key``,
    ``config``, ``well_lit`` (AP / AP50 / AP75 on ``cfg.test_images`` unseen scenes), ``curves``,
    ``seconds``, ``steps_per_second``, ``cached`` (loaded rather than trained).
    """
    cache = Path(cache) if cache else data.cache_dir() / "detectors"
    path = cache / f"{cfg.key()}.pt"
    if path.is_file():
        model, info = load_mini_detector(path)
        if info["config"]["test_images"] != cfg.test_images:  # same weights, another well-lit test
            info = {**info, "config": asdict(cfg), "well_lit": _well_lit_ap(model, cfg)}
        return model, info
    cache.mkdir(parents=True, exist_ok=True)
    model, history = _train_mini(cfg, checkpoint := cache / f"{cfg.key()}.checkpoint", progress)
    info = {"key": cfg.key(), "config": asdict(cfg), "well_lit": _well_lit_ap(model, cfg),
            "curves": history.curves, "seconds": history.seconds,
            "steps_per_second": train.steps_per_second(history)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": model.state_dict(), "info": info}, tmp)
    tmp.replace(path)
    checkpoint.unlink(missing_ok=True)
    return model.eval(), {**info, "cached": False}


def load_mini_detector(path: str | Path) -> tuple[RetinaNet, dict]:
    """Load a detector saved by :func:`pretrain_mini_detector` (frozen, eval mode) and its info."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=False)
    c = saved["info"]["config"]
    model = freeze(mini_retinanet(c["min_size"], c["max_size"], tuple(c["widths"]), c["fpn_channels"],
                                  c["anchor_base"], c["head_convs"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), {**saved["info"], "cached": True}
