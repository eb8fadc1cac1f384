"""PyNET study: the Zurich RAW-to-RGB format (packing, scaling, layout, the synthetic writer), the
naive rendering, the official MS-SSIM and losses, the level plan and level-wise training."""
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from reprolib import data, raw, study, synth
from reprolib import pynet_study as ps


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def zurich(tmp_path_factory):
    root = tmp_path_factory.mktemp("zurich")
    return synth.write_zurich_dataset(root, seed=3, n_train=4, n_test=1, train_size=64, test_size=64)


# ------------------------------------------------------------------------------ format

def test_pack_zurich_uses_the_official_slice_order_and_scale():
    mosaic = np.arange(8 * 6, dtype=np.uint16).reshape(8, 6) * 20
    packed = ps.pack_zurich(mosaic)
    assert packed.shape == (4, 4, 3) and packed.dtype == np.float32
    expected = [mosaic[1::2, 1::2], mosaic[0::2, 1::2], mosaic[0::2, 0::2], mosaic[1::2, 0::2]]
    for channel, plane in zip(packed, expected):
        np.testing.assert_array_equal(channel, plane.astype(np.float32) / 1020)
    # the same as the generic packer in the order B, G(red row), R, G(blue row) of an RGGB tile
    np.testing.assert_array_equal(packed * 1020, raw.pack(mosaic, "RGGB", "BGRG").astype(np.float32))
    # torch gives the same numbers; a 10-bit white is not clipped
    np.testing.assert_array_equal(ps.pack_zurich(torch.from_numpy(mosaic.astype(np.int32))).numpy(), packed)
    assert ps.pack_zurich(np.full((2, 2), 1023, np.uint16)).max() > 1.0


def test_pack_zurich_rejects_odd_sides():
    with pytest.raises(ValueError, match="even"):
        ps.pack_zurich(np.zeros((5, 4), np.uint16))


def test_writer_layout_and_formats(zurich):
    for split, n in (("train", 4), ("test", 1)):
        raws = sorted(p.name for p in (zurich / split / "huawei_raw").iterdir())
        jpgs = sorted(p.name for p in (zurich / split / "canon").iterdir())
        assert raws == [f"{i}.png" for i in range(n)] and jpgs == [f"{i}.jpg" for i in range(n)]
    with Image.open(zurich / "train" / "huawei_raw" / "0.png") as im:
        assert im.mode == "I;16" and im.size == (64, 64)
    with Image.open(zurich / "train" / "canon" / "0.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 64)
    mosaic = ps.read_zurich_raw(zurich / "train" / "huawei_raw" / "0.png")
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
    train_set = ps.ZurichRawToRGB(zurich, "train")
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
    assert ps.check_sizes(train_set) == 32


def test_dataset_layout_errors(zurich, tmp_path):
    with pytest.raises(ValueError, match="split"):
        ps.ZurichRawToRGB(zurich, "val")
    (tmp_path / "test" / "huawei_raw").mkdir(parents=True)
    (tmp_path / "test" / "canon").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "test" / "huawei_raw" / "1.png")
    with pytest.raises(data.DataMissingError, match="0 … N−1"):
        ps.ZurichRawToRGB(tmp_path, "test")
    with pytest.raises(IndexError):
        ps.ZurichRawToRGB(zurich, "test")[5]


# ------------------------------------------------------------------------------ baseline, metrics, losses

def test_naive_rendering_gray_world_and_size():
    tile = torch.tensor([300.0, 500.0, 200.0, 500.0]).view(1, 4, 1, 1) / 1020  # B, G, R, G
    packed = tile.expand(1, 4, 8, 8) * torch.linspace(0.5, 1, 8).view(1, 1, 1, 8)
    out = ps.naive_rendering(packed)
    assert out.shape == (1, 3, 16, 16) and 0 <= out.min() and out.max() <= 1
    means = (out ** 2.2).mean(dim=(0, 2, 3))  # gray world acts on linear values, before the gamma
    assert torch.allclose(means, means[1].expand(3), rtol=1e-3)  # a neutral result


def test_ms_ssim_official_properties():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 192, 192, generator=g)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    assert torch.allclose(ps.ms_ssim_official(a, a), torch.ones(2), atol=1e-5)
    ours = ps.ms_ssim_official(a, b)
    assert ours.shape == (2,) and (ours < 0.99).all()
    from reprolib import metrics
    assert torch.allclose(ours, metrics.ms_ssim(b, a), atol=0.03)  # same measure, other conventions
    # whole-batch reduction equals the per-image value for one image; small patches still work
    assert torch.allclose(ps.ms_ssim_official(a[:1], b[:1], reduction="batch"), ours[0])
    small = ps.ms_ssim_official(a[:, :, :64, :64], b[:, :, :64, :64], normalize="relu")
    assert torch.isfinite(small).all()


