"""The Lamba & Mitra study module: data conventions, shared checkpoints, official weights, efficiency."""
from pathlib import Path

import numpy as np
import pytest
import torch

from reprolib import data, lle_study, report, sid_study, study
from reprolib.models.lle import LLENet

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
OFFICIAL_WEIGHTS = FIXTURES / "lle" / "weights"

# RGGB mosaic levels that identify the colour of every pixel after crops and flips
LEVELS = {"R": 0.001, "G": 0.002, "B": 0.004}


class FakeCache:
    """Stands in for sid_study.DecodedCache: an RGGB mosaic of known levels and a grey target."""

    def __init__(self, h=224, w=256, noise=False):
        mosaic = np.empty((h, w), np.float32)
        mosaic[0::2, 0::2], mosaic[1::2, 1::2] = LEVELS["R"], LEVELS["B"]
        mosaic[0::2, 1::2] = mosaic[1::2, 0::2] = LEVELS["G"]
        if noise:
            mosaic *= np.random.default_rng(0).uniform(0.5, 1.5, mosaic.shape).astype(np.float32)
        self._mosaic = mosaic
        self._gt = np.full((h, w, 3), 20000, np.uint16)

    def info(self, path):
        return sid_study.FileInfo(cfa="RGGB", black_level=((0, 0), (0, 0)), white_level=1, exposure_time=0.033,
                                  shape=self._mosaic.shape)

    def mosaic(self, path):
        return self._mosaic

    def ground_truth(self, path):
        return self._gt


def pair(scene=1, short_exposure=0.033, long_exposure=10.0):
    return data.SIDPair(short=f"./Sony/short/{scene:05d}_00_{short_exposure:g}s.dng",
                        long=f"./Sony/long/{scene:05d}_00_{long_exposure:g}s.dng", scene=scene, burst=0,
                        short_exposure=short_exposure, long_exposure=long_exposure,
                        ratio=long_exposure / short_exposure, iso=100, aperture="F8", split="train",
                        short_path=Path("short.dng"), long_path=Path("long.dng"))


def resolve(spec, **given):
    return study.resolve_parameters("lle", {"profile": "mini", **given}, spec)


# ------------------------------------------------------------------------------------------------ parameters

def test_parse_names_and_frames():
    assert lle_study.parse_names(" rdb_x3, rdb_star_x3,,") == ["rdb_x3", "rdb_star_x3"]
    assert lle_study.parse_frames("2848x4256, 2048X4096") == [(2848, 4256), (2048, 4096)]
    for bad in ("2848", "2848x4255", "ax4", ""):
        with pytest.raises(ValueError):
            lle_study.parse_frames(bad)


@pytest.mark.parametrize("spec", [lle_study.PARAMETERS_RDB, lle_study.PARAMETERS_LOSS, lle_study.PARAMETERS_EFFICIENCY])
def test_parameters_reject_unknown_names(spec):
    with pytest.raises(ValueError, match="unknown parameter 'no_such'"):
        resolve(spec, no_such=1)


def test_parameters_reject_bad_values():
    with pytest.raises(ValueError, match="variants"):
        resolve(lle_study.PARAMETERS_RDB, variants="rdb_x3,rdb_x5")
    with pytest.raises(ValueError, match="patch"):
        resolve(lle_study.PARAMETERS_RDB, patch=200)
    with pytest.raises(ValueError, match="weights"):
        resolve(lle_study.PARAMETERS_LOSS, weights="pretrained")
    with pytest.raises(ValueError, match="losses"):
        resolve(lle_study.PARAMETERS_LOSS, losses="l2")
    with pytest.raises(ValueError, match="latency_frame"):
        resolve(lle_study.PARAMETERS_EFFICIENCY, latency_frame="4256")


def test_full_profile_is_the_official_training():
    P = study.resolve_parameters("lle_rdb", {"profile": "full"}, lle_study.PARAMETERS_RDB)
    assert (P["steps"], P["lr"], P["lr_drop"], P["batch"], P["patch"], P["loss"]) == \
        (1_000_000, 1e-4, 500_000, 8, 512, "l1_ms_ssim")
    cfg = lle_study.train_config(P)
    assert cfg.milestones == (500_000,) and cfg.gamma == 0.1
    assert cfg.grad_clip is None  # the official code does not clip; the miniature does
    mini = study.resolve_parameters("lle_rdb", {"profile": "mini"}, lle_study.PARAMETERS_RDB)
    assert lle_study.train_config(mini).grad_clip == 0.1


