"""The GenISP study: pre-processing, RAW-NOD inputs, training through a frozen detector, Table 1.

Morawski et al., "GenISP: Neural ISP for Low-Light Machine Cognition", CVPRW 2022
(arXiv 2205.03688). GenISP is trained on one camera's low-light raw images (RAW-NOD's Sony
RX100 VII) through a detector that was trained on ordinary images and then frozen, and is tested
on another camera (RAW-NOD's Nikon D750). Its Table 1 compares, for the same frozen detector, what
is fed to it: a conventional ISP's output, the raw data, the raw data in CIE XYZ, and GenISP's
output. Everything here is used by ``notebooks/genisp.ipynb``.

Pre-processing, as the paper describes it (:func:`preprocess`):

1. pack the Bayer mosaic and average the two greens → R, G, B at half resolution
   (:func:`reprolib.raw.pack_rgb`);
2. colour-space transform camera RGB → CIE XYZ with the **inverse** of the file's
   ``rgb_xyz_matrix`` (that matrix maps XYZ → camera; :attr:`reprolib.raw.RawFrame.camera_to_xyz`
   is its inverse). Both public student reproductions applied ``rgb_xyz_matrix`` itself, i.e.
   backwards (kept here as ``kind='xyz-backwards'`` to show the difference);
3. resize with the keras-retinanet rule (short side to 800 unless the long side would exceed
   1333) — :func:`reprolib.raw.retinanet_resize_shape` — with the boxes scaled alongside.

No gain, no clipping and no gamma anywhere in 1–3: the raw values of a dark frame reach the network
as they are (≈ 1 % of full scale in RAW-NOD-like low light); GenISP's InstanceNorm layers make it
indifferent to that scale.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data, detect, raw, study
from .models.genisp import GenISP, gray_world_loss

__all__ = [
    "PAPER_RESIZE", "MINI_RESIZE", "SMOKE_DATA", "ROWS", "INPUT_KINDS", "PARAMETERS",
    "colour_space_transform", "resize_keep_aspect", "preprocess", "scale_target", "RawNODInputs",
    "augment", "StepBatches", "genisp_loss", "train_genisp", "evaluate_row", "prepare_data",
    "build_detector", "mini_detector_config", "cst_statistics", "describe_cst", "xyz_for_display",
    "table_rows",
    "plot_curves", "plot_detections", "plot_cst_direction", "results_table", "PROTOCOL", "split_table",
    "describe_detector", "loss_summary", "findings", "metric_rows", "published_table",
]

#: the keras-retinanet resize rule of the paper: (short side, long-side limit)
PAPER_RESIZE = (800, 1333)
#: the same rule at the miniature's scale: raw-nod-mini's packed 192×288 images stay 192×288
#: (800/1333 would upscale them ~4× and make every step ~16× slower)
MINI_RESIZE = (192, 320)
#: a tiny raw-nod-mini for the smoke profile (seconds to generate): 128×192 raw → 64×96 packed
SMOKE_DATA = {"height": 128, "width": 192, "sony": (8, 1, 1), "nikon": (1, 1, 4)}

#: what each kind of input is (for the tables)
INPUT_KINDS = {
    "conventional": "LibRaw postprocess, camera WB, no auto-brightening, sRGB gamma, half size",
    "raw": "packed raw, greens averaged (camera R, G, B), black-subtracted, no gain",
    "xyz": "packed raw → CIE XYZ with the inverse of rgb_xyz_matrix, no gain",
    "xyz-backwards": "packed raw × rgb_xyz_matrix (the student reproductions' direction), no gain",
}

#: Table 1 rows: (row id, label, detector input kind, GenISP in front?)
ROWS = [
    ("conventional", "Conventional ISP → detector", "conventional", False),
    ("raw", "Raw (packed, greens averaged), no CST → detector", "raw", False),
    ("raw-cst", "Raw + CST (camera → XYZ), no learning → detector", "xyz", False),
    ("genisp-no-cst", "GenISP without CST → detector", "raw", True),
    ("genisp", "GenISP (raw + CST) → detector", "xyz", True),
]

PROTOCOL = ("Protocol: COCO AP (IoU 0.50:0.05:0.95), AP50, AP75 over the three RAW-NOD classes "
            "(person, bicycle, car) with torchmetrics MeanAveragePrecision (pycocotools backend, "
            "boxes xyxy, ≤ 100 detections per image, all object sizes); detections of other "
            "classes dropped; ground-truth boxes with zero width or height dropped. Test set: the "
            "camera GenISP never saw in training. Every row goes through the same frozen detector.")


def table_rows(use_cst: bool = True, cst_matrix: str = "inverse") -> list[tuple]:
    """The Table 1 rows a run computes (GenISP study): :data:`ROWS`, without the CST rows when
    ``use_cst`` is False, and with the CST applied backwards when ``cst_matrix='backwards'``."""
    if cst_matrix not in ("inverse", "backwards"):
        raise ValueError(f"cst_matrix must be 'inverse' or 'backwards', got {cst_matrix!r}")
    rows = []
    for row_id, label, kind, learned in ROWS:
        if kind == "xyz":
            if not use_cst:
                continue
            if cst_matrix == "backwards":
                kind, label = "xyz-backwards", label.replace("CST", "CST backwards")
        rows.append((row_id, label, kind, learned))
    return rows


# ------------------------------------------------------------------------------------------------
# Pre-processing
# ------------------------------------------------------------------------------------------------

def colour_space_transform(image: torch.Tensor, matrix) -> torch.Tensor:
    """Apply a 3×3 colour matrix to every pixel (GenISP study).

    Args:
        image: ``float32`` (…)×3×H×W (e.g. camera R, G, B).
        matrix: 3×3 (numpy or torch), row = output channel; for camera → XYZ use
            :attr:`reprolib.raw.RawFrame.camera_to_xyz` (the inverse of ``rgb_xyz_matrix``).

    Returns:
        ``float32`` (…)×3×H×W, not clipped (XYZ of a noisy dark pixel can be negative).
    """
    m = torch.as_tensor(np.asarray(matrix, dtype=np.float32)).to(image)
    return torch.einsum("ij,...jhw->...ihw", m, image)


def resize_keep_aspect(image: torch.Tensor, min_side: int, max_side: int) -> torch.Tensor:
    """Resize a (…)×C×H×W image by the keras-retinanet rule (GenISP study).

    Bilinear without anti-aliasing, like keras-retinanet's ``cv2.resize`` default; returns the
    input unchanged when the rule keeps its size.
    """
    h, w = image.shape[-2:]
    out = raw.retinanet_resize_shape(h, w, min_side, max_side)
    if out == (h, w):
        return image
    x = image.reshape(-1, *image.shape[-3:])
    x = F.interpolate(x, size=out, mode="bilinear", align_corners=False, antialias=False)
    return x.reshape(*image.shape[:-2], *out)


def preprocess(frame: raw.RawFrame, kind: str = "xyz", min_side: int = PAPER_RESIZE[0],
               max_side: int = PAPER_RESIZE[1]) -> torch.Tensor:
    """One raw frame → the image a Table 1 row feeds to GenISP or the detector (GenISP study).

    Args:
        frame: from :func:`reprolib.raw.read` (mosaic ``float32`` H×W in ``[0, 1]``).
        kind: ``'raw'`` (pack, average greens), ``'xyz'`` (then camera → XYZ, the paper's input),
            ``'xyz-backwards'`` (``rgb_xyz_matrix`` applied the wrong way round, as the student
            reproductions did), or ``'conventional'`` (LibRaw's ``postprocess`` with the camera
            white balance at half size, i.e. the packed resolution; sRGB).
        min_side, max_side: the resize rule (:data:`PAPER_RESIZE`, :data:`MINI_RESIZE`).

    Returns:
        ``float32`` 3×h×w, (h, w) = ``retinanet_resize_shape(H/2, W/2, min_side, max_side)``;
        raw kinds: linear, black-subtracted, values ≈ the raw's (no gain); conventional: ``[0, 1]``.

    Raises:
        ValueError: an unknown kind, or a CST asked of a file without a colour matrix.
    """
    if kind == "conventional":
        rgb = raw.conventional_pipeline(frame.path, half_size=True)
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    elif kind in ("raw", "xyz", "xyz-backwards"):
        image = torch.from_numpy(raw.pack_rgb(frame.mosaic, frame.cfa))
        if kind != "raw":
            matrix = frame.camera_to_xyz if kind == "xyz" else frame.xyz_to_camera
            if matrix is None:
                raise ValueError(f"{frame.path}: no colour matrix in the file, so no camera → XYZ transform")
            image = colour_space_transform(image, matrix)
    else:
        raise ValueError(f"kind must be one of {sorted(INPUT_KINDS)}, got {kind!r}")
    return resize_keep_aspect(image.float(), min_side, max_side).contiguous()


def scale_target(target: dict, size: tuple[int, int]) -> dict:
    """Scale a RAW-NOD target's boxes from the annotated image size to ``size`` = (h, w) (GenISP study).

    The annotations are in pixels of the full image (e.g. 2624×3936 for the Nikon D750); the
    network sees the packed, resized image (e.g. 800×1200), so each axis is scaled by its ratio.
    """
    boxes = raw.scale_boxes(target["boxes"].float(), target["image_size"], size).float()
    return {**target, "boxes": boxes, "size": tuple(size)}


class RawNODInputs(torch.utils.data.Dataset):
    """One camera / split of RAW-NOD, pre-processed for one Table 1 row (GenISP study).

    Built on :class:`reprolib.data.RawNODDetection` (which reads one raw file per item).

    Args:
        root: RAW-NOD root (real or ``raw-nod-mini``).
        camera: ``'Sony'`` or ``'Nikon'``. split: ``'train'``, ``'val'`` or ``'test'``.
        kind: see :func:`preprocess`.
        min_side, max_side: the resize rule.
        in_memory: keep every pre-processed item after its first read (the miniature's few MB);
            leave False on the real data (streamed from disk).

    Item:
        ``(image, target)``: ``float32`` 3×h×w; ``target`` with ``boxes`` (``float32`` N×4 xyxy in
        pixels of ``image``), ``labels`` (``int64`` N, COCO ids), ``image_id``, ``file_name``,
        ``image_size`` (annotated size) and ``size`` ((h, w) of ``image``).
    """

    def __init__(self, root, camera: str, split: str, kind: str = "xyz", min_side: int = PAPER_RESIZE[0],
                 max_side: int = PAPER_RESIZE[1], in_memory: bool = False):
        if kind not in INPUT_KINDS:
            raise ValueError(f"kind must be one of {sorted(INPUT_KINDS)}, got {kind!r}")
        images_dir, json_path = data.raw_nod_paths(root, camera, split)
        self.camera, self.split, self.kind = camera, split, kind
        self.min_side, self.max_side = min_side, max_side
        self.detection = data.RawNODDetection(images_dir, json_path, transform=self._transform)
        self._memory = {} if in_memory else None

    def _transform(self, frame, target):
        image = preprocess(frame, self.kind, self.min_side, self.max_side)
        return image, scale_target(target, tuple(image.shape[-2:]))

    def __len__(self) -> int:
        return len(self.detection)

    def __getitem__(self, index: int):
        if self._memory is None:
            return self.detection[index]
        if index not in self._memory:
            self._memory[index] = self.detection[index]
        return self._memory[index]


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

def augment(image: torch.Tensor, target: dict, rng: np.random.Generator):
    """The training-side augmentation: brightness / contrast and geometry (GenISP study).

    * brightness: × a log-uniform factor in [0.7, 1.4] (an exposure change, in the linear domain);
    * contrast: per-channel distance from the channel mean × U(0.8, 1.2), then clipped at 0;
    * horizontal flip with probability 0.5 (on the packed R, G, B image, so no Bayer phase issue);
    * zoom: a random crop of 80–100 % of each side, resized back; boxes shifted, scaled and
      clipped; boxes keeping < 40 % of their area, or thinner than 2 px, are dropped.

    Args:
        image: ``float32`` 3×H×W (raw, XYZ or sRGB). target: with ``boxes`` N×4 xyxy pixels, ``labels``.

    Returns:
        ``(image, target)`` of the same size.
    """
    h, w = image.shape[-2:]
    boxes, labels = target["boxes"].clone(), target["labels"].clone()
    brightness = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
    contrast = rng.uniform(0.8, 1.2)
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
    """``step → batch`` for :func:`reprolib.train.train`, deterministic in (seed, step) (GenISP study).

    Epoch ``e`` visits the images in the order ``default_rng([seed, 3, e]).permutation(n)``; step
    ``k`` takes the ``k``-th slice of ``batch_size`` (the last incomplete slice is dropped), and
    augments image ``j`` of it with ``default_rng([seed, 4, k, j])``. So an interrupted run replays
    exactly the batches it would have seen. With ``num_workers > 0`` the batches of the next steps
    are read by a ``DataLoader``'s worker processes (the real data set, streamed from disk).

    Returns per step: ``(images, targets)`` — a list of ``float32`` 3×h×w and their targets.
    """

    def __init__(self, dataset, batch_size: int, seed: int, steps: int, augment: bool = True,
                 num_workers: int = 0):
        if len(dataset) < batch_size:
            raise ValueError(f"{len(dataset)} training images is fewer than one batch of {batch_size}")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.steps, self.augment, self.num_workers = steps, augment, num_workers
        self.steps_per_epoch = len(dataset) // batch_size
        self._iterator, self._next = None, None

    def indices(self, step: int) -> np.ndarray:
        """Dataset indices of the batch of ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, 3, epoch]).permutation(len(self.dataset))
        return order[k * self.batch_size:(k + 1) * self.batch_size]

    def batch(self, step: int):
        """The batch of ``step``, read in this process."""
        images, targets = [], []
        for j, i in enumerate(self.indices(step)):
            image, target = self.dataset[int(i)]
            if self.augment:
                image, target = augment(image, target, np.random.default_rng([self.seed, 4, step, j]))
            images.append(image)
            targets.append(target)
        return images, targets

    def __len__(self) -> int:
        return self.steps

    def __getstate__(self):  # what the worker processes receive: no live iterator
        return {**self.__dict__, "_iterator": None, "_next": None}

    def __getitem__(self, step: int):
        return self.batch(step)

    def __call__(self, step: int):
        if self.num_workers == 0:
            return self.batch(step)
        if self._next != step:  # first call, or a resumed run: start the workers at this step
            sampler = range(step, self.steps)
            loader = torch.utils.data.DataLoader(self, batch_size=None, sampler=sampler,
                                                 num_workers=self.num_workers, prefetch_factor=2)
            self._iterator = iter(loader)
        self._next = step + 1
        return next(self._iterator)


