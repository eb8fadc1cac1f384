"""Tests of the SID U-Net: architecture against the released TensorFlow checkpoints, sizes, variants."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from reprolib.models.sid_unet import SIDUNet, official_variable_name, pad_to_multiple
from reprolib.models.tf_checkpoint import model_variables, read_bundle_index

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
CHECKPOINT_INDEX = FIXTURES / "sid" / "checkpoint_index"


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def tensorflow_shape(name: str, param: torch.Tensor) -> tuple:
    """The shape TensorFlow stores for a PyTorch parameter (HWIO kernels, H×W×out×in transposed)."""
    if param.dim() == 1:
        return tuple(param.shape)
    if name.startswith("upsamplers."):  # PyTorch ConvTranspose2d: in×out×H×W
        c_in, c_out, kh, kw = param.shape
        return (kh, kw, c_out, c_in)
    c_out, c_in, kh, kw = param.shape  # PyTorch Conv2d: out×in×H×W
    return (kh, kw, c_in, c_out)


def read_index(camera: str):
    path = CHECKPOINT_INDEX / f"{camera}_model.ckpt.index"
    if not path.exists():
        pytest.skip(f"checkpoint index fixture absent: {path}")
    compression = []
    entries = read_bundle_index(path, compression)
    return entries, compression


def test_parameter_count_is_the_official_one():
    assert n_params(SIDUNet()) == 7_760_268
    # BatchNorm adds 2 parameters per channel of each normalised conv (32+64+...+32 = 1472 channels)
    assert n_params(SIDUNet(norm="single")) == 7_760_268 + 2 * 1472
    assert n_params(SIDUNet(norm="double")) == 7_760_268 + 2 * 2 * 1472
    assert all(m.bias is None for m in SIDUNet().modules() if isinstance(m, torch.nn.ConvTranspose2d))


@pytest.mark.parametrize(
    "camera, kwargs, expected",
    [("Sony", {}, 7_760_268), ("Fuji", {"in_channels": 9, "upscale": 3}, 7_762_203)],
)
def test_parameters_map_one_to_one_onto_the_checkpoint(camera, kwargs, expected):
    entries, compression = read_index(camera)
    assert compression and all(c == 0 for c in compression)  # no snappy block: no decoder needed
    variables = model_variables(entries)
    # Besides the network, the index lists Adam's beta powers and two Adam slots per *trained*
    # variable: every g_* variable has them, the transposed-conv filters (Variable*) have none,
    # i.e. the released models never updated their upsampling filters.
    trained = [n for n in variables if n.startswith("g_")]
    assert len(trained) == len(variables) - 4
    for name in trained:
        assert f"{name}/Adam" in entries and f"{name}/Adam_1" in entries
    assert not any(n.startswith("Variable") and "/Adam" in n for n in entries)
    assert len(entries) == len(variables) + 2 * len(trained) + 2

    model = SIDUNet(**kwargs)
    mapped = {}
    for name, param in model.named_parameters():
        tf_name = official_variable_name(name)
        assert tf_name not in mapped, f"{tf_name} mapped twice"
        mapped[tf_name] = name
        entry = variables[tf_name]
        assert entry.shape == tensorflow_shape(name, param), name
        assert entry.dtype == "float32"
        assert entry.size == 4 * entry.numel  # bytes in the data shard
    assert set(mapped) == set(variables)
    assert sum(e.numel for e in variables.values()) == expected == n_params(model)


def test_official_variable_name_rejects_batchnorm():
    model = SIDUNet(norm="single")
    bn_names = [n for n, _ in model.named_parameters() if ".norm" in n]
    assert bn_names
    with pytest.raises(KeyError):
        official_variable_name(bn_names[0])


def test_reader_rejects_a_file_that_is_not_a_table(tmp_path):
    bad = tmp_path / "model.ckpt.index"
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="magic"):
        read_bundle_index(bad)


@pytest.mark.parametrize("h, w", [(32, 48), (37, 50), (16, 17), (3, 5)])
def test_output_size_for_any_input_size(h, w):
    torch.manual_seed(0)
    model = SIDUNet(width=8).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 4, h, w))
    assert out.shape == (2, 3, 2 * h, 2 * w)
    assert torch.isfinite(out).all()


def test_padding_is_bottom_right_and_cropped_back():
    torch.manual_seed(0)
    model = SIDUNet(width=8).eval()
    x = torch.rand(1, 4, 21, 40)
    with torch.no_grad():
        out = model(x)
        padded = model(F.pad(x, (0, 8, 0, 11), mode="reflect"))
    assert padded.shape == (1, 3, 64, 96)
    torch.testing.assert_close(out, padded[..., :42, :80])


def test_pad_to_multiple_reflects_and_keeps_the_cfa_phase():
    x = torch.arange(6 * 10, dtype=torch.float32).reshape(1, 1, 6, 10)
    p = pad_to_multiple(x, 8)
    assert p.shape == (1, 1, 8, 16)
    torch.testing.assert_close(p[..., :6, :10], x)
    # reflected row H + i copies row H - 2 - i: same parity, so the Bayer phase is preserved
    torch.testing.assert_close(p[0, 0, 6, :10], x[0, 0, 4])
    torch.testing.assert_close(p[0, 0, 7, :10], x[0, 0, 3])
    aligned = x[..., :4, :8]
    assert pad_to_multiple(aligned, 4) is aligned
    tiny = pad_to_multiple(torch.ones(1, 1, 2, 3), 16)  # too small to reflect: replicate
    assert tiny.shape == (1, 1, 16, 16) and torch.all(tiny == 1)


def test_output_is_not_clamped():
    model = SIDUNet(width=8).eval()
    with torch.no_grad():
        model.conv10.bias.fill_(2.0)
        out = model(torch.rand(1, 4, 16, 16))
    assert out.max() > 1.0


def test_pixel_shuffle_layout():
    # conv10 channel c·4 + dy·2 + dx lands on output pixel (2y + dy, 2x + dx) of colour c
    model = SIDUNet(width=8).eval()
    with torch.no_grad():
        model.conv10.weight.zero_()
        model.conv10.bias.copy_(torch.arange(12.0))
        out = model(torch.rand(1, 4, 16, 16))
    assert out[0, 1, 0, 1].item() == 1 * 4 + 0 * 2 + 1
    assert out[0, 2, 3, 2].item() == 2 * 4 + 1 * 2 + 0


@pytest.mark.parametrize("norm", ["single", "double"])
def test_batchnorm_variants_train_and_evaluate(norm):
    torch.manual_seed(0)
    model = SIDUNet(norm=norm, width=8)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert n_bn == (9 if norm == "single" else 18)
    x, target = torch.rand(2, 4, 32, 32), torch.rand(2, 3, 64, 64)
    loss = (model(x) - target).abs().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 1
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 3, 64, 64)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="norm"):
        SIDUNet(norm="batch")
    with pytest.raises(ValueError):
        SIDUNet(in_channels=0)
    with pytest.raises(ValueError):
        SIDUNet(width=2.5)
    with pytest.raises(ValueError, match="B×4×H×W"):
        SIDUNet(width=8)(torch.rand(1, 3, 16, 16))
