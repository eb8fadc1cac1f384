"""Tests of the efficiency measurements (parameters, MACs, latency, peak memory) on small inputs, and of
the efficiency notebook's table (model lookup, costs, run-record rows, Table 1, parameters)."""
import ast
import functools
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from reprolib import efficiency, efficiency_study, models, report, study
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
    result = latency({"conv": (nn.Conv2d(1, 4, 3), (1, 1, 32, 32))}, rounds=3, warmup=1, threads=1)["conv"]
    assert result["threads"] == 1 and torch.get_num_threads() == before
    assert len(result["times_s"]) == 3
    assert 0 < result["min_s"] <= result["median_s"]
    with pytest.raises(ValueError):
        latency({"identity": (nn.Identity(), (1,))}, rounds=0)


def test_latency_is_measured_round_by_round():
    calls = []

    class Recorder(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            calls.append((self.name, tuple(x.shape)))
            return x

    result = latency({"sid": (Recorder("sid"), (1, 4, 8, 8)), "lle": (Recorder("lle"), (1, 1, 16, 16))},
                     rounds=2, warmup=1)
    # interleaved: SID then ours, round after round, the warm-up round untimed
    assert calls == [("sid", (1, 4, 8, 8)), ("lle", (1, 1, 16, 16))] * 3
    assert len(result["sid"]["times_s"]) == len(result["lle"]["times_s"]) == 2


def test_peak_memory_sees_an_allocation():
    # 50 M float64 = 400 MB, written by np.ones, so resident
    big = peak_memory(functools.partial(np.ones, 50_000_000))
    small = peak_memory(functools.partial(np.ones, 10))
    assert 350e6 < big < 600e6
    assert small < 50e6


def test_peak_memory_reports_failures():
    with pytest.raises(RuntimeError, match="failed"):
        peak_memory(functools.partial(np.ones, -1))


# ------------------------------------------------------------------------------------------------ models by name

def test_models_are_looked_up_by_name():
    assert set(models.MODELS) == {"sid_unet", "lle", "genisp", "pynet"}
    torch.manual_seed(0)
    built = models.build("lle", n_blocks=2)
    torch.manual_seed(0)
    direct = LLENet(n_blocks=2)
    assert isinstance(built, LLENet) and built.n_blocks == 2
    for a, b in zip(built.parameters(), direct.parameters()):  # the same initialisation as the class
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        models.build("unet")


def test_build_model_is_seeded_and_in_eval_mode():
    a, b = efficiency.build_model("sid"), efficiency.build_model("sid")
    assert not a.training
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert efficiency.build_model("pynet", "meta").level == 0
    with pytest.raises(ValueError):
        efficiency.build_model("unet")


def test_efficiency_imports_no_study_module():
    tree = ast.parse(Path(efficiency.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not [name for name in imported if name.endswith("_study")], imported


# ------------------------------------------------------------------------------------------------ the table

@pytest.fixture(scope="module")
def costs():
    """Parameters and GMACs of SID and both forms of Lamba & Mitra's network, counted once."""
    return efficiency.cost_table(["sid", "lle", "lle_fused"])


def test_input_shapes_give_each_network_the_same_raw_frame():
    frame = (2848, 4256)
    assert efficiency.input_shape("lle", frame) == (1, 1, 2848, 4256)
    assert efficiency.input_shape("sid", frame) == (1, 4, 1424, 2128)
    assert efficiency.input_shape("genisp", frame) == (1, 3, 1424, 2128)
    assert efficiency.input_shape("pynet", frame) == (1, 4, 1424, 2128)


def test_costs_match_table_1(costs):
    assert costs.loc["SID U-Net", "parameters"] == 7_760_268
    assert costs.iloc[1]["parameters"] == 784_768 and costs.iloc[1]["M (paper)"] == 0.78
    assert np.isnan(costs.iloc[2]["M (paper)"])  # the fast path has fewer scalars than the authors count
    assert costs["Δ 4256×2848 (%)"].abs().max() < 1.0, costs
    # folding the weight normalisation changes no multiply-accumulate
    assert costs.iloc[1]["GMACs 4256×2848"] == pytest.approx(costs.iloc[2]["GMACs 4256×2848"])
    # the README's SID figure at 2048×4096 is not the paper's scaled with the pixels; ours is
    ratio = 2048 * 4096 / (2848 * 4256)
    sid = costs.loc["SID U-Net"]
    assert sid["GMACs 4096×2048"] / sid["GMACs 4256×2848"] == pytest.approx(ratio, rel=0.01)
    assert sid["published 4096×2048"] / (sid["published 4256×2848"] * ratio) > 1.1


def test_cost_table_with_timings_relates_each_network_to_the_reference():
    timed = {"sid": {"median_s": 8.0}, "lle_fused": {"median_s": 2.0}}
    table = efficiency.cost_table(["sid", "lle_fused"], [(64, 96)], timed=timed)
    assert list(table["time / L&M (fast path)"]) == [4.0, 1.0]
    assert table.loc["SID U-Net", "GMAC/s"] == pytest.approx(table.loc["SID U-Net", "GMACs 96×64"] / 8.0)
    assert table.loc["SID U-Net", "input 96×64"] == "4×32×48"


def test_fast_path_computes_the_same_function():
    torch.manual_seed(0)
    model = LLENet("rdb_star", 2).eval()
    fast = efficiency.fast_inference(model)
    x = torch.rand(1, 1, 64, 96) * 3  # amplified, unclipped
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=0, atol=1e-5)
    assert model.training is False and fast.n_blocks == 2


def test_frame_inference_is_a_picklable_module_function():
    efficiency.frame_inference("lle_fused", (64, 96))  # builds and runs without error
    assert pickle.loads(pickle.dumps(efficiency.frame_inference)) is efficiency.frame_inference


def test_side_by_side_latency_times_each_network_on_its_own_input(monkeypatch):
    seen = {}

    def fake_latency(timed, rounds, warmup, threads, progress):
        seen.update({name: shape for name, (model, shape) in timed.items()})
        return {name: {"times_s": [1.0] * rounds} for name in timed}

    monkeypatch.setattr(efficiency, "latency", fake_latency)
    result = efficiency.side_by_side_latency(["sid", "lle"], (64, 64), rounds=2, warmup=1, progress=False)
    assert seen == {"sid": (1, 4, 32, 32), "lle": (1, 1, 64, 64)} and result["sid"]["times_s"] == [1.0, 1.0]


def test_speedup_is_taken_round_by_round():
    timed = {"sid": {"times_s": [16.0, 30.0, 18.0]}, "lle_fused": {"times_s": [2.0, 10.0, 3.0]}}
    ratio = efficiency.speedup(timed, "lle_fused")
    assert ratio["per_round"] == [8.0, 3.0, 6.0]
    assert ratio["median"] == 6.0 and ratio["of_minima"] == 8.0


TIMED = {"sid": {"median_s": 16.0, "times_s": [16.0], "threads": 2},
         "lle": {"median_s": 2.2, "times_s": [2.2], "threads": 2},
         "lle_fused": {"median_s": 2.0, "times_s": [2.0], "threads": 2}}


def test_efficiency_rows_carry_the_published_keys(costs):
    rows = efficiency_study.efficiency_rows(costs, TIMED, {"sid": 3.0, "lle_fused": 1.0}, efficiency.FULL_FRAME)
    keys = {r["key"]: r["value"] for r in rows}
    published = {r["key"] for r in report.published(study="efficiency")}
    for key in ("efficiency/sid/params_m", "efficiency/lle/params_m", "efficiency/sid/gmacs_sony",
                "efficiency/lle/gmacs_sony", "efficiency/sid/gmacs_2048x4096", "efficiency/lle/gmacs_2048x4096",
                "efficiency/sid/cpu_s", "efficiency/lle/cpu_s", "efficiency/speedup_cpu",
                "efficiency/sid/memory_gb", "efficiency/lle/memory_gb"):
        assert key in keys and key in published, key
    assert keys["efficiency/speedup_cpu"] == pytest.approx(8.0)
    assert keys["efficiency/lle/cpu_s"] == 2.0  # the fused network carries the published key
    assert keys["efficiency/lle_weight_norm/cpu_s"] == 2.2
    assert keys["efficiency/lle_weight_norm/params_m"] == 0.784768 and keys["efficiency/lle/params_m"] == 0.783432
    # another frame never carries a published key; no cost table: timings only
    other = {r["key"] for r in efficiency_study.efficiency_rows(None, TIMED, None, (256, 384))}
    assert other == {"efficiency/sid/cpu_s_384x256", "efficiency/lle_weight_norm/cpu_s_384x256",
                     "efficiency/lle/cpu_s_384x256", "efficiency/speedup_cpu_384x256",
                     "efficiency/speedup_cpu_weight_norm_384x256"}
    readme = {r["key"] for r in efficiency_study.efficiency_rows(None, TIMED, None, efficiency.README_FRAME)}
    assert {"efficiency/sid/cpu_s_2048x4096", "efficiency/speedup_cpu_readme"} <= readme <= published | {
        "efficiency/lle_weight_norm/cpu_s_2048x4096", "efficiency/speedup_cpu_weight_norm_2048x4096"}


def test_efficiency_table_sets_ours_beside_the_paper(costs):
    rows = efficiency_study.efficiency_rows(costs, TIMED, None, efficiency.FULL_FRAME)
    table = efficiency_study.efficiency_table(rows)
    assert list(table.columns) == ["SID U-Net: ours", "SID U-Net: paper", "Lamba & Mitra (weight norm, as trained): ours",
                                   "Lamba & Mitra: paper", "Lamba & Mitra (fast path: folded, channels-last): ours"]
    assert table.loc["Parameters (M)", "Lamba & Mitra: paper"] == report.published_value("efficiency/lle/params_m")
    assert table.loc["Parameters (M)", "Lamba & Mitra (weight norm, as trained): ours"] == pytest.approx(0.784768)
    assert table.loc["CPU inference (s, 4256×2848)", "SID U-Net: paper"] == report.published_value("efficiency/sid/cpu_s")
    assert table.loc["CPU inference (s, 4256×2848)", "Lamba & Mitra (fast path: folded, channels-last): ours"] == 2.0
    small = efficiency_study.efficiency_table(efficiency_study.efficiency_rows(costs, TIMED, None, (64, 96)), (64, 96))
    assert small.loc["CPU inference (s, 96×64)", "SID U-Net: ours"] == 16.0
    assert np.isnan(small.loc["CPU inference (s, 96×64)", "SID U-Net: paper"])  # no one timed that frame


def test_efficiency_figure_shows_only_like_for_like_quantities(costs):
    import matplotlib

    matplotlib.use("Agg")
    rows = efficiency_study.efficiency_rows(costs, TIMED, {"sid": 3.0, "lle_fused": 1.0}, efficiency.FULL_FRAME)
    fig = efficiency_study.efficiency_figure(rows, threshold=6.4)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["parameters (M)", "GMACs at 4256×2848", "CPU speed-up SID / ours (×)"]
    speedups = [p.get_height() for p in fig.axes[2].patches]
    assert speedups == pytest.approx([8.0, 16.0 / 2.2], abs=1e-3)  # ratios timed side by side, not seconds


def test_parameters_are_validated():
    def resolve(**given):
        return study.resolve_parameters("efficiency", {"profile": "mini", **given}, efficiency_study.PARAMETERS)

    P = resolve()
    assert (P["latency_frame"], P["rounds"], P["memory"], P["device"], P["threads"]) == ("2848x4256", 2, True, "cpu", None)
    assert resolve(threads=2)["threads"] == 2
    for bad in ({"latency_frame": "4256"}, {"device": "cuda"}, {"rounds": 0}, {"threads": 0}, {"no_such": 1}):
        with pytest.raises(ValueError):
            resolve(**bad)