@pytest.mark.parametrize("profile", ["smoke", "mini", "full"])
def test_crops_are_large_enough_for_ms_ssim_and_fit_the_data(profile):
    P = study.resolve_parameters("lle_loss", {"profile": profile}, lle_study.PARAMETERS_LOSS)
    assert P["patch"] >= 176 and P["patch"] % 32 == 0
    if profile == "smoke":  # a crop needs one spare pixel to re-align the CFA after a flip
        assert min(lle_study.SMOKE_DATA["height"], lle_study.SMOKE_DATA["width"]) >= P["patch"] + 1


def test_both_ablations_share_the_training_settings():
    rdb, loss = resolve(lle_study.PARAMETERS_RDB), resolve(lle_study.PARAMETERS_LOSS)
    shared = set(lle_study._training_parameters())
    assert {k: rdb[k] for k in shared} == {k: loss[k] for k in shared}


# ------------------------------------------------------------------------------------------------ data conventions

def test_training_patches_are_the_rggb_mosaic_amplified_by_the_uncapped_ratio():
    P = resolve(lle_study.PARAMETERS_RDB, batch=3)
    patches = lle_study.training_patches([pair(1), pair(2)], FakeCache(), P)
    ratio = 10.0 / 0.033  # 303.03: above SID's cap of 300
    for step in range(4):  # random positions and flips
        x, y = patches(step)
        assert x.shape == (3, 1, 192, 192) and y.shape == (3, 3, 192, 192) and x.dtype == torch.float32
        # every crop has the RGGB phase and the plain ratio, and nothing is clipped at 1
        torch.testing.assert_close(x[:, 0, 0::2, 0::2], torch.full_like(x[:, 0, 0::2, 0::2], LEVELS["R"] * ratio))
        torch.testing.assert_close(x[:, 0, 1::2, 1::2], torch.full_like(x[:, 0, 1::2, 1::2], LEVELS["B"] * ratio))
        torch.testing.assert_close(x[:, 0, 0::2, 1::2], torch.full_like(x[:, 0, 0::2, 1::2], LEVELS["G"] * ratio))
        assert x.max() > 1.0
        torch.testing.assert_close(y, torch.full_like(y, 20000 / 65535))


def test_whole_images_are_amplified_by_the_ratio_without_clip():
    cache = FakeCache(h=64, w=96)
    x = lle_study.images([pair()], cache).input(pair())
    assert x.shape == (1, 1, 64, 96)
    np.testing.assert_allclose(x[0, 0].numpy(), cache.mosaic(None) * np.float32(10.0 / 0.033), rtol=1e-6)