def genisp_loss(model: GenISP, detector, batch, gray_world_weight: float = 0.0,
                device: str = "cpu") -> torch.Tensor:
    """GenISP's training loss through the frozen detector (GenISP study).

    ``focal (classification) + smooth-L1 (boxes)`` of the detector on GenISP's output, plus
    ``gray_world_weight ×`` :func:`~reprolib.models.genisp.gray_world_loss` (the paper's optional
    colour regulariser; 0 = off). Gradients reach GenISP only: the detector is frozen
    (:func:`reprolib.detect.freeze`).

    Args:
        batch: ``(images, targets)`` from :class:`StepBatches`; images of one size are processed
            as one B×3×h×w tensor.
    """
    images, targets = batch
    images = [im.to(device) for im in images]
    targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
    if len({tuple(im.shape) for im in images}) == 1:
        outputs = list(model(torch.stack(images)))
    else:
        outputs = [model(im[None])[0] for im in images]
    losses = detect.detection_losses(detector, outputs, targets)
    loss = losses["classification"] + losses["bbox_regression"]
    if gray_world_weight:
        loss = loss + gray_world_weight * torch.stack([gray_world_loss(o[None]) for o in outputs]).mean()
    return loss


def _state_hash(module: torch.nn.Module) -> str:
    """Hash of every weight and buffer of a module (identifies a frozen detector)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_genisp(detector, train_set, *, epochs: int, batch_size: int, lr: float = 1e-2, seed: int = 0,
                 gray_world_weight: float = 0.0, device: str = "cpu", num_workers: int = 0,
                 checkpoint=None, desc: str = "GenISP", progress: bool = True):
    """Train a GenISP through a frozen detector (GenISP study).

    The paper's recipe: Adam, learning rate ``lr`` (1e-2), ×0.1 after a third and after two thirds
    of the epochs (its epochs 5 and 10 of 15), batch 8, augmentation (:func:`augment`). Goes
    through :func:`reprolib.train.train` (checkpointed, resumable); the loss is logged once per
    epoch (the epoch's mean detection loss).

    Args:
        detector: frozen (:func:`reprolib.detect.freeze`), on ``device``.
        train_set: e.g. ``RawNODInputs(root, 'Sony', 'train', kind='xyz', ...)``.

    Returns:
        ``(model, history)``: the trained :class:`~reprolib.models.genisp.GenISP` in eval mode and
        the :class:`reprolib.train.History` (curve ``loss`` at the end of every epoch).
    """
    from . import train

    if not detect.is_frozen(detector):
        raise ValueError("the detector must be frozen first (reprolib.detect.freeze)")
    torch.manual_seed(seed)
    model = GenISP().to(device)
    per_epoch = len(train_set) // batch_size
    batches = StepBatches(train_set, batch_size, seed, steps=epochs * per_epoch, num_workers=num_workers)
    milestones = tuple(sorted({max(1, round(epochs / 3)) * per_epoch, max(1, round(2 * epochs / 3)) * per_epoch}))
    cfg = train.TrainConfig(steps=epochs * per_epoch, lr=lr, milestones=milestones, log_every=per_epoch,
                            checkpoint_every=per_epoch)
    # the checkpoint of a run resumes only with the same settings *and the same frozen detector*
    key = repr((cfg, train_set.kind, train_set.camera, len(train_set), batch_size, seed, gray_world_weight,
                _state_hash(detector)))

    def loss_fn(m, batch):
        return genisp_loss(m, detector, batch, gray_world_weight, device)

    history = train.train(model, batches, loss_fn, cfg, checkpoint=checkpoint, desc=desc,
                          config_key=key, progress=progress)
    return model.eval(), history


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_row(detector, dataset, isp=None, device: str = "cpu", batch_size: int = 8,
                 keep: int = 4) -> dict:
    """Score one Table 1 row: ``dataset`` (→ ``isp``) → frozen detector (GenISP study).

    Args:
        dataset: a :class:`RawNODInputs` of the test camera.
        isp: a trained GenISP, or None to feed the inputs to the detector as they are.
        keep: how many of the first images' detector inputs to return (for the figure).

    Returns:
        ``{"AP", "AP50", "AP75"}`` (see :data:`PROTOCOL`), plus ``input_mean`` / ``input_std``
        (statistics of what the detector was fed, over all test pixels), ``predictions`` (one dict
        per image), ``targets``, and ``examples`` (the first ``keep`` detector inputs, CPU).
    """
    predictions, targets, examples = [], [], []
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        inputs = [im.to(device) for im, _ in items]
        if isp is not None:
            isp.eval()
            inputs = [isp(im[None])[0] for im in inputs]
        for x in inputs:
            total += float(x.sum())
            total_sq += float((x.double() ** 2).sum())
            count += x.numel()
            if len(examples) < keep:
                examples.append(x.cpu())
        predictions += detect.detect(detector, inputs)
        targets += [t for _, t in items]
    metrics = detect.average_precision(predictions, targets)
    mean = total / count
    return {**metrics, "input_mean": mean, "input_std": math.sqrt(max(total_sq / count - mean ** 2, 0.0)),
            "predictions": predictions, "targets": targets, "examples": examples}


def results_table(results: dict, rows: list[tuple]):
    """Table 1 as a DataFrame (GenISP study).

    Args:
        results: ``{row id: evaluate_row(...)}``.
        rows: the rows, as :func:`table_rows` gives them.
    """
    import pandas as pd

    out = []
    for row_id, label, kind, learned in rows:
        r = results[row_id]
        out.append({"row": label, "detector input": ("GenISP output, from " if learned else "") + INPUT_KINDS[kind],
                    "AP": r["AP"], "AP50": r["AP50"], "AP75": r["AP75"],
                    "input mean": r["input_mean"], "input std": r["input_std"]})
    return pd.DataFrame(out).set_index("row")


# ------------------------------------------------------------------------------------------------
# Set-up from the notebook's parameters
# ------------------------------------------------------------------------------------------------

def prepare_data(profile: str, data_root: str = "") -> tuple[Path, dict]:
    """The data set of a profile (GenISP study): ``raw-nod`` at ``data_root`` for ``full``;
    ``raw-nod-mini`` otherwise (generated once into the cache; the smoke profile's is smaller).

    Returns:
        ``(root, dataset)`` with ``dataset`` = ``{"name", "fingerprint", "root", "synthetic"}``
        for the run record.
    """
    if profile == "full":
        name, root = "raw-nod", data.prepare("raw-nod", data_root or None)
    else:
        name = "raw-nod-mini"
        root = data.prepare(name, data_root or None, params=SMOKE_DATA if profile == "smoke" else None)
    return root, {"name": name, "fingerprint": data.fingerprint(root), "root": str(root),
                  "synthetic": name != "raw-nod"}


def mini_detector_config(root, P: dict) -> detect.MiniDetectorConfig:
    """The mini detector's configuration for a run (GenISP study): its well-lit scenes have the
    size the pipeline feeds the detector (the packed, resized size of the training images)."""
    first = data.read_raw_nod(data.raw_nod_paths(root, "Sony", "train")[1]).images[0]
    h, w = raw.retinanet_resize_shape(first.height // 2, first.width // 2, P["resize_min"], P["resize_max"])
    steps = P["detector_steps"]
    return detect.MiniDetectorConfig(height=h, width=w, min_size=P["resize_min"], max_size=P["resize_max"],
                                     steps=steps, milestones=(int(steps * 0.72), int(steps * 0.91)),
                                     pool=P["detector_pool"], test_images=P["detector_test_images"],
                                     seed=P["seed"])


def build_detector(root, P: dict):
    """The frozen detector of a run (GenISP study): ``(detector, info)``.

    ``mini``: :func:`reprolib.detect.pretrain_mini_detector` (cached); ``full``: the COCO RetinaNet
    from ``detector_weights`` (default: the manifest's ``retinanet-resnet50-fpn-v2-coco``).
    """
    if P["detector"] == "mini":
        detector, info = detect.pretrain_mini_detector(mini_detector_config(root, P))
    else:
        weights = Path(P["detector_weights"]) if P["detector_weights"] else None
        if weights is None or weights.is_dir():
            folder = data.prepare("retinanet-resnet50-fpn-v2-coco", weights)
            weights = folder / data.entry("retinanet-resnet50-fpn-v2-coco")["layout"][0]["path"]
        detector = detect.full_retinanet(weights, P["resize_min"], P["resize_max"])
        info = {"weights": str(weights)}
    return detector.to(P["device"]).eval(), info


def split_table(root):
    """Images and boxes per camera and split of a RAW-NOD root (GenISP study)."""
    import pandas as pd

    rows = []
    for camera in ("Sony", "Nikon"):
        for split in ("train", "val", "test"):
            a = data.read_raw_nod(data.raw_nod_paths(root, camera, split)[1])
            first = a.images[0] if a.images else None
            rows.append({"camera": camera, "split": split, "images": len(a), "boxes": a.num_boxes,
                         "degenerate boxes dropped": a.dropped,
                         "image size": f"{first.height}×{first.width}" if first else "-",
                         "used here": {("Sony", "train"): "GenISP training",
                                       ("Nikon", "test"): "Table 1 (unseen camera)"}.get((camera, split), "-")})
    return pd.DataFrame(rows).set_index(["camera", "split"])


def describe_detector(info: dict, P: dict) -> str:
    """One paragraph on the frozen detector of a run; raises when the mini detector misses the
    well-lit AP50 the comparison needs (``P['min_well_lit_ap50']``) (GenISP study)."""
    if P["detector"] == "full":
        return (f"Frozen detector: torchvision RetinaNet ResNet-50-FPN v2, COCO weights from {info['weights']}, "
                f"resize {P['resize_min']}/{P['resize_max']}.")
    w = info["well_lit"]
    c = info["config"]
    text = (f"Frozen detector: the mini RetinaNet, {'loaded from the cache' if info['cached'] else 'trained now'} "
            f"(key {info['key']}): {c['steps']} steps of batch {c['batch_size']} on {c['pool']} well-lit "
            f"{c['height']}×{c['width']} scenes ({info['seconds']:.0f} s of training when it was trained). "
            f"On {c['test_images']} unseen well-lit scenes: AP {w['AP']:.3f}, AP50 {w['AP50']:.3f}, AP75 {w['AP75']:.3f}.")
    if w["AP50"] < P["min_well_lit_ap50"]:
        raise RuntimeError(text + f" Its well-lit AP50 is below {P['min_well_lit_ap50']}: the low-light comparison "
                           "would mean nothing. Train it longer (detector_steps).")
    return text


def loss_summary(histories: dict):
    """First- vs last-epoch detection loss on the training camera per trained GenISP (GenISP study)."""
    import pandas as pd

    rows = {label: {"first epoch": h.curves["loss"][0]["value"], "last epoch": h.curves["loss"][-1]["value"],
                    "epochs": len(h.curves["loss"]), "steps": h.curves["loss"][-1]["step"],
                    "training time (s)": h.seconds}
            for label, h in histories.items()}
    df = pd.DataFrame(rows).T.astype({"epochs": int, "steps": int})
    df["change (%)"] = 100 * (df["last epoch"] / df["first epoch"] - 1)
    return df


def findings(table, rows: list[tuple], losses) -> str:
    """The computed "what we found" paragraph (GenISP study): does GenISP beat the conventional ISP
    on the unseen camera, and does the CST help."""
    labels = {row_id: label for row_id, label, _, _ in rows}
    ap = table["AP"]
    best = labels.get("genisp", labels.get("genisp-no-cst"))
    conv = labels["conventional"]
    verdict = "holds" if ap[best] > ap[conv] else "does not hold"
    parts = [f"On the unseen camera, {best} reaches AP {ap[best]:.3f} (AP50 {table['AP50'][best]:.3f}) against "
             f"{ap[conv]:.3f} (AP50 {table['AP50'][conv]:.3f}) for the conventional ISP: the paper's claim that "
             f"GenISP beats the conventional ISP on a camera it never saw {verdict} in this miniature."]
    raw_rows = [labels[r] for r in ("raw", "raw-cst") if r in labels]
    if raw_rows:
        parts.append("Fed as they are, the dark raw inputs give AP " + ", ".join(f"{ap[r]:.3f}" for r in raw_rows)
                     + " (" + "; ".join(raw_rows) + ").")
    if "genisp" in labels and "genisp-no-cst" in labels:
        d = ap[labels["genisp"]] - ap[labels["genisp-no-cst"]]
        parts.append(f"The colour-space transform changes GenISP's AP by {d:+.3f} "
                     f"({'helps' if d > 0 else 'does not help'} here).")
    for label, r in losses.iterrows():
        parts.append(f"{label}: training detection loss {r['first epoch']:.3f} (first epoch) → "
                     f"{r['last epoch']:.3f} (last), {r['change (%)']:+.0f} %.")
    return " ".join(parts)


def metric_rows(table, rows: list[tuple], protocol: str, split: str, detector_info: dict | None = None) -> list[dict]:
    """Run-record rows for Table 1 (GenISP study). The GenISP row uses the published keys
    ``genisp/nikon/*`` and the conventional ISP ``genisp/conventional/*`` so the scoreboard pairs
    them with the paper's (unavailable) numbers; a backwards-CST run gets keys of its own. With the
    mini detector's ``detector_info``, its well-lit AP50 is a row too."""
    out = []
    if detector_info and "well_lit" in detector_info:
        out.append({"key": "genisp/detector/well_lit_ap50", "model": "mini detector (frozen)", "metric": "AP50",
                    "value": round(float(detector_info["well_lit"]["AP50"]), 5),
                    "protocol": "well-lit synthetic scenes, same metric code", "split": "well-lit synthetic test"})
    for row_id, label, kind, _ in rows:
        prefix = {"genisp": "genisp/nikon", "conventional": "genisp/conventional"}.get(row_id, f"genisp/{row_id}")
        if kind == "xyz-backwards":
            prefix = f"genisp/{row_id}-backwards-cst"
        for metric in ("AP", "AP50", "AP75"):
            out.append({"key": f"{prefix}/{metric.lower()}", "model": label, "metric": metric,
                        "value": round(float(table.loc[label, metric]), 5), "protocol": protocol, "split": split})
    return out


def published_table():
    """The paper's Table 1 entries and the public reproductions' numbers, as published
    (``reprolib/published.yaml``; ``None`` = not publicly readable) (GenISP study)."""
    import pandas as pd

    from . import report

    rows = report.published(study="genisp")
    return pd.DataFrame([{"kind": r["kind"], "model": r["model"], "metric": r["metric"], "data set": r["dataset"],
                          "value": "not available" if r["value"] is None else r["value"], "source": r["source"]}
                         for r in rows])


# ------------------------------------------------------------------------------------------------
# The CST direction on one image
# ------------------------------------------------------------------------------------------------

def xyz_for_display(xyz: torch.Tensor, gain: float) -> np.ndarray:
    """XYZ 3×H×W → an sRGB picture H×W×3 in [0, 1] for the eye only: × ``gain``, XYZ → linear sRGB
    (D65), clipped, sRGB transfer function (GenISP study, figures)."""
    from . import synth

    linear = synth.xyz_to_linear_srgb(xyz.double().numpy().transpose(1, 2, 0) * gain)
    return synth.linear_to_srgb(np.clip(linear, 0.0, 1.0))


_CST_NAMES = {"raw": "camera RGB (packed)", "xyz": "XYZ = inv(rgb_xyz_matrix) · camera RGB (correct)",
              "xyz-backwards": "'XYZ' = rgb_xyz_matrix · camera RGB (backwards)"}


def cst_statistics(frame: raw.RawFrame, min_side: int, max_side: int):
    """What the CST's direction does to one image's input statistics (GenISP study).

    Returns:
        ``(images, table)``: ``{kind: 3×h×w}`` for ``raw``, ``xyz`` and ``xyz-backwards``, and a
        DataFrame with, per kind, the channel means, the share of negative values, and the
        chromaticity (x, y) of the mean colour (for XYZ; D65 white is (0.3127, 0.3290)).
    """
    import pandas as pd

    images = {k: preprocess(frame, k, min_side, max_side) for k in ("raw", "xyz", "xyz-backwards")}
    rows = []
    for k, im in images.items():
        m = im.mean(dim=(1, 2)).double()
        x, y = (float(m[0] / m.sum()), float(m[1] / m.sum())) if k != "raw" else (float("nan"),) * 2
        rows.append({"input": _CST_NAMES[k], "mean ch0": float(m[0]), "mean ch1": float(m[1]),
                     "mean ch2": float(m[2]), "negative values (%)": 100 * float((im < 0).float().mean()),
                     "chromaticity x": x, "chromaticity y": y})
    return images, pd.DataFrame(rows).set_index("input")


def describe_cst(table) -> str:
    """One computed sentence on :func:`cst_statistics`' table (GenISP study)."""
    right, wrong = table.iloc[1], table.iloc[2]
    return (f"Mean colour of the image, chromaticity (x, y): {right['chromaticity x']:.3f}, "
            f"{right['chromaticity y']:.3f} with the inverse matrix, {wrong['chromaticity x']:.3f}, "
            f"{wrong['chromaticity y']:.3f} with rgb_xyz_matrix applied backwards (a D65 white is 0.313, 0.329); "
            f"negative values: {right['negative values (%)']:.1f} % vs {wrong['negative values (%)']:.1f} % of the pixels.")


def plot_cst_direction(frame: raw.RawFrame, images: dict):
    """Side by side: XYZ from the inverse of ``rgb_xyz_matrix`` (correct) and from the matrix itself
    (the student reproductions' direction), shown through the same display gain and XYZ → sRGB
    (GenISP study). ``images`` from :func:`cst_statistics`. Returns the figure."""
    import matplotlib.pyplot as plt

    gain = 0.18 / max(float(images["xyz"][1].mean()), 1e-8)  # mean luminance Y of the correct XYZ → 18 %
    panels = [("camera → XYZ with inv(rgb_xyz_matrix) (correct)", images["xyz"]),
              ("camera → 'XYZ' with rgb_xyz_matrix (backwards)", images["xyz-backwards"])]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (title, xyz) in zip(axes, panels):
        ax.imshow(xyz_for_display(xyz, gain))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{frame.path.name}: both shown × {gain:.0f}, XYZ → sRGB (display only)", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------

def plot_curves(histories: dict, detector_curve=None):
    """Training curves: GenISP's detection loss per epoch for each trained row, and (when given)
    the mini detector's well-lit pretraining loss (GenISP study). Returns the figure."""
    import matplotlib.pyplot as plt

    n = 2 if detector_curve else 1
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 3.6), squeeze=False)
    ax = axes[0, 0]
    for label, h in histories.items():
        c = h.curves["loss"]
        ax.plot([p["step"] for p in c], [p["value"] for p in c], marker="o", ms=3, label=label)
    ax.set_xlabel("step (one point per epoch)")
    ax.set_ylabel("focal + smooth-L1 loss (training camera)")
    ax.set_title("GenISP through the frozen detector")
    ax.legend(fontsize=8)
    if detector_curve:
        ax = axes[0, 1]
        ax.plot([p["step"] for p in detector_curve], [p["value"] for p in detector_curve])
        ax.set_xlabel("step")
        ax.set_ylabel("focal + smooth-L1 loss")
        ax.set_title("mini detector, well-lit pretraining")
    fig.tight_layout()
    return fig


_CLASS_COLOURS = {1: "tab:red", 2: "tab:orange", 3: "tab:cyan"}


def plot_detections(results: dict, labels: dict, n_images: int = 4, score_threshold: float = 0.5):
    """Grid: one row per Table 1 row, one column per test image, showing the image exactly as the
    detector receives it (clipped to [0, 1] for display, no brightening) with its detections
    (score ≥ ``score_threshold``, solid) and the ground truth (dashed white) (GenISP study).

    Args:
        results: ``{row id: evaluate_row(...)}``. labels: ``{row id: row label}``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    ids = [r for r in results if results[r]["examples"]]
    n = min(n_images, min(len(results[r]["examples"]) for r in ids))
    fig, axes = plt.subplots(len(ids), n, figsize=(2.9 * n, 2.1 * len(ids)), squeeze=False)
    for i, row_id in enumerate(ids):
        r = results[row_id]
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(r["examples"][j].clamp(0, 1).numpy().transpose(1, 2, 0))
            for box in r["targets"][j]["boxes"]:
                x1, y1, x2, y2 = box.tolist()
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", ls="--", lw=0.8))
            p = r["predictions"][j]
            for box, score, label in zip(p["boxes"], p["scores"], p["labels"]):
                if score < score_threshold:
                    continue
                x1, y1, x2, y2 = box.tolist()
                colour = _CLASS_COLOURS.get(int(label), "tab:gray")
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colour, lw=1.2))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(labels[row_id].replace(" → detector", "").replace(", ", ",\n"), fontsize=7)
    fig.suptitle(f"Test camera, as each row's detector input sees it; detections with score ≥ "
                 f"{score_threshold} (red person, orange bicycle, cyan car), ground truth dashed", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Parameters of notebooks/genisp.ipynb
# ------------------------------------------------------------------------------------------------

def _positive(x):
    return None if x > 0 else "must be > 0"


PARAMETERS = {
    "profile": study.Parameter((str,), choices=study.PROFILES, help="smoke | mini | full"),
    "data_root": study.Parameter((str,), profiles={"smoke": "", "mini": "", "full": ""},
                                 help="RAW-NOD root; empty = the profile's data set (raw-nod-mini from the cache)"),
    "device": study.Parameter((str,), profiles={"smoke": "cpu", "mini": "cpu", "full": "cpu"},
                              help="torch device"),
    "seed": study.Parameter((int,), profiles={"smoke": 0, "mini": 0, "full": 0}, help="seed of everything"),
    "detector": study.Parameter((str,), profiles={"smoke": "mini", "mini": "mini", "full": "full"},
                                choices=("mini", "full"),
                                help="mini: small RetinaNet pretrained here on well-lit scenes; full: COCO RetinaNet R50-FPN v2"),
    "detector_weights": study.Parameter((str,), profiles={"smoke": "", "mini": "", "full": ""},
                                        help="full detector's COCO state dict (file or folder); empty = the manifest entry"),
    "detector_steps": study.Parameter((int,), profiles={"smoke": 10, "mini": 400, "full": 400}, check=_positive,
                                      help="mini detector: well-lit pretraining steps (batch 8)"),
    "detector_pool": study.Parameter((int,), profiles={"smoke": 16, "mini": 512, "full": 512}, check=_positive,
                                     help="mini detector: number of distinct well-lit training scenes"),
    "detector_test_images": study.Parameter((int,), profiles={"smoke": 4, "mini": 64, "full": 64},
                                            check=_positive, help="mini detector: well-lit test scenes"),
    "min_well_lit_ap50": study.Parameter((float,), profiles={"smoke": 0.0, "mini": 0.5, "full": 0.0},
                                         help="mini detector: stop unless its well-lit AP50 reaches this"),
    "epochs": study.Parameter((int,), profiles={"smoke": 1, "mini": 4, "full": 15}, check=_positive,
                              help="GenISP training epochs (paper: 15)"),
    "batch_size": study.Parameter((int,), profiles={"smoke": 8, "mini": 8, "full": 8}, check=_positive,
                                  help="GenISP batch size (paper: 8)"),
    "lr": study.Parameter((float,), profiles={"smoke": 1e-2, "mini": 1e-2, "full": 1e-2}, check=_positive,
                          help="Adam learning rate (paper: 1e-2, ×0.1 after 1/3 and 2/3 of the epochs)"),
    "use_cst": study.Parameter((bool,), profiles={"smoke": True, "mini": True, "full": True},
                               help="run the rows with the camera → XYZ transform (raw + CST, GenISP)"),
    "cst_matrix": study.Parameter((str,), profiles={"smoke": "inverse", "mini": "inverse", "full": "inverse"},
                                  choices=("inverse", "backwards"),
                                  help="inverse = camera → XYZ correctly; backwards = rgb_xyz_matrix as the student reproductions"),
    "gray_world_weight": study.Parameter((float,), profiles={"smoke": 0.0, "mini": 0.0, "full": 0.0},
                                         check=lambda x: None if x >= 0 else "must be >= 0",
                                         help="weight of the optional gray-world regulariser (0 = off)"),
    "resize_min": study.Parameter((int,), profiles={"smoke": 64, "mini": MINI_RESIZE[0], "full": PAPER_RESIZE[0]},
                                  check=_positive, help="resize rule: short side (paper: 800)"),
    "resize_max": study.Parameter((int,), profiles={"smoke": 128, "mini": MINI_RESIZE[1], "full": PAPER_RESIZE[1]},
                                  check=_positive, help="resize rule: long-side limit (paper: 1333)"),
    "num_workers": study.Parameter((int,), profiles={"smoke": 0, "mini": 0, "full": 4},
                                   check=lambda x: None if x >= 0 else "must be >= 0",
                                   help="data-loading worker processes for training"),
    "grid_images": study.Parameter((int,), profiles={"smoke": 2, "mini": 4, "full": 4}, check=_positive,
                                   help="test images in the detection grid"),
}
