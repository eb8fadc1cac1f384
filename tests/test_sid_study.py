"""Tests of the SID study's data pipeline, tiled inference, evaluation and parameters."""
import itertools
import json

import numpy as np
import pytest
import torch

from reprolib import data, raw, sid_study, study, synth
from reprolib.models.sid_unet import SIDUNet


@pytest.fixture(scope="module")
def sid_root(tmp_path_factory):
    """A tiny SID-layout data set (real DNGs): 2 train, 1 test, 1 val scenes, with burst 01."""
    root = tmp_path_factory.mktemp("sid-tiny")
    synth.write_sid_dataset(root, seed=3, n_train=2, n_test=1, n_val=1, height=48, width=64)
    return root


@pytest.fixture(scope="module")
def cache(sid_root, tmp_path_factory):
    return sid_study.DecodedCache(sid_root, folder=tmp_path_factory.mktemp("decoded"))


# ------------------------------------------------------------------ exposure ratio


def test_amplification_is_capped_at_300_and_grouped_like_sid():
    pair = data.SIDPair(short="./Sony/short/10003_00_0.033s.ARW", long="./Sony/long/10003_00_10s.ARW",
                        scene=10003, burst=0, short_exposure=0.033, long_exposure=10.0, ratio=10 / 0.033,
                        iso=100, aperture="F8", split="test")
    assert sid_study.amplification(pair) == 300.0
    assert sid_study.amplification(pair, cap=None) == pytest.approx(303.03, abs=0.01)
    assert sid_study.ratio_label(pair) == 300
    import dataclasses
    assert sid_study.ratio_label(dataclasses.replace(pair, ratio=250.0)) == 250


# ------------------------------------------------------------------ representation


