"""Detectors of the GenISP study: freezing (weights and statistics never change), the full COCO
model's plumbing, the losses torchvision returns, AP scoring, and the mini detector's cache."""
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from reprolib import detect

# torchvision's documented size of RetinaNet_ResNet50_FPN_V2 (91 COCO classes)
RETINANET_V2_PARAMETERS = 38_198_935


def _randomise_batchnorm(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_freeze_makes_train_mode_equal_eval_mode():
    torch.manual_seed(0)
    model = detect.mini_retinanet(64, 96)
    _randomise_batchnorm(model)
    x = torch.rand(2, 3, 64, 96)
    model.eval()
    with torch.no_grad():
        before = model.backbone(x)
    detect.freeze(model)
    assert detect.is_frozen(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    with torch.no_grad():
        model.train()
        in_train = model.backbone(x)
        model.eval()
        in_eval = model.backbone(x)
    for k in before:
        assert torch.equal(in_train[k], in_eval[k])
        torch.testing.assert_close(in_eval[k], before[k], rtol=1e-5, atol=1e-6)


def test_unfrozen_detector_is_reported():
    model = detect.mini_retinanet(64, 96)
    assert not detect.is_frozen(model)  # trainable, and BatchNorm in the backbone


def test_losses_are_focal_and_smooth_l1_and_reach_the_input():
    torch.manual_seed(0)
    model = detect.freeze(detect.mini_retinanet(64, 96))
    assert model.head.regression_head._loss_type == "smooth_l1"
    x = torch.rand(2, 3, 64, 96, requires_grad=True)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = detect.detection_losses(model, x, targets)
    assert set(losses) == {"classification", "bbox_regression"}
    total = losses["classification"] + losses["bbox_regression"]
    assert torch.isfinite(total)
    total.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_full_retinanet_plumbing_and_coco_state_dict_loading(tmp_path):
    from torchvision.models.detection import retinanet_resnet50_fpn_v2

    # a state dict laid out exactly as torchvision's COCO file (BatchNorm keys included)
    torch.manual_seed(0)
    reference = retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
    _randomise_batchnorm(reference, seed=1)
    path = tmp_path / "coco.pth"
    torch.save(reference.state_dict(), path)

    model = detect.full_retinanet(path, 800, 1333)
    # torchvision's count includes the BatchNorm scales and shifts, buffers once frozen
    frozen_affine = sum(m.weight.numel() + m.bias.numel() for m in model.modules()
                        if isinstance(m, FrozenBatchNorm2d))
    assert sum(p.numel() for p in model.parameters()) + frozen_affine == RETINANET_V2_PARAMETERS
    assert detect.is_frozen(model)
    assert model.transform.min_size == (800,) and model.transform.max_size == 1333
    assert model.head.regression_head._loss_type == "smooth_l1"
    # the COCO statistics land in the frozen layers
    torch.testing.assert_close(model.backbone.body.bn1.running_mean, reference.backbone.body.bn1.running_mean)
    torch.testing.assert_close(model.backbone.body.layer1[0].bn2.weight, reference.backbone.body.layer1[0].bn2.weight)
    assert isinstance(model.backbone.body.bn1, FrozenBatchNorm2d)


def test_coco_weights_a_file_as_given_a_folder_through_the_manifest(tmp_path, monkeypatch):
    path = tmp_path / "coco.pth"
    with pytest.raises(detect.data.DataMissingError, match="detector_weights 'coco.pth': no such file"):
        detect.coco_weights(str(path))  # a missing file says what to give, not a bare FileNotFoundError
    path.write_bytes(b"")
    assert detect.coco_weights(str(path)) == path
    seen = []
    monkeypatch.setattr(detect.data, "prepare", lambda name, root=None: seen.append((name, root)) or tmp_path)
    expected = tmp_path / detect.data.entry("retinanet-resnet50-fpn-v2-coco")["layout"][0]["path"]
    assert detect.coco_weights(tmp_path) == expected and detect.coco_weights("") == expected
    assert seen == [("retinanet-resnet50-fpn-v2-coco", tmp_path), ("retinanet-resnet50-fpn-v2-coco", None)]


def test_weights_digest_follows_every_weight_and_statistic():
    torch.manual_seed(0)
    a = detect.freeze(detect.mini_retinanet(32, 64))
    torch.manual_seed(0)
    b = detect.freeze(detect.mini_retinanet(32, 64))
    assert detect.weights_digest(a) == detect.weights_digest(b) and len(detect.weights_digest(a)) == 16
    b.backbone.body.stem[1].running_mean[0] += 1e-3  # a frozen statistic
    assert detect.weights_digest(a) != detect.weights_digest(b)


def test_average_precision_perfect_and_wrong_and_foreign_classes():
    gt = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 80.0], [60.0, 20.0, 90.0, 40.0]]),
           "labels": torch.tensor([1, 3])}]
    perfect = [{"boxes": gt[0]["boxes"].clone(), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 3])}]
    r = detect.average_precision(perfect, gt)
    assert r["AP"] == pytest.approx(1.0) and r["AP50"] == pytest.approx(1.0) and r["AP75"] == pytest.approx(1.0)
    # a confident box of a class RAW-NOD does not score (e.g. COCO 'truck' = 8) is dropped, not a false positive
    extra = [{"boxes": torch.cat([gt[0]["boxes"], torch.tensor([[0.0, 0.0, 30.0, 30.0]])]),
              "scores": torch.tensor([0.9, 0.8, 0.99]), "labels": torch.tensor([1, 3, 8])}]
    assert detect.average_precision(extra, gt)["AP"] == pytest.approx(1.0)
    # boxes shifted by ~half their size: IoU < 0.5, nothing counts
    shifted = [{"boxes": gt[0]["boxes"] + torch.tensor([25.0, 40.0, 25.0, 40.0]), "scores": torch.tensor([0.9, 0.8]),
                "labels": torch.tensor([1, 3])}]
    assert detect.average_precision(shifted, gt)["AP50"] == pytest.approx(0.0)


