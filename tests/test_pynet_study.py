"""PyNET study: the Zurich RAW-to-RGB format (packing, scaling, layout, the synthetic writer), the
naive rendering, the parameters, the level plan, shared checkpoints and level-wise training. PyNET's
metrics and losses are tested in ``test_metrics_losses.py``."""
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from reprolib import data, metrics, raw, study, synth, train
from reprolib import pynet_study as ps
from reprolib.data import ZurichRawToRGB, pack_zurich, read_zurich_raw


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def zurich(tmp_path_factory):
    root = tmp_path_factory.mktemp("zurich")
    return synth.write_zurich_dataset(root, seed=3, n_train=4, n_test=1, train_size=64, test_size=64)


# ------------------------------------------------------------------------------ format

def _official_pack(mosaic):
    """The official ``extract_bayer_channels``: slices ``[1::2,1::2], [0::2,1::2], [0::2,0::2], [1::2,0::2]``
    (B, Gb, R, Gr of the P20's R G / G B tile), float32 / 1020 — as this library packed before it used raw.pack."""
    planes = [mosaic[..., dy::2, dx::2] for dy, dx in ((1, 1), (0, 1), (0, 0), (1, 0))]
    return np.stack(planes, axis=-3).astype(np.float32) / np.float32(4 * 255)


def test_pack_zurich_uses_the_official_slice_order_and_scale():
    mosaic = np.arange(8 * 6, dtype=np.uint16).reshape(8, 6) * 20
    packed = pack_zurich(mosaic)
    assert packed.shape == (4, 4, 3) and packed.dtype == np.float32
    expected = [mosaic[1::2, 1::2], mosaic[0::2, 1::2], mosaic[0::2, 0::2], mosaic[1::2, 0::2]]
    for channel, plane in zip(packed, expected):
        np.testing.assert_array_equal(channel, plane.astype(np.float32) / 1020)
    assert pack_zurich(np.full((2, 2), 1023, np.uint16)).max() > 1.0  # a 10-bit white is not clipped


