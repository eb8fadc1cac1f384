"""Tests of SID's paired-raw data pipeline (``reprolib.data.sid``) and of the SID study (parameters, training)."""
import dataclasses
import itertools

import numpy as np
import pytest
import torch

import reprolib.data.sid as sid_data
from reprolib import data, raw, sid_study, study, synth


# ------------------------------------------------------------------ exposure ratio


def test_amplification_is_capped_at_300_and_grouped_like_sid():
    pair = data.SIDPair(short="./Sony/short/10003_00_0.033s.ARW", long="./Sony/long/10003_00_10s.ARW",
                        scene=10003, burst=0, short_exposure=0.033, long_exposure=10.0, ratio=10 / 0.033,
                        iso=100, aperture="F8", split="test")
    assert data.amplification(pair) == 300.0
    assert data.amplification(pair, cap=None) == pytest.approx(303.03, abs=0.01)
    assert data.ratio_label(pair) == 300
    assert data.ratio_label(dataclasses.replace(pair, ratio=250.0)) == 250


def test_the_two_input_conventions():
    assert (data.SID_INPUT.representation, data.SID_INPUT.clip, data.SID_INPUT.cap, data.SID_INPUT.multiple) == \
        ("packed", True, 300.0, 16)
    assert (data.LLE_INPUT.representation, data.LLE_INPUT.clip, data.LLE_INPUT.cap, data.LLE_INPUT.multiple) == \
        ("mosaic", False, None, 32)
    assert (data.SID_INPUT.scale, data.LLE_INPUT.scale) == (2, 1)
    with pytest.raises(ValueError, match="representation"):
        data.InputConvention("rgb", clip=True, cap=None, multiple=16)
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.SID_INPUT.clip = False


# ------------------------------------------------------------------ representation