class RecordingNet(torch.nn.Module):
    """A 1×1 conv from the mosaic to grey RGB that remembers its inputs."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 1, bias=False)
        torch.nn.init.constant_(self.conv.weight, 0.2)
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return self.conv(x)


def test_evaluation_pads_to_a_multiple_of_32_and_crops_back():
    net = RecordingNet()
    df = lle_study.evaluate(net, [pair()], FakeCache(h=70, w=100), progress=False)
    assert net.inputs[0].shape[-2:] == (96, 128)  # padded to multiples of 32
    assert len(df) == 1 and np.isfinite(df["psnr"]).all()
    assert set(df.columns) >= {"psnr", "ssim", "psnr_8bit", "ssim_8bit", "ratio"}


def test_validation_takes_one_pair_per_scene_and_every_ratio():
    pairs = [pair(scene, t) for scene in (20001, 20002, 20003) for t in (0.1, 0.04, 0.033)]
    chosen = lle_study.validation_pairs(pairs)
    assert [p.scene for p in chosen] == [20001, 20002, 20003]
    assert sorted(round(p.ratio) for p in chosen) == [100, 250, 303]


def test_display_mosaic_shows_the_packed_colours():
    x = torch.from_numpy(FakeCache(h=8, w=8).mosaic(None))[None, None] * 100
    rgb = lle_study.display_mosaic(x)
    assert rgb.shape == (8, 8, 3)
    np.testing.assert_allclose(rgb[0, 0], [0.1, 0.2, 0.4], rtol=1e-6)


# ------------------------------------------------------------------------------------------------ training

def test_shared_checkpoint_is_keyed_by_the_training_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    rdb, loss = resolve(lle_study.PARAMETERS_RDB), resolve(lle_study.PARAMETERS_LOSS, grid_crop=64)
    path, key = lle_study.shared_checkpoint("rdb_star_x3", "l1_ms_ssim", rdb, "data-1")
    assert path.parent == tmp_path / "lle_shared"
    assert lle_study.shared_checkpoint("rdb_star_x3", "l1_ms_ssim", loss, "data-1") == (path, key)
    others = [lle_study.shared_checkpoint("rdb_x3", "l1_ms_ssim", rdb, "data-1"),
              lle_study.shared_checkpoint("rdb_star_x3", "l1", rdb, "data-1"),
              lle_study.shared_checkpoint("rdb_star_x3", "l1_ms_ssim", rdb, "data-2"),
              lle_study.shared_checkpoint("rdb_star_x3", "l1_ms_ssim", {**rdb, "seed": 1}, "data-1"),
              lle_study.shared_checkpoint("rdb_star_x3", "l1_ms_ssim", {**rdb, "steps": 151}, "data-1")]
    assert len({p for p, _ in others} | {path}) == 6


def test_train_variant_trains_once_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    P = resolve(lle_study.PARAMETERS_RDB, steps=2, batch=1, eval_every=0, lr=1e-3)
    cache = FakeCache(h=224, w=224, noise=True)
    dataset = lle_study.LLEData(tmp_path, "fake", True, {"train": [pair(1)], "val": [pair(2)], "test": []},
                                cache, "fake-fingerprint")
    model, history = lle_study.train_variant("rdb_star_x2", "l1", P, dataset)
    assert history.curves["loss"][-1]["step"] == 2 and "val_psnr" in history.curves
    assert isinstance(model, LLENet) and model.n_blocks == 2 and not model.training
    again, history_again = lle_study.train_variant("rdb_star_x2", "l1", P, dataset)
    assert history_again.resumed_from == 2  # reloaded, not retrained
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)
    assert len(list((tmp_path / "lle_shared").glob("rdb_star_x2-l1-*.pt"))) == 1


def test_variant_costs_list_every_variant():
    costs = lle_study.variant_costs(list(lle_study.VARIANTS), frame=(256, 384))
    n = costs["parameters"]
    assert n["RDB* ×3"] == 784_768  # the official network
    assert n["RDB ×3"] == n["RDB* ×3"]  # only the activation placement differs
    assert n["RDB* ×2"] < n["RDB* ×3"] < n["RDB* ×4"]


# ------------------------------------------------------------------------------------------------ official weights

def test_missing_official_weights_are_reported_not_raised_outside_full(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_DATA", str(tmp_path))
    monkeypatch.setenv("REPROLIB_OFFLINE", "1")
    path, message = lle_study.find_official_weights()
    assert path is None and "lle-official-weights" in message
    mini = resolve(lle_study.PARAMETERS_RDB, weights="official")
    model, message = lle_study.official_model(mini)
    assert model is None and "not available" in message
    full = study.resolve_parameters("lle_rdb", {"profile": "full", "weights": "official"}, lle_study.PARAMETERS_RDB)
    with pytest.raises(data.DataMissingError):
        lle_study.official_model(full)
    with pytest.raises(data.DataMissingError):
        lle_study.find_official_weights(str(tmp_path / "no-such-file"))


def test_official_weights_load_strictly_from_a_given_path():
    if not OFFICIAL_WEIGHTS.is_file():
        pytest.skip("the official weights fixture (../shared/fixtures/lle/weights) is absent")
    P = resolve(lle_study.PARAMETERS_RDB, official_weights_path=str(OFFICIAL_WEIGHTS))
    model, message = lle_study.official_model(P)
    assert isinstance(model, LLENet) and str(OFFICIAL_WEIGHTS) in message
    assert sum(p.numel() for p in model.parameters()) == 784_768


# ------------------------------------------------------------------------------------------------ efficiency

@pytest.fixture(scope="module")
def costs():
    """Parameters and GMACs of SID and both forms of Lamba & Mitra's network, counted once."""
    names = ["sid", "lle", "lle_fused"]
    return lle_study.parameter_table(names), lle_study.gmacs_table(names)


def test_input_shapes_give_each_network_the_same_raw_frame():
    frame = (2848, 4256)
    assert lle_study.input_shape("lle", frame) == (1, 1, 2848, 4256)
    assert lle_study.input_shape("sid", frame) == (1, 4, 1424, 2128)
    assert lle_study.input_shape("genisp", frame) == (1, 3, 1424, 2128)
    assert lle_study.input_shape("pynet", frame) == (1, 4, 1424, 2128)
    with pytest.raises(ValueError):
        lle_study.build_model("unet")


def test_gmacs_are_within_one_percent_of_table_1(costs):
    table = costs[1]
    column = "Δ 4256×2848 (%)"
    assert table[column].abs().max() < 1.0, table
    # folding the weight normalisation changes no multiply-accumulate
    assert table.iloc[1]["GMACs 4256×2848"] == pytest.approx(table.iloc[2]["GMACs 4256×2848"])