def test_pynet_loss_per_level():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    mse = torch.nn.functional.mse_loss(pred, target)
    assert torch.allclose(ps.pynet_loss(5, pred, target), mse)
    assert torch.allclose(ps.pynet_loss(4, pred, target), mse)
    assert torch.allclose(ps.pynet_loss(2, pred, target), 10 * mse)
    ms = ps.ms_ssim_official(pred, target, normalize="relu", reduction="batch")
    assert torch.allclose(ps.pynet_loss(0, pred, target), mse + 0.4 * (1 - ms))
    net = ps.content_network("vgg19-random", seed=0)
    with_content = ps.pynet_loss(1, pred, target, net)
    assert with_content > 10 * mse
    # relu5_4 is empty below 16 px: the term is left out rather than failing
    assert torch.allclose(ps.pynet_loss(3, pred[..., :8, :8], target[..., :8, :8], net),
                          10 * torch.nn.functional.mse_loss(pred[..., :8, :8], target[..., :8, :8]))


def test_content_network_kinds(tmp_path):
    assert ps.content_network("none") is None
    with pytest.raises(ValueError, match="content loss"):
        ps.content_network("vgg16")
    with pytest.raises(ValueError, match="weights"):
        ps.content_network("vgg19-imagenet")
    a, b = ps.content_network("vgg19-random", seed=5), ps.content_network("vgg19-random", seed=5)
    x = torch.rand(1, 3, 32, 32)
    fa = a(x)
    assert fa.shape == (1, 512, 2, 2) and torch.equal(fa, b(x))
    assert not any(p.requires_grad for p in a.parameters())
    # an ImageNet-format state dict (torchvision keys, classifier included) loads into the features
    state = {f"features.{k}": v * 0.5 for k, v in a.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "vgg19.pth")
    c = ps.content_network("vgg19-imagenet", tmp_path / "vgg19.pth")
    assert torch.equal(c.features[0].weight, a.features[0].weight * 0.5)


def test_parameter_counts():
    assert ps.parameter_count(1.0) == 47_554_738
    assert ps.parameter_count(0.125) == 750_750
    assert ps.parameter_count(0.25) == 2_985_370


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


def test_batches_are_epoch_shuffles():
    seen = np.concatenate([ps._batch_indices(10, 3, 0, 5, s) for s in range(3)])
    assert len(set(seen.tolist())) == 9                      # one epoch: no repeats, last partial dropped
    np.testing.assert_array_equal(ps._batch_indices(10, 3, 0, 5, 4), ps._batch_indices(10, 3, 0, 5, 4))
    assert not np.array_equal(ps._batch_indices(10, 3, 0, 5, 0), ps._batch_indices(10, 3, 0, 4, 0))


def test_level_wise_training_runs_and_resumes(zurich, tmp_path, monkeypatch):
    from reprolib.models.pynet import PyNET

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    P = study.resolve_parameters("pynet", {"profile": "smoke", "steps": [1] * 6, "batch_size": [2] * 6},
                                 ps.PARAMETERS)
    run = study.Run("pynet", P)
    train_set, test_set = ps.ZurichRawToRGB(zurich, "train"), ps.ZurichRawToRGB(zurich, "test")
    torch.manual_seed(0)
    model = PyNET(level=5, width=P["width"])
    histories = ps.train_levels(model, train_set, test_set, P, run, None, "fp")
    assert list(histories) == [5, 4, 3, 2, 1, 0] and model.level == 0
    assert all(h.last("test_psnr") is not None for h in histories.values())
    assert all(run.path(f"pynet_level_{lv}.pt").is_file() for lv in histories)
    # each level starts from the previous level's final weights
    w5 = train.load_checkpoint(run.path("pynet_level_5.pt"))["model"]
    w4 = train.load_checkpoint(run.path("pynet_level_4.pt"))["model"]
    # level 5's output conv is not in level 4's graph: carried over unchanged; its features are,
    # so level 4 trains them further
    assert torch.equal(w4["conv_l5_out.conv2d.weight"], w5["conv_l5_out.conv2d.weight"])
    assert not torch.equal(w4["conv_l5_d1.conv_3a.conv2d.weight"], w5["conv_l5_d1.conv_3a.conv2d.weight"])
    # a finished chain is reloaded, not retrained
    again = PyNET(level=5, width=P["width"])
    histories2 = ps.train_levels(again, train_set, test_set, P, run, None, "fp")
    assert all(h.resumed_from == 1 for h in histories2.values())
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    summary = ps.summarise({"ours": ps.evaluate(model, test_set), "naive": ps.evaluate_naive(test_set)})
    assert set(summary.index) == {"ours", "naive"} and "ms_ssim" in summary


from reprolib import train  # noqa: E402  (used above; imported last to keep the header short)