def test_model_input_packs_rgbg_amplifies_and_clips():
    cfa_values = {"R": 0.001, "G": 0.002, "B": 0.004}
    for cfa in raw.CFA_PATTERNS:
        mosaic = np.zeros((4, 6), np.float32)
        for i, c in enumerate(cfa):
            mosaic[i // 2::2, i % 2::2] = cfa_values[c]
        x = sid_study.model_input(mosaic, cfa, 300.0)
        assert x.shape == (4, 2, 3) and x.dtype == np.float32
        # SID's order R, G, B, G; 0.004 × 300 = 1.2 is clipped to 1
        np.testing.assert_allclose(x[:, 0, 0], [0.3, 0.6, 1.0, 0.6], rtol=1e-6)
        unclipped = sid_study.model_input(mosaic, cfa, 300.0, representation="packed_rggb", clip=False)
        np.testing.assert_allclose(unclipped[:, 0, 0], [0.3, 0.6, 0.6, 1.2], rtol=1e-6)
        m = sid_study.model_input(mosaic, cfa, 2.0, representation="mosaic", clip=False)
        np.testing.assert_allclose(m[0], mosaic * 2)
    with pytest.raises(ValueError, match="representation"):
        sid_study.model_input(mosaic, "RGGB", 1.0, representation="rgb")


# ------------------------------------------------------------------ Bayer-preserving augmentation


def _colour_coded(cfa, h, w, rng):
    """A mosaic whose values say their colour (integer part 1/2/3) and position (fraction)."""
    code = {"R": 1.0, "G": 2.0, "B": 3.0}
    colours = np.tile(np.array([code[c] for c in cfa]).reshape(2, 2), (h // 2 + 1, w // 2 + 1))[:h, :w]
    return colours + rng.uniform(0.01, 0.99, (h, w))


@pytest.mark.parametrize("cfa", raw.CFA_PATTERNS)
def test_flips_and_transposes_keep_the_cfa_phase_and_the_alignment(cfa):
    rng = np.random.default_rng(0)
    size = 6
    window = _colour_coded(cfa, size + 1, size + 1, rng)
    target = np.stack([window, -window, 2 * window], -1)  # the target is the mosaic itself
    expected = _colour_coded(cfa, size, size, rng).astype(int)  # the colour layout of the phase
    seen = set()
    for ops in itertools.product([False, True], repeat=3):
        crop, t = sid_study.bayer_augment(window, target, cfa, size, *ops)
        assert crop.shape == (size, size) and t.shape == (size, size, 3)
        np.testing.assert_array_equal(crop.astype(int), expected)  # every pixel has its colour's place
        np.testing.assert_array_equal(t[..., 0], crop)  # input and target moved identically
        np.testing.assert_array_equal(t[..., 1], -crop)
        assert len(np.unique(crop)) == size * size  # a permutation of distinct pixels, no repeats
        seen.add(crop.tobytes())
    assert len(seen) == 8  # the eight operations give eight different crops


def test_flip_is_a_true_mirror_of_the_scene():
    # A vertical flip maps row r of the window to row (size - r) (after the one-pixel re-alignment)
    size = 4
    window = np.arange((size + 1) ** 2, dtype=np.float32).reshape(size + 1, size + 1)
    crop, _ = sid_study.bayer_augment(window, None, "RGGB", size, True, False, False)
    np.testing.assert_array_equal(crop, window[size:0:-1, :size])
    crop, _ = sid_study.bayer_augment(window, None, "RGGB", size, False, True, False)
    np.testing.assert_array_equal(crop, window[:size, size:0:-1])
    crop, _ = sid_study.bayer_augment(window, None, "RGGB", size, False, False, True)
    np.testing.assert_array_equal(crop, window[:size, :size].T)  # RGGB transposes onto itself


def test_random_crops_start_on_a_cfa_tile():
    rng = np.random.default_rng(1)
    mosaic = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    for _ in range(50):
        crop, _ = sid_study.random_bayer_crop(rng, mosaic, None, "RGGB", 8, augment=False)
        y0, x0 = divmod(int(crop[0, 0]), 30)
        assert y0 % 2 == 0 and x0 % 2 == 0
        np.testing.assert_array_equal(crop, mosaic[y0:y0 + 8, x0:x0 + 8])
    with pytest.raises(ValueError, match="crop size"):
        sid_study.random_bayer_crop(rng, mosaic, None, "RGGB", 20)
    with pytest.raises(ValueError, match="crop size"):
        sid_study.random_bayer_crop(rng, mosaic, None, "RGGB", 7)


# ------------------------------------------------------------------ decoded cache and data sets


def test_cache_decodes_once_and_matches_the_raw_reader(sid_root, cache, monkeypatch):
    splits = sid_study.load_splits(sid_root)
    assert all(p.burst == 0 for ps in splits.values() for p in ps)
    assert len(splits["train"]) == 2 * len(synth.SID_SHORT_EXPOSURES)  # burst 01 left out
    assert len(sid_study.load_splits(sid_root, burst00=False)["train"]) == 2 * (len(synth.SID_SHORT_EXPOSURES) + 1)
    cache.ensure(splits["train"], progress=False)
    pair = splits["train"][0]
    m = cache.mosaic(pair.short_path)
    assert isinstance(m, np.memmap) and m.dtype == np.float32
    np.testing.assert_array_equal(m, raw.read(pair.short_path).mosaic)
    gt = cache.ground_truth(pair.long_path)
    assert gt.dtype == np.uint16 and gt.shape == m.shape + (3,)
    np.testing.assert_array_equal(gt, sid_study.render_ground_truth(pair.long_path))
    info = cache.info(pair.short_path)
    assert info.cfa == "RGGB" and info.white_level == 16383 and info.shape == m.shape

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(raw, "read", no_decoding)
    monkeypatch.setattr(sid_study, "render_ground_truth", no_decoding)
    cache.ensure(splits["train"], progress=False)
    cache.mosaic(pair.short_path), cache.ground_truth(pair.long_path)


def test_cache_folder_is_keyed_by_the_data_fingerprint(sid_root, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_DATA", str(tmp_path))
    c = sid_study.DecodedCache(sid_root)
    assert data.fingerprint(sid_root) in c.folder.name and c.folder.parent == tmp_path / "decoded"


def test_training_patches_are_reproducible_and_visit_every_scene(sid_root, cache):
    splits = sid_study.load_splits(sid_root)
    patches = sid_study.SIDTrainingPatches(splits["train"], cache, patch=16, seed=7)
    x, y = patches(5)
    assert x.shape == (1, 4, 16, 16) and y.shape == (1, 3, 32, 32)
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and 0 <= y.min() and y.max() <= 1
    x2, y2 = sid_study.SIDTrainingPatches(splits["train"], cache, patch=16, seed=7)(5)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, patches(6)[0])
    assert not torch.equal(x, sid_study.SIDTrainingPatches(splits["train"], cache, patch=16, seed=8)(5)[0])
    for epoch in range(3):
        steps = range(epoch * patches.steps_per_epoch, (epoch + 1) * patches.steps_per_epoch)
        assert sorted(patches.sample(s)[0][0].scene for s in steps) == sorted({p.scene for p in splits["train"]})
    mosaic = sid_study.SIDTrainingPatches(splits["train"], cache, patch=16, seed=7,
                                          representation="mosaic", clip=False)(5)[0]
    assert mosaic.shape == (1, 1, 16, 16)


def test_whole_images_are_amplified_inputs_and_full_resolution_targets(sid_root, cache):
    pairs = sid_study.load_splits(sid_root)["test"]
    images = sid_study.SIDImages(pairs, cache)
    pair, x, y = images[0]
    m = raw.read(pair.short_path).mosaic
    expected = raw.pack(np.minimum(m * sid_study.amplification(pair), 1), "RGGB", "RGBG")
    np.testing.assert_allclose(x[0].numpy(), expected, rtol=1e-6)
    assert y.shape == (1, 3) + m.shape


# ------------------------------------------------------------------ tiled inference


def test_tile_spans_cover_each_pixel_once_on_the_pooling_grid():
    for length, tile, overlap in [(100, 64, 32), (1424, 512, 64), (2128, 512, 128), (513, 512, 64), (40, 64, 32)]:
        spans = sid_study.tile_spans(length, tile, overlap)
        covered = np.zeros(length, int)
        for a, b, ka, kb in spans:
            assert a % 16 == 0 and a <= ka < kb <= b <= length
            covered[ka:kb] += 1
        assert (covered == 1).all()
    with pytest.raises(ValueError, match="multiple of 16"):
        sid_study.tile_spans(100, 64, 40)


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
    whole = sid_study.infer(model, x)
    tiled = sid_study.infer_tiled(model, x, tile=48, overlap=16)
    assert tiled.shape == (1, 3, 160, 224)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_infer_pads_crops_and_tiles_the_sid_unet():
    torch.manual_seed(0)
    model = SIDUNet(width=8).eval()  # a narrow copy: the same padding and pooling, faster
    x = torch.rand(1, 4, 40, 72)  # not multiples of 16
    with torch.no_grad():
        direct = model(x)
    whole = sid_study.infer(model, x)
    assert whole.shape == (1, 3, 80, 144)
    torch.testing.assert_close(whole, direct)
    tiled = sid_study.infer(model, x, tile=48, overlap=16)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 0.1 * whole.abs().mean()  # same image, seams aside


# ------------------------------------------------------------------ evaluation


def test_evaluation_tables_have_one_row_per_pair_and_ratio_groups(sid_root, cache):
    pairs = sid_study.load_splits(sid_root)["test"]
    torch.manual_seed(0)
    ours = sid_study.evaluate(SIDUNet(width=8).eval(), pairs, cache, progress=False)
    base = sid_study.evaluate_baseline(pairs, cache, progress=False)
    for df in (ours, base):
        assert len(df) == len(pairs) and sorted(df["ratio"]) == [100, 250, 300]
        assert set(sid_study.METRIC_COLUMNS) <= set(df.columns)
        assert np.isfinite(df[list(sid_study.METRIC_COLUMNS)].to_numpy()).all()
    # the baseline is the amplified short exposure through LibRaw: brighter ratios are noisier
    summary = sid_study.summarise({"ours": ours, "traditional": base})
    assert list(summary.index) == ["ours", "traditional"] and (summary["images"] == len(pairs)).all()
    assert (summary["brightness"] > 0).all() and np.isfinite(summary["brightness"]).all()


def test_brightness_is_the_ratio_of_mean_levels(sid_root, cache):
    """An output at half the ground truth's level has brightness 0.5 and the PSNR of that error."""
    pair = sid_study.load_splits(sid_root)["test"][0]
    target = sid_study.SIDImages([pair], cache).target(pair)
    row = sid_study._row(pair, 0.5 * target, target)
    assert row["brightness"] == pytest.approx(0.5, rel=1e-5)
    assert row["psnr"] == pytest.approx(-10 * np.log10(float(((0.5 * target) ** 2).mean())), rel=1e-4)


def test_published_rows_come_from_the_data_file():
    t = sid_study.published_table()
    assert set(t["source"]) == {"paper", "reproduction"} and t[["PSNR", "SSIM"]].notna().all().all()
    bn = sid_study.published_table([f"sid_batchnorm/{n}" for n in ("none", "single", "double")])
    assert len(bn) == 3


# ------------------------------------------------------------------ parameters


def test_parameters_reject_unknown_names_and_bad_values():
    with pytest.raises(ValueError, match="unknown parameter 'epoch'"):
        study.resolve_parameters("sid", {"profile": "mini", "epoch": 3}, sid_study.PARAMETERS)
    with pytest.raises(ValueError, match="norm must be one of"):
        study.resolve_parameters("sid", {"norm": "group"}, sid_study.PARAMETERS)
    with pytest.raises(ValueError, match="patch"):
        study.resolve_parameters("sid", {"patch": 100}, sid_study.PARAMETERS)
    with pytest.raises(ValueError, match="device"):
        study.resolve_parameters("sid", {"device": "gpu0"}, sid_study.PARAMETERS)
    with pytest.raises(ValueError, match="unknown parameter 'norm'"):
        study.resolve_parameters("sid_batchnorm", {"norm": "none"}, sid_study.PARAMETERS_BATCHNORM)


def test_full_profile_is_the_papers_training():
    for spec in (sid_study.PARAMETERS, sid_study.PARAMETERS_BATCHNORM):
        P = study.resolve_parameters("sid", {"profile": "full", "data_root": "/data/SID"}, spec)
        assert (P["epochs"], P["patch"], P["lr"], P["lr_drop"], P["batch"]) == (4000, 512, 1e-4, 2000, 1)
        assert P["burst00"] and P["exclude_misaligned"]
        cfg = sid_study.train_config(P, steps_per_epoch=161)
        assert cfg.steps == 4000 * 161 and cfg.milestones == (2000 * 161,) and cfg.gamma == 0.1
        assert cfg.grad_clip is None  # the official code does not clip; the miniature does
    P = study.resolve_parameters("sid", {"profile": "mini", "epochs": 3, "lr_drop": 0}, sid_study.PARAMETERS)
    assert P["overridden"] == ["epochs", "lr_drop"] and sid_study.train_config(P, 24).milestones == ()


def test_findings_follow_the_numbers():
    import pandas as pd

    from reprolib.train import History

    bn = pd.DataFrame({"PSNR": [20.0, 18.0, 17.5], "SSIM": [0.5, 0.4, 0.38]}, index=["none", "single", "double"])
    losses = {n: History(curves={"loss": [{"step": 10, "value": v}]}) for n, v in zip(bn.index, [0.05, 0.08, 0.09])}
    text = sid_study.batchnorm_findings(bn, histories=losses)
    assert "-2.00 dB" in text and "same way" in text and "fit the training crops worse" in text
    text = sid_study.batchnorm_findings(bn.iloc[::-1].set_axis(bn.index))
    assert "other way" in text
    summary = pd.DataFrame({"PSNR": [21.0, 17.0], "SSIM": [0.5, 0.3]}, index=["ours", "base"])
    ratios = pd.DataFrame({"×100": [22.0, 20.0], "×300": [20.0, 15.0]}, index=["ours", "base"])
    text = sid_study.sid_findings(summary, ratios, "ours", "base", synthetic=True)
    assert "+4.00 dB" in text and "holds" in text and "positive at every" in text
    text = sid_study.sid_findings(summary.iloc[::-1].set_axis(summary.index), ratios, "ours", "base", synthetic=False)
    assert "does not hold" in text


# ------------------------------------------------------------------ training, shared checkpoint

def test_train_model_trains_once_and_both_notebooks_reuse_it(sid_root, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    splits = sid_study.load_splits(sid_root)
    P = study.resolve_parameters("sid", {"profile": "smoke", "patch": 16, "eval_every": 1}, sid_study.PARAMETERS)
    model, history = sid_study.train_model("none", P, splits, cache, "data-1")
    assert history.resumed_from == 0 and "val_psnr" in history.curves and not model.training
    B = study.resolve_parameters("sid_batchnorm", {"profile": "smoke", "patch": 16, "eval_every": 1},
                                 sid_study.PARAMETERS_BATCHNORM)
    again, history_again = sid_study.train_model("none", B, splits, cache, "data-1")
    assert history_again.resumed_from == history.curves["loss"][-1]["step"]  # reloaded, not retrained
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)
    assert len(list((tmp_path / "sid_shared").glob("none-*.pt"))) == 1
    # any change of the configuration or the data trains another network
    sid_study.train_model("none", {**P, "seed": 1}, splits, cache, "data-1")
    sid_study.train_model("none", P, splits, cache, "data-2")
    assert len(list((tmp_path / "sid_shared").glob("none-*.pt"))) == 3


def test_sid_and_batchnorm_notebooks_share_the_training_budget():
    """The official network of the ablation is the one ``sid.ipynb`` trains: same settings per profile."""
    for profile in study.PROFILES:
        a = study.resolve_parameters("sid", {"profile": profile}, sid_study.PARAMETERS)
        b = study.resolve_parameters("sid_batchnorm", {"profile": profile}, sid_study.PARAMETERS_BATCHNORM)
        assert {k: v for k, v in a.items() if k != "norm"} == b