def test_readme_scaling_is_computed_from_the_published_values(costs):
    scaling = lle_study.readme_scaling(costs[1])
    ratio = 2048 * 4096 / (2848 * 4256)
    assert scaling["pixel_ratio"] == pytest.approx(ratio)
    sid = scaling["sid"]
    assert sid["scaled_from_paper"] == pytest.approx(report.published_value("efficiency/sid/gmacs_sony") * ratio)
    # our count scales with the pixels, as a fully convolutional network's must
    assert sid["ours_2048x4096"] / sid["ours_4256x2848"] == pytest.approx(ratio, rel=0.01)


def test_fast_path_computes_the_same_function():
    torch.manual_seed(0)
    model = LLENet("rdb_star", 2).eval()
    fast = lle_study.fast_inference(model)
    x = torch.rand(1, 1, 64, 96) * 3  # amplified, unclipped
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=0, atol=1e-5)
    assert model.training is False and fast.n_blocks == 2


def test_frame_inference_is_a_picklable_module_function():
    import pickle

    lle_study.frame_inference("lle_fused", (64, 96))  # builds and runs without error
    assert pickle.loads(pickle.dumps(lle_study.frame_inference)) is lle_study.frame_inference


def test_latency_is_measured_round_by_round(monkeypatch):
    from reprolib import efficiency

    calls = []

    def fake_latency(model, shape, repeats, warmup, threads):
        calls.append(shape[1])
        return {"min_s": float(shape[1]), "median_s": float(shape[1]), "threads": 2}

    monkeypatch.setattr(efficiency, "latency", fake_latency)
    result = lle_study.side_by_side_latency(["sid", "lle"], (64, 64), rounds=2, warmup=1, progress=False)
    assert calls == [4, 1, 4, 1, 4, 1]  # interleaved: SID (4 channels), ours (1), round after round
    assert result["sid"]["times_s"] == [4.0, 4.0] and result["lle"]["median_s"] == 1.0


def test_speedup_is_taken_round_by_round():
    latency = {"sid": {"times_s": [16.0, 30.0, 18.0]}, "lle_fused": {"times_s": [2.0, 10.0, 3.0]}}
    ratio = lle_study.speedup(latency, "lle_fused")
    assert ratio["per_round"] == [8.0, 3.0, 6.0]
    assert ratio["median"] == 6.0 and ratio["of_minima"] == 8.0


def test_efficiency_rows_carry_the_published_keys(costs):
    params, gmacs = costs
    latency = {"sid": {"median_s": 16.0, "times_s": [16.0], "threads": 2},
               "lle": {"median_s": 2.2, "times_s": [2.2], "threads": 2},
               "lle_fused": {"median_s": 2.0, "times_s": [2.0], "threads": 2}}
    rows = lle_study.efficiency_rows(params, gmacs, latency, {"sid": 3.0, "lle_fused": 1.0}, lle_study.FULL_FRAME)
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
    # another frame never carries a published key
    other = {r["key"] for r in lle_study.efficiency_rows(params, gmacs, latency, None, (256, 384))}
    assert "efficiency/sid/cpu_s" not in other and "efficiency/speedup_cpu_384x256" in other


def test_efficiency_table_sets_ours_beside_the_paper(costs):
    table = lle_study.efficiency_table(*costs, None, None)
    assert table.loc["Parameters (M)", "Lamba & Mitra: paper"] == report.published_value("efficiency/lle/params_m")
    assert table.loc["Parameters (M)", "Lamba & Mitra (weight norm, as trained): ours"] == pytest.approx(0.784768)


def test_loss_findings_follow_the_numbers():
    import pandas as pd

    labels = {"l1": "ours: L1", "ms_ssim": "ours: MS-SSIM", "l1_ms_ssim": "ours: L1 + MS-SSIM"}
    summary = pd.DataFrame({"PSNR": [19.9, 13.1, 19.8, 17.2], "SSIM": [0.44, 0.24, 0.44, 0.30],
                            "brightness": [0.98, 0.81, 1.01, 0.95]},
                           index=[*labels.values(), "traditional"])
    text = lle_study.loss_findings(summary, labels, "traditional", synthetic=True)
    assert "-6.80 dB PSNR" in text and "not the best (-0.10 dB" in text
    assert "MS-SSIM 0.81" in text and "traditional pipeline 0.95" in text
    assert "Not every trained network beats the traditional pipeline (17.20 dB): ours: MS-SSIM (-4.10 dB) does not." in text
