"""The Lamba & Mitra study module: parameters, data conventions, shared checkpoints, official weights, crops."""
from pathlib import Path

import numpy as np
import pytest
import torch

from reprolib import data, evaluate, lle_study, plots, report, study
from reprolib.data import sid
from reprolib.models.lle import LLENet

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
OFFICIAL_WEIGHTS = FIXTURES / "lle" / "weights"

# RGGB mosaic levels that identify the colour of every pixel after crops and flips
LEVELS = {"R": 0.001, "G": 0.002, "B": 0.004}


class FakeCache:
    """Stands in for data.sid.DecodedCache: an RGGB mosaic of known levels and a grey target."""

    def __init__(self, h=224, w=256, noise=False):
        mosaic = np.empty((h, w), np.float32)
        mosaic[0::2, 0::2], mosaic[1::2, 1::2] = LEVELS["R"], LEVELS["B"]
        mosaic[0::2, 1::2] = mosaic[1::2, 0::2] = LEVELS["G"]
        if noise:
            mosaic *= np.random.default_rng(0).uniform(0.5, 1.5, mosaic.shape).astype(np.float32)
        self._mosaic = mosaic
        self._gt = np.full((h, w, 3), 20000, np.uint16)

    def info(self, path):
        return sid.FileInfo(cfa="RGGB", black_level=((0, 0), (0, 0)), white_level=1, exposure_time=0.033,
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
    assert study.parse_names(" rdb_x3, rdb_star_x3,,") == ["rdb_x3", "rdb_star_x3"]
    assert study.parse_frames("2848x4256, 2048X4096") == [(2848, 4256), (2048, 4096)]
    for bad in ("2848", "2848x4255", "ax4", ""):
        with pytest.raises(ValueError):
            study.parse_frames(bad)


@pytest.mark.parametrize("spec", [lle_study.PARAMETERS_RDB, lle_study.PARAMETERS_LOSS])
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
        resolve(lle_study.PARAMETERS_RDB, latency_frame="4256")
    with pytest.raises(ValueError, match="tile"):
        resolve(lle_study.PARAMETERS_RDB, tile=1000)
    assert resolve(lle_study.PARAMETERS_RDB, tile=1024)["tile"] == 1024


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
    shared = {row[0] for row in lle_study.TRAINING_ROWS}
    assert {"data_root", "device", "seed", "steps", "lr", "patch", "weights"} <= shared
    assert {k: rdb[k] for k in shared} == {k: loss[k] for k in shared}
    for k in shared:  # one definition: the same help and values in both tables
        assert lle_study.PARAMETERS_RDB[k] == lle_study.PARAMETERS_LOSS[k]


# ------------------------------------------------------------------------------------------------ data conventions

def test_training_patches_are_the_rggb_mosaic_amplified_by_the_uncapped_ratio():
    P = resolve(lle_study.PARAMETERS_RDB, batch=3)
    patches = sid.SIDTrainingPatches([pair(1), pair(2)], FakeCache(), P["patch"], P["seed"], batch=P["batch"],
                                     convention=sid.LLE_INPUT)
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
    x = sid.SIDImages([pair()], cache, sid.LLE_INPUT).input(pair())
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
    df = evaluate.evaluate(net, [pair()], FakeCache(h=70, w=100), convention=sid.LLE_INPUT, progress=False)
    assert net.inputs[0].shape[-2:] == (96, 128)  # padded to multiples of 32
    assert len(df) == 1 and np.isfinite(df["psnr"]).all()
    assert set(df.columns) >= {"psnr", "ssim", "psnr_8bit", "ssim_8bit", "ratio"}


def test_validation_takes_one_pair_per_scene_and_every_ratio():
    pairs = [pair(scene, t) for scene in (20001, 20002, 20003) for t in (0.1, 0.04, 0.033)]
    chosen = lle_study.validation_pairs(pairs)
    assert [p.scene for p in chosen] == [20001, 20002, 20003]
    assert sorted(round(p.ratio) for p in chosen) == [100, 250, 303]


def test_crop_panels_show_input_outputs_and_truth_with_each_psnr(monkeypatch):
    """The test crops (evaluate.crop_panels, Lamba & Mitra input): the same even-offset centre crop in every column, each output's PSNR."""
    grey = torch.full((1, 3, 64, 96), 20000 / 65535)
    monkeypatch.setattr(evaluate, "conventional_output", lambda p: grey * 0.5)
    net = RecordingNet()
    grid = evaluate.crop_panels({"net": net}, [pair()], FakeCache(h=64, w=96), 30, data.LLE_INPUT)
    assert grid["col_titles"] == ["amplified raw input", "traditional pipeline", "net", "ground truth"]
    assert grid["row_labels"] == ["scene 1, ×303"]
    row = grid["images"][0]
    assert [im.shape for im in row] == [(30, 30, 3)] * 4
    # the input column is what the network sees: packed R, mean G, B of the amplified mosaic, clipped
    np.testing.assert_allclose(row[0][0, 0], np.minimum(np.array([0.001, 0.002, 0.004]) * 10 / 0.033, 1), rtol=1e-5)
    psnr = -10 * np.log10(np.mean((row[1] - row[3]) ** 2))
    assert grid["cell_notes"][0][0] == grid["cell_notes"][0][3] == ""
    assert grid["cell_notes"][0][1] == f"{psnr:.2f} dB"
    fig = plots.image_grid(**grid)
    assert len(fig.axes) == 4


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
    splits = {"train": [pair(1)], "val": [pair(2)], "test": []}
    model, history = lle_study.train_variant("rdb_star_x2", "l1", P, splits, cache, "fake-fingerprint")
    assert history.curves["loss"][-1]["step"] == 2 and "val_psnr" in history.curves
    assert isinstance(model, LLENet) and model.n_blocks == 2 and not model.training
    again, history_again = lle_study.train_variant("rdb_star_x2", "l1", P, splits, cache, "fake-fingerprint")
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
    model, message = lle_study.official_model(resolve(lle_study.PARAMETERS_RDB))
    assert model is None and "lle-official-weights" in message
    mini = resolve(lle_study.PARAMETERS_RDB, weights="official")
    model, message = lle_study.official_model(mini)
    assert model is None and "not in the data cache" in message and str(tmp_path) not in message  # no machine path
    full = study.resolve_parameters("lle_rdb", {"profile": "full", "weights": "official"}, lle_study.PARAMETERS_RDB)
    with pytest.raises(data.DataMissingError):
        lle_study.official_model(full)
    with pytest.raises(data.DataMissingError, match="does not exist"):
        lle_study.official_model(resolve(lle_study.PARAMETERS_RDB, official_weights_path=str(tmp_path / "no-such-file")))


def test_official_weights_load_strictly_from_a_given_path():
    if not OFFICIAL_WEIGHTS.is_file():
        pytest.skip("the official weights fixture (../shared/fixtures/lle/weights) is absent")
    P = resolve(lle_study.PARAMETERS_RDB, official_weights_path=str(OFFICIAL_WEIGHTS))
    model, message = lle_study.official_model(P)
    assert isinstance(model, LLENet) and OFFICIAL_WEIGHTS.name in message and str(OFFICIAL_WEIGHTS) not in message
    assert sum(p.numel() for p in model.parameters()) == 784_768


# ------------------------------------------------------------------------------------------------ claims

@pytest.mark.parametrize("claim_id", ["lle/rdb-star-beats-rdb", "lle/l1-ms-ssim-best"])
def test_claims_of_both_notebooks(claim_id):
    """The verdicts the notebooks glue: a PSNR difference in the claim's direction, None when the run
    did not train both sides (smoke variants, ``weights='official'``)."""
    assert report.CLAIMS[claim_id][0] in ("lle_rdb", "lle_loss")
    assert report.claim(claim_id, 0.12, "dB")["verdict"] == "holds"
    assert report.claim(claim_id, -0.10, "dB")["verdict"] == "does not hold"
    assert report.claim(claim_id, None, "dB")["verdict"] == "not testable here"


def test_no_study_module_is_imported():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(lle_study))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names} | \
               {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.endswith("_study")}, imported