def test_model_input_packs_rgbg_amplifies_and_clips():
    cfa_values = {"R": 0.001, "G": 0.002, "B": 0.004}
    for cfa in raw.CFA_PATTERNS:
        mosaic = np.zeros((4, 6), np.float32)
        for i, c in enumerate(cfa):
            mosaic[i // 2::2, i % 2::2] = cfa_values[c]
        x = data.model_input(mosaic, cfa, 300.0)
        assert x.shape == (4, 2, 3) and x.dtype == np.float32
        # SID's order R, G, B, G; 0.004 × 300 = 1.2 is clipped to 1
        np.testing.assert_allclose(x[:, 0, 0], [0.3, 0.6, 1.0, 0.6], rtol=1e-6)
        unclipped = data.model_input(mosaic, cfa, 300.0, data.InputConvention("packed", False, None, 16))
        np.testing.assert_allclose(unclipped[:, 0, 0], [0.3, 0.6, 1.2, 0.6], rtol=1e-6)
        m = data.model_input(mosaic, cfa, 2.0, data.LLE_INPUT)
        assert m.shape == (1, 4, 6)
        np.testing.assert_allclose(m[0], mosaic * 2)


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
        crop, t = data.bayer_augment(window, target, cfa, size, *ops)
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
    crop, _ = data.bayer_augment(window, None, "RGGB", size, True, False, False)
    np.testing.assert_array_equal(crop, window[size:0:-1, :size])
    crop, _ = data.bayer_augment(window, None, "RGGB", size, False, True, False)
    np.testing.assert_array_equal(crop, window[:size, size:0:-1])
    crop, _ = data.bayer_augment(window, None, "RGGB", size, False, False, True)
    np.testing.assert_array_equal(crop, window[:size, :size].T)  # RGGB transposes onto itself


def test_random_crops_start_on_a_cfa_tile():
    rng = np.random.default_rng(1)
    mosaic = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    for _ in range(50):
        crop, _ = data.random_bayer_crop(rng, mosaic, None, "RGGB", 8, augment=False)
        y0, x0 = divmod(int(crop[0, 0]), 30)
        assert y0 % 2 == 0 and x0 % 2 == 0
        np.testing.assert_array_equal(crop, mosaic[y0:y0 + 8, x0:x0 + 8])
    with pytest.raises(ValueError, match="crop size"):
        data.random_bayer_crop(rng, mosaic, None, "RGGB", 20)
    with pytest.raises(ValueError, match="crop size"):
        data.random_bayer_crop(rng, mosaic, None, "RGGB", 7)


# ------------------------------------------------------------------ decoded cache and data sets


def test_cache_decodes_once_and_matches_the_raw_reader(sid_root, cache, monkeypatch):
    splits = data.load_splits(sid_root)
    assert all(p.burst == 0 for ps in splits.values() for p in ps)
    assert len(splits["train"]) == 2 * len(synth.SID_SHORT_EXPOSURES)  # burst 01 left out
    assert len(data.load_splits(sid_root, burst00=False)["train"]) == 2 * (len(synth.SID_SHORT_EXPOSURES) + 1)
    cache.ensure(splits["train"], progress=False)
    pair = splits["train"][0]
    m = cache.mosaic(pair.short_path)
    assert isinstance(m, np.memmap) and m.dtype == np.float32
    np.testing.assert_array_equal(m, raw.read(pair.short_path).mosaic)
    gt = cache.ground_truth(pair.long_path)
    assert gt.dtype == np.uint16 and gt.shape == m.shape + (3,)
    np.testing.assert_array_equal(gt, data.render_ground_truth(pair.long_path))
    info = cache.info(pair.short_path)
    assert info.cfa == "RGGB" and info.white_level == 16383 and info.shape == m.shape

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(raw, "read", no_decoding)
    monkeypatch.setattr(sid_data, "render_ground_truth", no_decoding)
    cache.ensure(splits["train"], progress=False)
    cache.mosaic(pair.short_path), cache.ground_truth(pair.long_path)


def test_cache_folder_is_keyed_by_the_data_fingerprint(sid_root, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_DATA", str(tmp_path))
    c = data.DecodedCache(sid_root)
    assert data.fingerprint(sid_root) in c.folder.name and c.folder.parent == tmp_path / "decoded"


def test_training_patches_are_reproducible_and_visit_every_scene(sid_root, cache):
    splits = data.load_splits(sid_root)
    patches = data.SIDTrainingPatches(splits["train"], cache, patch=16, seed=7)
    x, y = patches(5)
    assert x.shape == (1, 4, 16, 16) and y.shape == (1, 3, 32, 32)
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and 0 <= y.min() and y.max() <= 1
    x2, y2 = data.SIDTrainingPatches(splits["train"], cache, patch=16, seed=7)(5)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, patches(6)[0])
    assert not torch.equal(x, data.SIDTrainingPatches(splits["train"], cache, patch=16, seed=8)(5)[0])
    for epoch in range(3):
        steps = range(epoch * patches.steps_per_epoch, (epoch + 1) * patches.steps_per_epoch)
        assert sorted(patches.sample(s)[0][0].scene for s in steps) == sorted({p.scene for p in splits["train"]})
    mosaic = data.SIDTrainingPatches(splits["train"], cache, patch=16, seed=7, convention=data.LLE_INPUT)(5)[0]
    assert mosaic.shape == (1, 1, 16, 16)


def test_training_patches_draw_the_streams_their_docstring_names(sid_root, cache):
    """Epoch order from ``default_rng([seed, 1, epoch])``; the exposure, then the crop, from ``[seed, 0, step]``."""
    splits = data.load_splits(sid_root)
    patches = data.SIDTrainingPatches(splits["train"], cache, patch=16, seed=7)
    n = len(patches.scenes)
    for step in range(2 * patches.steps_per_epoch):
        epoch, slot = divmod(step, patches.steps_per_epoch)
        scene = patches.scenes[np.random.default_rng([7, 1, epoch]).permutation(n)[slot % n]]
        rng = np.random.default_rng([7, 0, step])
        pair = scene[int(rng.integers(len(scene)))]
        (got, x, y), = patches.sample(step)
        assert got == pair
        info = cache.info(pair.short_path)
        mosaic, target = data.random_bayer_crop(rng, cache.mosaic(pair.short_path), cache.ground_truth(pair.long_path),
                                                info.cfa, 32)
        np.testing.assert_array_equal(x, data.model_input(mosaic, info.cfa, data.amplification(pair)))
        np.testing.assert_array_equal(y, target.transpose(2, 0, 1).astype(np.float32) / np.float32(65535.0))


def test_whole_images_are_amplified_inputs_and_full_resolution_targets(sid_root, cache):
    pairs = data.load_splits(sid_root)["test"]
    images, pair = data.SIDImages(pairs, cache), pairs[0]
    x, y = images.input(pair), images.target(pair)
    m = raw.read(pair.short_path).mosaic
    expected = raw.pack(np.minimum(m * data.amplification(pair), 1), "RGGB", "RGBG")
    np.testing.assert_allclose(x[0].numpy(), expected, rtol=1e-6)
    assert y.shape == (1, 3) + m.shape


def test_a_given_data_root_must_be_in_sids_layout(sid_root, tmp_path):
    """``load_splits`` is the notebooks' layout check of a user's ``data_root``: it names the folder."""
    root, record = data.dataset_for_profile("mini", str(sid_root), "sid-sony", "sid-sony-mini", check=data.load_splits)
    assert root == sid_root and record["name"] == sid_root.name and record["fingerprint"] == data.fingerprint(sid_root)
    with pytest.raises(data.DataMissingError, match=f"{tmp_path}/Sony_train_list.txt"):
        data.dataset_for_profile("smoke", str(tmp_path), "sid-sony", "sid-sony-mini", check=data.load_splits)


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


def test_smoke_data_fits_the_smoke_crop():
    P = study.resolve_parameters("sid", {"profile": "smoke"}, sid_study.PARAMETERS)
    assert min(sid_study.SMOKE_DATA["height"], sid_study.SMOKE_DATA["width"]) >= 2 * P["patch"] + 1


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


# ------------------------------------------------------------------ training, shared checkpoint

def test_train_model_trains_once_and_both_notebooks_reuse_it(sid_root, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    splits = data.load_splits(sid_root)
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
        assert {k: v for k, v in a.items() if k not in ("norm", "weights", "official_weights_path")} == b


def test_missing_official_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_DATA", str(tmp_path))
    P = study.resolve_parameters("sid", {"profile": "full", "weights": "official"}, sid_study.PARAMETERS)
    with pytest.raises(data.DataMissingError, match="1wmx7AM6XWHjHIvpErmIouQgbQoMxAymG"):
        sid_study.official_model(P)  # the Google Drive id of the data shard, from the manifest
    P["official_weights_path"] = str(tmp_path / "model.ckpt")
    with pytest.raises(FileNotFoundError, match="model.ckpt"):
        sid_study.official_model(P)