def test_config_key_depends_on_the_configuration():
    a = detect.MiniDetectorConfig()
    assert a.key() == detect.MiniDetectorConfig().key()
    assert a.key() != detect.MiniDetectorConfig(steps=a.steps + 1).key()
    assert a.key() != detect.MiniDetectorConfig(seed=1).key()
    assert a.key() == detect.MiniDetectorConfig(test_images=3).key()  # the test does not change the weights


def test_well_lit_scenes_are_seeded():
    a, ta = detect.well_lit_scenes(0, 1, 2, 64, 96)
    b, tb = detect.well_lit_scenes(0, 1, 2, 64, 96)
    c, _ = detect.well_lit_scenes(0, 0, 2, 64, 96)
    assert a.dtype == torch.uint8 and a.shape == (2, 3, 64, 96)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(ta, tb))


def test_pretrained_mini_detector_is_cached_and_frozen(tmp_path):
    cfg = detect.MiniDetectorConfig(height=64, width=96, min_size=64, max_size=128, steps=2, milestones=(),
                                    pool=8, test_images=2, batch_size=4)
    model, info = detect.pretrain_mini_detector(cfg, cache=tmp_path, progress=False)
    assert not info["cached"] and detect.is_frozen(model)
    assert (tmp_path / f"{cfg.key()}.pt").is_file()
    assert not (tmp_path / f"{cfg.key()}.checkpoint").exists()
    assert set(info["well_lit"]) == {"AP", "AP50", "AP75"}
    again, info2 = detect.pretrain_mini_detector(cfg, cache=tmp_path, progress=False)
    assert info2["cached"] and detect.is_frozen(again)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert info2["well_lit"] == info["well_lit"]
    # another well-lit test of the same weights: loaded, not retrained, and scored on the new scenes
    more = detect.MiniDetectorConfig(**{**cfg.__dict__, "test_images": 3})
    again, info3 = detect.pretrain_mini_detector(more, cache=tmp_path, progress=False)
    assert info3["cached"] and info3["config"]["test_images"] == 3 and info3["curves"] == info["curves"]
    images, targets = detect.well_lit_scenes(cfg.seed, 1, 3, cfg.height, cfg.width)
    assert info3["well_lit"] == detect.average_precision(detect.detect(again, [im.float() / 255 for im in images]), targets)
