"""GenISP model: parameter count, shapes, the 256×256 trunk input, WB/CC behaviour, gray-world loss."""
import math

import pytest
import torch

from reprolib.models.genisp import TRUNK_SIZE, GenISP, ImageToParameter, gray_world_loss

# Our reading of the paper's Fig. 3 (one linear layer per MLP, InstanceNorm without affine
# parameters); see the GenISP and ImageToParameter docstrings.
DOCUMENTED_PARAMETERS = 115_855
PAPER_PARAMETERS = 116_000  # "about 116k"
SHALLOW_CONVNET_PARAMETERS = 448 + 9_280 + 195


def n_parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_count():
    model = GenISP()
    assert n_parameters(model) == DOCUMENTED_PARAMETERS
    assert abs(n_parameters(model) - PAPER_PARAMETERS) <= 0.1 * PAPER_PARAMETERS


def test_parameter_count_of_the_parts_and_ablations():
    wb, cc = ImageToParameter(3), ImageToParameter(9)
    assert n_parameters(wb) == 52_192 + 128 * 3 + 3
    assert n_parameters(cc) == 52_192 + 128 * 9 + 9
    assert n_parameters(GenISP(use_wb=False, use_cc=False)) == SHALLOW_CONVNET_PARAMETERS
    assert n_parameters(GenISP(use_wb=False)) == SHALLOW_CONVNET_PARAMETERS + n_parameters(cc)
    assert n_parameters(GenISP(use_cc=False)) == SHALLOW_CONVNET_PARAMETERS + n_parameters(wb)


def test_forward_preserves_size():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 200, 300) * 0.05
    y = GenISP()(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", [(200, 300), (64, 48), (256, 256)])
def test_trunks_see_256x256(size):
    model = GenISP()
    seen = []
    for trunk in (model.conv_wb, model.conv_cc):
        trunk.features[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    with torch.no_grad():
        model(torch.rand(1, 3, *size))
    assert seen == [(1, 3, TRUNK_SIZE, TRUNK_SIZE)] * 2


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = GenISP()
    model(torch.rand(2, 3, 64, 96) * 0.1).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_zero_regression_is_exactly_the_identity():
    # exp(0) = 1 gains and I + 0 colour matrix: with the last layers zeroed, colour processing
    # passes the image through unchanged.
    model = GenISP()
    for trunk in (model.conv_wb, model.conv_cc):
        torch.nn.init.zeros_(trunk.mlp.weight)
    x = torch.rand(2, 3, 40, 60)
    with torch.no_grad():
        assert torch.allclose(model.color_process(x), x, atol=1e-7)


def test_initialisation_is_near_identity():
    # Documented bound: |regressed value| < 0.15 at initialisation for inputs in [0, 1].
    bound = 0.15
    for seed in range(3):
        torch.manual_seed(seed)
        model = GenISP()
        x = torch.rand(2, 3, 64, 96)
        with torch.no_grad():
            gains = model.white_balance_gains(x)
            matrix = model.color_correction_matrix(x)
        assert gains.shape == (2, 3) and matrix.shape == (2, 3, 3)
        assert (gains.log().abs() < bound).all()
        assert ((matrix - torch.eye(3)).abs() < bound).all()


def _set_regression(trunk, values):
    torch.nn.init.zeros_(trunk.mlp.weight)
    with torch.no_grad():
        trunk.mlp.bias.copy_(torch.as_tensor(values, dtype=torch.float32))


def test_white_balance_gains_scale_each_channel():
    model = GenISP(use_cc=False)
    gains = torch.tensor([2.0, 1.0, 0.5])
    _set_regression(model.conv_wb, gains.log())
    x = torch.rand(2, 3, 20, 30)
    with torch.no_grad():
        assert torch.allclose(model.color_process(x), x * gains[None, :, None, None], atol=1e-6)


def test_color_matrix_rows_are_output_channels_and_cc_sees_the_white_balanced_image():
    model = GenISP()
    gains = torch.tensor([2.0, 1.0, 0.5])
    _set_regression(model.conv_wb, gains.log())
    # output R ← input G, G ← B, B ← R (not symmetric, so a transposed matrix would show)
    rotate = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])
    _set_regression(model.conv_cc, (rotate - torch.eye(3)).flatten())
    seen = []
    model.conv_cc.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.rand(1, 3, 20, 30)
    balanced = x * gains[None, :, None, None]
    with torch.no_grad():
        y = model.color_process(x)
    assert torch.allclose(seen[0], balanced, atol=1e-6)
    assert torch.allclose(y, balanced[:, [1, 2, 0]], atol=1e-6)


def test_ablation_switches_remove_the_stages():
    model = GenISP(use_wb=False, use_cc=False)
    assert model.conv_wb is None and model.conv_cc is None
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(model.color_process(x), x)


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError):
        GenISP()(torch.rand(1, 4, 32, 32))


def test_deterministic_with_seed():
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs.append(GenISP()(x))
    assert torch.equal(*outputs)


def test_gray_world_loss():
    plane = torch.rand(2, 1, 8, 8)
    assert gray_world_loss(plane.expand(2, 3, 8, 8)).item() == pytest.approx(0.0, abs=1e-7)

    # constant images with channel means (0.2, 0.5, 0.9) and (0.4, 0.4, 0.1)
    means = torch.tensor([[0.2, 0.5, 0.9], [0.4, 0.4, 0.1]])
    image = means[:, :, None, None].expand(2, 3, 4, 5)
    expected = ((0.3 + 0.7 + 0.4) + (0.0 + 0.3 + 0.3)) / 2
    loss = gray_world_loss(image)
    assert loss.ndim == 0 and loss.item() == pytest.approx(expected, rel=1e-6)
    assert not math.isclose(loss.item(), 0.0)

    with pytest.raises(ValueError):
        gray_world_loss(torch.rand(3, 8, 8))
