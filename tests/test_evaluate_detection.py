"""reprolib.evaluate's detection section (GenISP's Table 1 rows): what the detector was fed and how it scored."""
import math

import pytest
import torch
from torch import nn

from reprolib import detect, evaluate


def _items(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(3, 32, 48, generator=g) * 0.1,
             {"boxes": torch.tensor([[4.0, 4.0, 20.0, 24.0]]), "labels": torch.tensor([1])}) for _ in range(n)]


class _Gain(nn.Module):
    """A stand-in ISP: 1×3×h×w → 1×3×h×w, × 4."""

    def forward(self, x):
        return x * 4.0


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return detect.freeze(detect.mini_retinanet(32, 64))


def test_detection_row_scores_and_describes_the_detector_input(detector):
    items = _items()
    r = evaluate.detection_row(detector, items, batch_size=2, keep=3)
    pixels = torch.stack([im for im, _ in items]).double()
    assert r["input_mean"] == pytest.approx(float(pixels.mean()), rel=1e-6)
    assert r["input_std"] == pytest.approx(float(pixels.std(unbiased=False)), rel=1e-5)
    assert len(r["predictions"]) == len(r["targets"]) == 5 and len(r["examples"]) == 3
    assert torch.equal(r["examples"][2], items[2][0])
    assert {k: r[k] for k in ("AP", "AP50", "AP75")} == detect.average_precision(r["predictions"], r["targets"])
    again = evaluate.detection_row(detector, items, batch_size=5, keep=0)  # the batch size changes nothing
    assert again["examples"] == [] and again["AP"] == r["AP"] and again["input_mean"] == pytest.approx(r["input_mean"])


def test_detection_row_feeds_the_detector_the_isp_output(detector):
    items = _items(n=2)
    plain = evaluate.detection_row(detector, items)
    through = evaluate.detection_row(detector, items, isp=_Gain())
    assert through["input_mean"] == pytest.approx(4 * plain["input_mean"], rel=1e-6)
    torch.testing.assert_close(through["examples"][0], items[0][0] * 4)
    assert math.isfinite(through["input_std"]) and through["input_std"] > plain["input_std"]


def test_detection_protocol_names_the_metric():
    assert "COCO AP" in evaluate.DETECTION_PROTOCOL and "pycocotools" in evaluate.DETECTION_PROTOCOL