@pytest.mark.parametrize("shape", [(8, 6), (3, 16, 12), (2, 2, 64, 64)])
def test_pack_zurich_is_raw_pack_over_1020_bit_for_bit(shape):
    rng = np.random.default_rng(sum(shape))
    mosaic = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    packed = pack_zurich(mosaic)
    assert packed.dtype == np.float32 and packed.shape == (*shape[:-2], 4, shape[-2] // 2, shape[-1] // 2)
    bits = packed.view(np.uint32)
    np.testing.assert_array_equal(bits, _official_pack(mosaic).view(np.uint32))
    # numpy: raw.pack keeps uint16, and uint16 / 1020 would be float64: the float32 cast comes first
    assert (raw.pack(mosaic, "RGGB", "BGRG") / 1020).dtype == np.float64
    np.testing.assert_array_equal(bits, (raw.pack(mosaic, "RGGB", "BGRG").astype(np.float32) / 1020).view(np.uint32))
    # torch: raw.pack(m, "RGGB", "BGRG") / 1020 as it stands is float32 and the same bits
    for dtype in (torch.uint16, torch.int32, torch.int64):
        m = torch.from_numpy(mosaic.astype(np.int64)).to(dtype)
        out = pack_zurich(m)
        assert out.dtype == torch.float32
        np.testing.assert_array_equal(out.numpy().view(np.uint32), bits)
        np.testing.assert_array_equal((raw.pack(m, "RGGB", "BGRG") / 1020).numpy().view(np.uint32), bits)


def test_pack_zurich_rejects_odd_sides():
    with pytest.raises(ValueError, match="even"):
        pack_zurich(np.zeros((5, 4), np.uint16))


def test_writer_layout_and_formats(zurich):
    for split, n in (("train", 4), ("test", 1)):
        raws = sorted(p.name for p in (zurich / split / "huawei_raw").iterdir())
        jpgs = sorted(p.name for p in (zurich / split / "canon").iterdir())
        assert raws == [f"{i}.png" for i in range(n)] and jpgs == [f"{i}.jpg" for i in range(n)]
    with Image.open(zurich / "train" / "huawei_raw" / "0.png") as im:
        assert im.mode == "I;16" and im.size == (64, 64)
    with Image.open(zurich / "train" / "canon" / "0.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 64)
    mosaic = read_zurich_raw(zurich / "train" / "huawei_raw" / "0.png")
    sensor = synth.preset("HUAWEI EML-L09")
    assert mosaic.dtype == np.uint16 and mosaic.max() <= sensor.white_level
    # the black level is in the data (no subtraction): dark pixels sit around 64, not 0
    assert np.percentile(mosaic, 1) > sensor.black_level * 0.7


def test_writer_is_deterministic(zurich, tmp_path):
    again = synth.write_zurich_dataset(tmp_path / "a", seed=3, n_train=4, n_test=1, train_size=64, test_size=64)
    other = synth.write_zurich_dataset(tmp_path / "b", seed=4, n_train=1, n_test=0, train_size=64)
    for rel in ("train/huawei_raw/3.png", "train/canon/3.jpg", "test/canon/0.jpg"):
        assert _sha(zurich / rel) == _sha(again / rel)
    assert _sha(zurich / "train/huawei_raw/0.png") != _sha(other / "train/huawei_raw/0.png")


def test_target_is_a_different_rendering_than_the_scene():
    x = np.linspace(0, 1, 101)
    scene = np.stack([x, x, x], -1)[None]
    out = synth.dslr_rendering(scene)[0]
    assert out.min() >= 0 and out.max() <= 1
    assert np.all(np.diff(out[:, 1]) >= 0)                 # the tone curve is monotone
    assert np.abs(out - scene[0]).max() > 0.05             # and not the identity
    assert np.all(out[20:90, 0] >= out[20:90, 2])         # warm white balance


def test_dataset_items_and_levels(zurich):
    train_set = ZurichRawToRGB(zurich, "train")
    assert len(train_set) == 4
    x, y = train_set[1]
    assert x.shape == (4, 32, 32) and y.shape == (3, 64, 64) and x.dtype == y.dtype == torch.float32
    assert 0 <= y.min() and y.max() <= 1
    train_set.set_level(2)
    assert train_set[1][1].shape == (3, 16, 16)
    with Image.open(zurich / "train" / "canon" / "1.jpg") as im:
        ref = np.asarray(im.convert("RGB").resize((16, 16), Image.BILINEAR)).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(train_set[1][1].numpy(), ref, atol=1e-6)
    xb, yb = train_set.batch([0, 3])
    assert xb.shape == (2, 4, 32, 32) and yb.shape == (2, 3, 16, 16)
    assert train_set.raw(0).shape == (4, 32, 32)


def test_dataset_layout_errors(zurich, tmp_path):
    with pytest.raises(data.DataMissingError, match="val"):
        ZurichRawToRGB(zurich, "val")
    with pytest.raises(ValueError, match="level"):
        ZurichRawToRGB(zurich, "test", level=6)
    (tmp_path / "test" / "huawei_raw").mkdir(parents=True)
    (tmp_path / "test" / "canon").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "test" / "huawei_raw" / "1.png")
    with pytest.raises(data.DataMissingError, match="0 … N−1"):
        ZurichRawToRGB(tmp_path, "test")
    with pytest.raises(IndexError):
        ZurichRawToRGB(zurich, "test")[5]


# ------------------------------------------------------------------------------ baseline

def test_naive_rendering_gray_world_and_size():
    tile = torch.tensor([300.0, 500.0, 200.0, 500.0]).view(1, 4, 1, 1) / 1020  # B, G, R, G
    packed = tile.expand(1, 4, 8, 8) * torch.linspace(0.5, 1, 8).view(1, 1, 1, 8)
    out = ps.naive_rendering(packed)
    assert out.shape == (1, 3, 16, 16) and 0 <= out.min() and out.max() <= 1
    means = (out ** 2.2).mean(dim=(0, 2, 3))  # gray world acts on linear values, before the gamma
    assert torch.allclose(means, means[1].expand(3), rtol=1e-3)  # a neutral result


def test_parameter_counts_of_the_widths():
    from reprolib.models.pynet import PyNET

    with torch.device("meta"):
        counts = [sum(p.numel() for p in PyNET(width=w).parameters()) for w in (1.0, 0.125, 0.25)]
    assert counts == [47_554_738, 750_750, 2_985_370]


def test_claim_verdict_follows_the_sign_of_the_gain():
    from reprolib import report

    assert report.claim("pynet/beats-naive", 1.2, "dB")["verdict"] == "holds"
    assert report.claim("pynet/beats-naive", -10.7569, "dB")["verdict"] == "does not hold"


# ------------------------------------------------------------------------------ parameters, plan, training

def test_parameters_full_profile_is_the_official_setting():
    P = study.resolve_parameters("pynet", {"profile": "full"}, ps.PARAMETERS)
    assert P["width"] == 1.0 and P["lr"] == 5e-5 and P["content_loss"] == "vgg19-imagenet"
    plan = ps.level_plan(P, 46839)
    assert [plan[lv]["epochs"] for lv in (5, 4, 3, 2, 1, 0)] == [8, 8, 17, 17, 25, 50]
    assert [plan[lv]["batch"] for lv in (5, 4, 3, 2, 1, 0)] == [50, 50, 50, 50, 16, 12]
    assert plan[0]["steps"] == 50 * (46839 // 12)
    with pytest.raises(ValueError, match="unknown parameter"):
        study.resolve_parameters("pynet", {"profile": "mini", "levels": 3}, ps.PARAMETERS)
    with pytest.raises(ValueError, match="six positive"):
        study.resolve_parameters("pynet", {"profile": "mini", "steps": [1, 2]}, ps.PARAMETERS)
    with pytest.raises(ValueError, match="exceeds"):
        ps.level_plan({**P, "batch_size": [5] * 6}, 4)


def test_checkpoint_key_is_what_changes_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    P = study.resolve_parameters("pynet", {"profile": "smoke"}, ps.PARAMETERS)
    plan = ps.level_plan(P, 16)
    path, key = ps.level_checkpoint(P, plan, 3, "fp")
    assert path.parent == tmp_path / "pynet_shared" and path.name.startswith("level3-")
    # device, data_root, the grid and the ablation list do not change the chain's weights
    for change in ({"device": "meta"}, {"data_root": "/elsewhere"}, {"grid": 5}, {"ablation": []}):
        assert ps.level_checkpoint({**P, **change}, plan, 3, "fp") == (path, key)
    # the data, width, content term, a coarser level's steps and the per-level test patches do
    assert ps.level_checkpoint(P, plan, 3, "other data")[1] != key
    for change in ({"width": 0.25}, {"content_loss": "vgg19-random"}, {"eval_patches": 3}, {"lr": 1e-3}):
        assert ps.level_checkpoint({**P, **change}, plan, 3, "fp")[1] != key
    assert ps.level_checkpoint(P, {**plan, 5: {**plan[5], "steps": 3}}, 3, "fp")[1] != key
    assert ps.level_checkpoint(P, {**plan, 2: {**plan[2], "steps": 3}}, 3, "fp")[1] == key  # finer: no
    assert ps.level_checkpoint(P, plan, 1, "fp", "vgg19-random")[1] != ps.level_checkpoint(P, plan, 1, "fp")[1]


def test_level_wise_training_runs_and_resumes(zurich, tmp_path, monkeypatch):
    from reprolib.models.pynet import PyNET

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    P = study.resolve_parameters("pynet", {"profile": "smoke", "steps": [1] * 6, "batch_size": [2] * 6},
                                 ps.PARAMETERS)
    train_set, test_set = ZurichRawToRGB(zurich, "train"), ZurichRawToRGB(zurich, "test")
    plan = ps.level_plan(P, len(train_set))
    torch.manual_seed(0)
    model = PyNET(level=5, width=P["width"])
    histories = ps.train_levels(model, train_set, test_set, P, None, "fp")
    assert list(histories) == [5, 4, 3, 2, 1, 0] and model.level == 0
    assert all(h.last("test_psnr") is not None for h in histories.values())
    paths = {lv: ps.level_checkpoint(P, plan, lv, "fp")[0] for lv in histories}
    assert all(p.is_file() for p in paths.values()) and len(set(paths.values())) == 6
    # each level starts from the previous level's final weights
    w5 = train.load_checkpoint(paths[5])["model"]
    w4 = train.load_checkpoint(paths[4])["model"]
    # level 5's output conv is not in level 4's graph: carried over unchanged; its features are,
    # so level 4 trains them further
    assert torch.equal(w4["conv_l5_out.conv2d.weight"], w5["conv_l5_out.conv2d.weight"])
    assert not torch.equal(w4["conv_l5_d1.conv_3a.conv2d.weight"], w5["conv_l5_d1.conv_3a.conv2d.weight"])
    # a finished chain is reloaded, not retrained — also by a run that differs only in its grid
    again = PyNET(level=5, width=P["width"])
    histories2 = ps.train_levels(again, train_set, test_set, {**P, "grid": 1}, None, "fp")
    assert all(h.resumed_from == 1 for h in histories2.values())
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    results = {"ours": ps.evaluate(model, test_set), "naive": ps.evaluate(ps.naive_rendering, test_set)}
    summary = ps.summarise(results)
    assert set(summary.index) == {"ours", "naive"} and "ms_ssim" in summary and summary["patches"].tolist() == [1, 1]
    assert model.level == 0  # evaluate restores the level
    naive = ps.naive_rendering(test_set.raw(0)[None])
    assert results["naive"]["psnr"][0] == float(metrics.psnr_official(naive, test_set.target(0, 0)[None]))
