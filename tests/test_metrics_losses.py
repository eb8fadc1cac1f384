"""reprolib.metrics and reprolib.losses (with PyNET's own PSNR, MS-SSIM, content network and losses)."""
import math

import pytest
import torch

from reprolib import losses, metrics


def test_psnr_known_value_and_per_image():
    t = torch.zeros(2, 3, 8, 8)
    p = t.clone()
    p[0] += 0.1  # MSE 0.01 -> 20 dB
    p[1] += 0.01  # MSE 1e-4 -> 40 dB
    assert metrics.psnr(p, t).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)


def test_ssim_identity_and_8bit():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(1, 3, 32, 32, generator=g)
    assert metrics.ssim(t, t).item() == pytest.approx(1.0, abs=1e-6)
    m = metrics.image_metrics(t + 0.001, t)
    assert set(m) == {"psnr", "ssim", "psnr_8bit", "ssim_8bit"}
    assert m["psnr_8bit"][0] != m["psnr"][0]
    q = metrics.quantize_8bit(torch.tensor([-0.1, 0.5, 1.2]))
    assert q.tolist() == pytest.approx([0.0, 128 / 255, 1.0])


def test_shape_errors_and_ms_ssim_size():
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="176"):
        metrics.ms_ssim(torch.zeros(1, 3, 100, 200), torch.zeros(1, 3, 100, 200))
    with pytest.raises(ValueError, match="176"):
        losses.ms_ssim_loss(torch.zeros(1, 3, 100, 200), torch.zeros(1, 3, 100, 200))


def test_losses_are_zero_on_identity_and_differentiable():
    g = torch.Generator().manual_seed(1)
    t = torch.rand(1, 3, 176, 176, generator=g)
    for name, fn in losses.LOSSES.items():
        assert fn(t, t).item() == pytest.approx(0.0, abs=1e-5), name
        p = (t * 0.8).requires_grad_()
        v = fn(p, t)
        v.backward()
        assert v.item() > 0 and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    p = t * 0.5
    assert losses.l1_ms_ssim(p, t).item() == pytest.approx(
        losses.l1(p, t).item() + 0.2 * losses.ms_ssim_loss(p, t).item(), rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get_loss("l2")


def test_published_numbers_file_is_well_formed():
    from reprolib import report

    rows = report.published()
    fields = {"key", "study", "metric", "model", "dataset", "value", "kind", "source"}
    assert all(set(r) == fields for r in rows), [r["key"] for r in rows if set(r) != fields]
    assert all(r["kind"] in ("paper", "reproduction") and r["source"] for r in rows)
    assert report.published_value("sid/sony/psnr") == 28.88
    assert report.published_value("genisp/nikon/ap") is None  # not readable: never invented


# ------------------------------------------------------------------------------ PyNET's metrics and losses

def test_psnr_official_is_unclamped_20_log10():
    t = torch.zeros(2, 3, 8, 8)
    p = t.clone()
    p[0] += 0.1   # MSE 0.01 -> 20 dB
    p[1] += 1.1   # outside [0, 1]: not clamped (torchmetrics' psnr would clamp to 1 -> 0 dB)
    assert metrics.psnr_official(p, t).tolist() == pytest.approx([20.0, -20 * math.log10(1.1)], abs=1e-4)


def test_ms_ssim_official_properties():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 192, 192, generator=g)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    assert torch.allclose(metrics.ms_ssim_official(a, a), torch.ones(2), atol=1e-5)
    ours = metrics.ms_ssim_official(a, b)
    assert ours.shape == (2,) and (ours < 0.99).all()
    assert torch.allclose(ours, metrics.ms_ssim(b, a), atol=0.03)  # same measure, other conventions
    # whole-batch reduction equals the per-image value for one image; small patches still work
    assert torch.allclose(metrics.ms_ssim_official(a[:1], b[:1], reduction="batch"), ours[0])
    small = metrics.ms_ssim_official(a[:, :, :64, :64], b[:, :, :64, :64], normalize="relu")
    assert torch.isfinite(small).all()
    with pytest.raises(ValueError, match="normalize"):
        metrics.ms_ssim_official(a, b, normalize="sigmoid")
    with pytest.raises(ValueError, match="same shape"):
        metrics.ms_ssim_official(a, b[..., :64])


def test_pynet_loss_per_level():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    mse = torch.nn.functional.mse_loss(pred, target)
    assert torch.allclose(losses.pynet_loss(5, pred, target), mse)
    assert torch.allclose(losses.pynet_loss(4, pred, target), mse)
    assert torch.allclose(losses.pynet_loss(2, pred, target), 10 * mse)
    ms = metrics.ms_ssim_official(pred, target, normalize="relu", reduction="batch")
    assert torch.allclose(losses.pynet_loss(0, pred, target), mse + 0.4 * (1 - ms))
    net = losses.content_network("vgg19-random", seed=0)
    with_content = losses.pynet_loss(1, pred, target, net)
    assert with_content > 10 * mse
    # relu5_4 is empty below 16 px: the term is left out rather than failing
    assert torch.allclose(losses.pynet_loss(3, pred[..., :8, :8], target[..., :8, :8], net),
                          10 * torch.nn.functional.mse_loss(pred[..., :8, :8], target[..., :8, :8]))


def test_content_network_kinds(tmp_path):
    assert losses.content_network("none") is None
    with pytest.raises(ValueError, match="content loss"):
        losses.content_network("vgg16")
    with pytest.raises(ValueError, match="weights"):
        losses.content_network("vgg19-imagenet")
    a, b = losses.content_network("vgg19-random", seed=5), losses.content_network("vgg19-random", seed=5)
    x = torch.rand(1, 3, 32, 32)
    fa = a(x)
    assert fa.shape == (1, 512, 2, 2) and torch.equal(fa, b(x))
    assert not any(p.requires_grad for p in a.parameters())
    a.train()
    assert not a.training  # always frozen
    # an ImageNet-format state dict (torchvision keys, classifier included) loads into the features
    state = {f"features.{k}": v * 0.5 for k, v in a.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "vgg19.pth")
    c = losses.content_network("vgg19-imagenet", tmp_path / "vgg19.pth")
    assert torch.equal(c.features[0].weight, a.features[0].weight * 0.5)


def test_content_network_is_built_on_the_training_device():
    """PyNET's content ablation ran its VGG on the CPU beside a network on ``cuda`` (a crash at full
    scale): the network now comes on the device it is asked for (``meta`` stands in for a GPU here)."""
    net = losses.content_network("vgg19-random", seed=0, device="meta")
    assert {p.device.type for p in net.parameters()} == {"meta"}
