"""PyNET model: parameter counts, output sizes per level, level switching, gradients."""
import pytest
import torch

from reprolib.models.pynet import LEVEL_PARTS, LEVELS, MIN_INPUT_SIZE, PyNET

# Exact architectural facts of the official aiff22/PyNET-PyTorch model.py with
# instance_norm=True, instance_norm_level_1=True (what its train/test scripts construct).
OFFICIAL_PARAMETERS = 47_554_738
OFFICIAL_PARTS = {
    "encoder": 1_174_336,
    "level_5": 20_080_643,
    "level_4": 7_682_563,
    "level_3": 7_579_907,
    "level_2": 6_746_243,
    "level_1": 4_290_611,
    "level_0": 435,
}


def n_parameters(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def full_model():
    torch.manual_seed(0)
    return PyNET().eval()


def test_parameter_count_matches_official(full_model):
    assert n_parameters(full_model) == OFFICIAL_PARAMETERS


def test_parameter_counts_per_part(full_model):
    counts = full_model.parameter_counts()
    assert counts == OFFICIAL_PARTS
    assert sum(counts.values()) == OFFICIAL_PARAMETERS


def test_instance_norm_level_1_adds_affine_parameters():
    # The affine InstanceNorm has 2·32 parameters per level-1 ConvLayer; the normalised level-1
    # blocks d5, d6, d7, d8, d9, d10, d12 hold 3, 4, 4, 4, 4, 3, 2 branches of 2 layers each.
    layers = 2 * (3 + 4 + 4 + 4 + 4 + 3 + 2)
    without = n_parameters(PyNET(instance_norm_level_1=False))
    assert OFFICIAL_PARAMETERS - without == layers * 2 * 32


def test_official_checkpoint_key_names(full_model):
    keys = set(full_model.state_dict())
    for key in ("conv_l1_d1.conv_3a.conv2d.weight", "conv_l2_d1.conv_3a.instance.weight",
                "conv_l1_d6.conv_9b.instance.bias", "conv_t0.conv2d.bias",
                "conv_l0_d1.conv2d.weight", "conv_l5_out.conv2d.weight"):
        assert key in keys
    # the first encoder block and the first/last level-1 blocks are never normalised
    assert not any(k.startswith(("conv_l1_d1.", "conv_l1_d3.", "conv_l1_d14.")) and ".instance." in k
                   for k in keys)
    assert not any(".instance." in k for k in PyNET(instance_norm_level_1=False).state_dict()
                   if k.startswith("conv_l1_"))


@pytest.mark.parametrize("width, expected", [(0.25, 2_985_370), (0.125, 750_750)])
def test_width_scales_channels(width, expected):
    model = PyNET(width=width)
    assert n_parameters(model) == expected
    assert model.conv_l5_d1.conv_3a.conv2d.out_channels == round(512 * width)
    assert model.conv_t0.conv2d.out_channels == round(16 * width)


def test_level_does_not_change_the_parameters():
    coarse, fine = PyNET(level=5, width=0.125), PyNET(level=0, width=0.125)
    assert coarse.state_dict().keys() == fine.state_dict().keys()
    assert n_parameters(coarse) == n_parameters(fine)


def test_output_size_and_range_at_every_level():
    torch.manual_seed(0)
    model = PyNET(width=0.125).eval()
    x = torch.rand(1, 4, MIN_INPUT_SIZE, 48)
    expected = {5: (2, 3), 4: (4, 6), 3: (8, 12), 2: (16, 24), 1: (32, 48), 0: (64, 96)}
    with torch.no_grad():
        outputs = model.forward_all(x)
        assert sorted(outputs, reverse=True) == list(LEVELS)
        for level in LEVELS:
            model.set_level(level)
            y = model(x)
            assert y.shape == (1, 3) + expected[level]
            assert y.dtype == torch.float32
            assert 0 <= y.min() and y.max() <= 1
            assert torch.allclose(y, outputs[level], atol=1e-6)
        model.set_level(3)
        assert sorted(model.forward_all(x), reverse=True) == [5, 4, 3]


def test_full_width_forward_at_smallest_size(full_model):
    with torch.no_grad():
        y = full_model(torch.rand(1, 4, MIN_INPUT_SIZE, MIN_INPUT_SIZE))
    assert y.shape == (1, 3, 2 * MIN_INPUT_SIZE, 2 * MIN_INPUT_SIZE)


@pytest.mark.parametrize("shape", [(1, 4, 16, 16), (1, 4, 40, 48), (1, 4, 32, 33),
                                   (1, 3, 32, 32), (4, 32, 32)])
def test_rejects_unusable_input(shape):
    with pytest.raises(ValueError):
        PyNET(width=0.125)(torch.rand(shape))


def test_backward_reaches_exactly_the_parts_of_the_level():
    torch.manual_seed(0)
    model = PyNET(level=5, width=0.125)
    x = torch.rand(1, 4, 32, 32)
    model(x).mean().backward()
    # level 5 also computes the upsamplings it hands to level 4, but its output does not use them
    used = set(LEVEL_PARTS["encoder"] + LEVEL_PARTS["level_5"]) - {"conv_t4a", "conv_t4b"}
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name.split(".")[0] in used), name

    model.zero_grad(set_to_none=True)
    model.set_level(0)
    model(x).mean().backward()
    # at level 0 everything is on the path except the coarser levels' output heads
    heads = {f"conv_l{level}_out" for level in (5, 4, 3, 2, 1)}
    for name, p in model.named_parameters():
        if name.split(".")[0] in heads:
            assert p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("bad", [6, -1, 2.0, True, "0", None])
def test_level_validation(bad):
    model = PyNET(width=0.125)
    with pytest.raises(ValueError):
        model.set_level(bad)
    assert model.level == 0
    with pytest.raises(ValueError):
        PyNET(level=bad, width=0.125)


@pytest.mark.parametrize("bad", [0, -0.5])
def test_width_validation(bad):
    with pytest.raises(ValueError):
        PyNET(width=bad)


def test_deterministic_with_seed():
    x = torch.rand(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs.append(PyNET(level=1, width=0.125)(x))
    assert torch.equal(*outputs)
