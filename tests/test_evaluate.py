"""Tests of ``reprolib.evaluate``: tiled inference, per-image evaluation, summaries and record rows."""
import numpy as np
import pandas as pd
import pytest
import torch

from reprolib import data, evaluate
from reprolib.models.sid_unet import SIDUNet


def test_tile_spans_cover_each_pixel_once_on_the_pooling_grid():
    for length, tile, overlap in [(100, 64, 32), (1424, 512, 64), (2128, 512, 128), (513, 512, 64), (40, 64, 32)]:
        spans = evaluate.tile_spans(length, tile, overlap)
        covered = np.zeros(length, int)
        for a, b, ka, kb in spans:
            assert a % 16 == 0 and a <= ka < kb <= b <= length
            covered[ka:kb] += 1
        assert (covered == 1).all()
    with pytest.raises(ValueError, match="multiple of 16"):
        evaluate.tile_spans(100, 64, 40)


class _Local(torch.nn.Module):
    """A network with a small receptive field (2 convs: ±2 px) and a ×2 depth-to-space output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 12, 3, padding=1)

    def forward(self, x):
        return torch.nn.functional.pixel_shuffle(self.b(torch.relu(self.a(x))), 2)


def test_tiled_inference_equals_whole_image_inference_for_a_local_network():
    model = _Local().eval()
    x = torch.rand(1, 4, 80, 112)
    whole = evaluate.infer(model, x)
    tiled = evaluate.infer_tiled(model, x, tile=48, overlap=16)
    assert tiled.shape == (1, 3, 160, 224)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_infer_pads_crops_and_tiles_the_sid_unet():
    torch.manual_seed(0)
    model = SIDUNet(width=8).eval()  # a narrow copy: the same padding and pooling, faster
    x = torch.rand(1, 4, 40, 72)  # not multiples of 16
    with torch.no_grad():
        direct = model(x)
    whole = evaluate.infer(model, x)
    assert whole.shape == (1, 3, 80, 144)
    torch.testing.assert_close(whole, direct)
    tiled = evaluate.infer(model, x, tile=48, overlap=16)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 0.1 * whole.abs().mean()  # same image, seams aside


# ------------------------------------------------------------------ evaluation


def test_evaluation_tables_have_one_row_per_pair_and_ratio_groups(sid_root, cache):
    pairs = data.load_splits(sid_root)["test"]
    torch.manual_seed(0)
    ours = evaluate.evaluate(SIDUNet(width=8).eval(), pairs, cache, progress=False)
    base = evaluate.evaluate_conventional(pairs, cache, progress=False)
    for df in (ours, base):
        assert len(df) == len(pairs) and sorted(df["ratio"]) == [100, 250, 300]
        assert set(evaluate.METRIC_COLUMNS) <= set(df.columns)
        assert np.isfinite(df[list(evaluate.METRIC_COLUMNS)].to_numpy()).all()
    # the baseline is the amplified short exposure through LibRaw: brighter ratios are noisier
    summary = evaluate.summarise({"ours": ours, "traditional": base})
    assert list(summary.index) == ["ours", "traditional"] and (summary["images"] == len(pairs)).all()
    assert (summary["brightness"] > 0).all() and np.isfinite(summary["brightness"]).all()


def test_brightness_is_the_ratio_of_mean_levels(sid_root, cache):
    """An output at half the ground truth's level has brightness 0.5 and the PSNR of that error."""
    pair = data.load_splits(sid_root)["test"][0]
    target = data.SIDImages([pair], cache).target(pair)
    row = evaluate.image_row(pair, 0.5 * target, target)
    assert row["brightness"] == pytest.approx(0.5, rel=1e-5)
    assert row["psnr"] == pytest.approx(-10 * np.log10(float(((0.5 * target) ** 2).mean())), rel=1e-4)




def test_evaluation_in_the_mosaic_convention_pads_to_32(sid_root, cache):
    """Lamba & Mitra's convention: 1-channel mosaic in, padded to a multiple of 32 (48×64 is not)."""
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            seen.append(tuple(x.shape))
            return (x * self.w).repeat(1, 3, 1, 1).clamp(0, 1)

    pairs = data.load_splits(sid_root)["test"]
    df = evaluate.evaluate(Probe(), pairs, cache, convention=data.LLE_INPUT, progress=False)
    assert len(df) == len(pairs) and all(s[1] == 1 and s[2] % 32 == 0 and s[3] % 32 == 0 for s in seen)


def test_by_ratio_groups_and_counts():
    results = {"a": pd.DataFrame({"ratio": [100, 100, 300], "psnr": [20.0, 22.0, 15.0]}),
               "b": pd.DataFrame({"ratio": [100, 100, 300], "psnr": [18.0, 18.0, 12.0]})}
    t = evaluate.by_ratio(results)
    assert list(t.columns) == ["×100", "×300"] and list(t.index) == ["a", "b", "images"]
    assert t.loc["a", "×100"] == 21.0 and t.loc["b", "×300"] == 12.0 and list(t.loc["images"]) == [2, 1]


def test_metric_rows_serve_every_study():
    summary = pd.DataFrame({"images": [3], "PSNR": [21.123456], "SSIM": [0.5], "PSNR 8-bit": [21.0],
                            "SSIM 8-bit": [0.49]}, index=["ours"])
    rows = evaluate.metric_rows(summary, "ours", "SID U-Net", "sid/sony", "protocol text")
    assert [r["key"] for r in rows] == ["sid/sony/psnr", "sid/sony/ssim", "sid/sony/psnr_float", "sid/sony/ssim_float"]
    assert rows[2] == {"key": "sid/sony/psnr_float", "model": "SID U-Net", "metric": "PSNR (dB), float",
                       "value": 21.1235, "protocol": "protocol text", "split": "test", "images": 3}
    assert evaluate.metric_rows(summary, "ours", "x", None, "p")[0]["key"] is None
    # PyNET: other columns, the count in "patches", a missing value gives no row
    pynet = pd.DataFrame({"psnr": [20.0], "ms_ssim": [float("nan")], "patches": [5]}, index=["PyNET"])
    rows = evaluate.metric_rows(pynet, "PyNET", "PyNET", "pynet/zurich", "p",
                                (("psnr", "psnr", "PSNR (dB)"), ("ms_ssim", "ms_ssim", "MS-SSIM")), count="patches")
    assert [(r["key"], r["images"]) for r in rows] == [("pynet/zurich/psnr", 5)]
    # GenISP: AP columns, no image count, five digits, another split
    genisp = pd.DataFrame({"AP": [0.1234567], "AP50": [0.2]}, index=["GenISP"])
    rows = evaluate.metric_rows(genisp, "GenISP", "GenISP", "genisp/nikon", "p", (("AP", "ap", "AP"), ("AP50", "ap50", "AP50")),
                                split="nikon test", count=None, digits=5)
    assert rows[0] == {"key": "genisp/nikon/ap", "model": "GenISP", "metric": "AP", "value": 0.12346, "protocol": "p",
                       "split": "nikon test"}
