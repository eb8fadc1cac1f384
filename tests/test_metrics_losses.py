"""reprolib.metrics and reprolib.losses."""
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
