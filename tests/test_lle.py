"""Tests of the Lamba & Mitra network: official weights, official output, fused copy, variants."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from reprolib.models.lle import DENSE_LAYERS, LLENet, ResidualDenseBlock, rename_official_keys

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
WEIGHTS = FIXTURES / "lle" / "weights"
REFERENCE = Path(__file__).resolve().parent / "data" / "lle_official_reference.json"


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def official_model():
    if not WEIGHTS.exists():
        pytest.skip(f"official weights fixture absent: {WEIGHTS}")
    return LLENet.from_official(WEIGHTS)


def test_parameter_count_is_the_official_one():
    assert n_params(LLENet()) == 784_768


@pytest.mark.parametrize("block", ["rdb_star", "rdb"])
def test_parameter_counts_of_the_block_variants(block):
    # activation placement adds no parameters; each extra 5-layer block adds 202,976
    counts = {n: n_params(LLENet(block, n)) for n in (2, 3, 4)}
    assert counts == {2: 581_792, 3: 784_768, 4: 987_744}
    for n in (2, 3, 4):
        model = LLENet(block, n)
        assert len(model.rdbs) == n
        assert [len(rdb.dense_layers) for rdb in model.rdbs] == list(DENSE_LAYERS[n])
        assert model.rdball.parametrizations.weight.original1.shape == (64, 64 * n, 1, 1)


def test_activation_placement_of_the_blocks():
    star = ResidualDenseBlock(64, 5, block="rdb_star")
    assert [layer.activation for layer in star.dense_layers] == ["none", "before", "before", "before", "none"]
    canonical = ResidualDenseBlock(64, 4, block="rdb")
    assert [layer.activation for layer in canonical.dense_layers] == ["after"] * 4
    # same weights, different placement -> different function
    torch.manual_seed(0)
    a, b = LLENet("rdb_star"), LLENet("rdb")
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 1, 64, 64) * 0.3
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() > 1e-4


def test_official_weights_load_strictly(official_model):
    raw = torch.load(WEIGHTS, map_location="cpu", weights_only=True)["model"]
    assert len(raw) == 63
    assert sum(v.numel() for v in raw.values()) == 784_768
    renamed = rename_official_keys(raw)
    assert len(renamed) == len(raw)
    # every official tensor landed in the model: weight_v -> original1, weight_g -> original0
    state = official_model.state_dict()
    for key, value in renamed.items():
        target = key.replace("weight_g", "parametrizations.weight.original0").replace(
            "weight_v", "parametrizations.weight.original1")
        torch.testing.assert_close(state[target], value, rtol=0, atol=0)
    assert not official_model.training


def reference_input(recipe):
    assert recipe["generator"] == "numpy.random.default_rng" and recipe["distribution"] == "uniform"
    rng = np.random.default_rng(recipe["seed"])
    x = rng.uniform(recipe["low"], recipe["high"], tuple(recipe["shape"])) * recipe["amplification"]
    return torch.from_numpy(x.astype(np.float32))


@pytest.mark.parametrize("fused", [False, True])
def test_reproduces_the_official_output(official_model, fused):
    reference = json.loads(REFERENCE.read_text())
    expected = reference["output"]
    model = official_model.fused() if fused else official_model
    with torch.no_grad():
        rgb = model(reference_input(reference["input"])).double()
    assert list(rgb.shape) == expected["shape"]
    tol = 1e-4
    assert rgb.mean().item() == pytest.approx(expected["mean"], abs=tol)
    assert rgb.std().item() == pytest.approx(expected["std"], abs=tol)
    np.testing.assert_allclose(rgb.mean(dim=(0, 2, 3)).numpy(), expected["channel_means"], atol=tol)
    blocks = F.adaptive_avg_pool2d(rgb, 4)[0].numpy()
    np.testing.assert_allclose(blocks, expected["block_means_4x4"], atol=tol)
    for pixel in expected["pixels"]:
        np.testing.assert_allclose(rgb[0, :, pixel["row"], pixel["col"]].numpy(), pixel["rgb"], atol=tol)


def test_fused_copy_is_equivalent_and_leaves_the_original_intact():
    torch.manual_seed(0)
    model = LLENet().eval()
    x = torch.rand(2, 1, 64, 96) * 0.5
    with torch.no_grad():
        before = model(x)
        fused = model.fused()
        after_fusing = model(x)
        out = fused(x)
    assert (out - before).abs().max().item() < 1e-5
    torch.testing.assert_close(after_fusing, before, rtol=0, atol=0)
    assert not any(parametrize.is_parametrized(m) for m in fused.modules())
    assert all(parametrize.is_parametrized(m) for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert n_params(fused) == n_params(model) - sum(  # g and v become one weight per conv
        m.parametrizations.weight.original0.numel() for m in model.modules() if parametrize.is_parametrized(m))
    assert not fused.training


@pytest.mark.parametrize("h, w", [(64, 64), (50, 70), (33, 97), (6, 10)])
def test_any_size_is_padded_and_cropped(h, w):
    torch.manual_seed(0)
    model = LLENet().eval()
    x = torch.rand(1, 1, h, w) * 0.5
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 3, h, w)
    assert out.min() >= 0 and out.max() <= 1


def test_padding_is_bottom_right_reflection():
    torch.manual_seed(0)
    model = LLENet().eval()
    x = torch.rand(1, 1, 50, 70) * 0.5
    with torch.no_grad():
        out = model(x)
        padded = model(F.pad(x, (0, 26, 0, 14), mode="reflect"))
    torch.testing.assert_close(out, padded[..., :50, :70])


def test_output_is_clamped_inside_the_network():
    model = LLENet().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 32, 32) * 100)
    assert out.min() >= 0 and out.max() <= 1
    assert (out == 1).any()


def test_trains():
    torch.manual_seed(0)
    model = LLENet(n_blocks=2)
    x, target = torch.rand(2, 1, 64, 64) * 0.3, torch.rand(2, 3, 64, 64)
    (model(x) - target).abs().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="block"):
        LLENet(block="rrdb")
    for n in (1, 5, 3.0, True):
        with pytest.raises(ValueError, match="n_blocks"):
            LLENet(n_blocks=n)
    with pytest.raises(ValueError):
        ResidualDenseBlock(64, 1)
    with pytest.raises(ValueError, match="B×1×H×W"):
        LLENet()(torch.rand(1, 4, 32, 32))
