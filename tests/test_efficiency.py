"""Tests of the efficiency measurements (parameters, MACs, latency, peak memory) on small inputs."""
import functools
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from reprolib.efficiency import count_parameters, gmacs, latency, peak_memory
from reprolib.models.lle import LLENet
from reprolib.models.sid_unet import SIDUNet


def conv_macs_by_hooks(model: nn.Module, input_shape) -> int:
    """Independent MAC count: output elements × (input channels / groups) × kernel area per conv."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel scatters a kernel
            total += inputs[0].numel() * (module.out_channels // module.groups) * kh * kw
        else:
            total += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(torch.zeros(input_shape))
    for h in handles:
        h.remove()
    return total


def test_count_parameters():
    assert count_parameters(nn.Linear(3, 4)) == 16
    assert count_parameters(LLENet()) == 784_768
    assert count_parameters(SIDUNet()) == 7_760_268


def test_gmacs_of_one_convolution():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert gmacs(conv, (1, 3, 16, 16)) == pytest.approx(8 * 3 * 9 * 16 * 16 / 1e9, rel=1e-12)


@pytest.mark.parametrize("model, shape", [(LLENet(), (1, 1, 64, 96)), (SIDUNet(), (1, 4, 32, 48)),
                                          (LLENet(n_blocks=4), (1, 1, 64, 64))])
def test_gmacs_agree_with_an_independent_count(model, shape):
    assert gmacs(model, shape) == pytest.approx(conv_macs_by_hooks(model, shape) / 1e9, rel=1e-9)


def test_gmacs_of_a_full_frame_is_fast_and_weight_norm_free():
    model = LLENet()
    start = time.perf_counter()
    full = gmacs(model, (1, 1, 2848, 4256))
    assert time.perf_counter() - start < 20  # meta device: no arithmetic is done
    assert full == pytest.approx(gmacs(model.fused(), (1, 1, 2848, 4256)), rel=1e-12)
    # a convolutional network's cost scales with the number of pixels (sizes multiple of 32: no padding)
    assert gmacs(model, (1, 1, 2048, 4096)) == pytest.approx(gmacs(model, (1, 1, 1024, 2048)) * 4, rel=1e-9)


def test_latency_reports_and_restores_threads():
    before = torch.get_num_threads()
    result = latency(nn.Conv2d(1, 4, 3), (1, 1, 32, 32), repeats=3, warmup=1, threads=1)
    assert result["threads"] == 1 and torch.get_num_threads() == before
    assert len(result["times_s"]) == 3
    assert 0 < result["min_s"] <= result["median_s"]
    with pytest.raises(ValueError):
        latency(nn.Identity(), (1,), repeats=0)


def test_peak_memory_sees_an_allocation():
    # 50 M float64 = 400 MB, written by np.ones, so resident
    big = peak_memory(functools.partial(np.ones, 50_000_000))
    small = peak_memory(functools.partial(np.ones, 10))
    assert 350e6 < big < 600e6
    assert small < 50e6


def test_peak_memory_reports_failures():
    with pytest.raises(RuntimeError, match="failed"):
        peak_memory(functools.partial(np.ones, -1))
