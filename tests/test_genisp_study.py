"""GenISP study: the CST's direction, pre-processing sizes, box scaling on the real RAW-NOD
annotations, augmentation, deterministic batches, training through a frozen detector."""
import json

import numpy as np
import pytest
import torch

from reprolib import data, detect, evaluate, raw, study, synth, train
from reprolib import genisp_study as gs

# RAW-NOD split sizes counted from the authors' annotation files (../shared/fixtures/MANIFEST.md)
REAL_COUNTS = {("Sony", "train"): 2571, ("Sony", "val"): 321, ("Sony", "test"): 321,
               ("Nikon", "train"): 3206, ("Nikon", "val"): 400, ("Nikon", "test"): 400}
TINY_DATA = {"height": 64, "width": 96, "sony": (8, 1, 1), "nikon": (1, 1, 3)}


def _chromaticity(v):
    v = np.asarray(v, dtype=np.float64)
    return v[:2] / v.sum()


def _patch_dng(path, xyz, sensor, exposure, h=64, w=96):
    """A noise-free DNG of a uniform patch of colour ``xyz`` as the synthetic sensor records it."""
    camera_rgb = synth.xyz_to_camera(np.asarray(xyz, dtype=np.float64), sensor)
    mosaic = synth.mosaic(np.broadcast_to(camera_rgb, (h, w, 3)).copy(), sensor.cfa) * exposure
    dn = np.rint(mosaic * (sensor.white_level - sensor.black_level) + sensor.black_level).astype(np.uint16)
    return synth.write_dng(path, dn, sensor)


@pytest.mark.parametrize("camera", ["NIKON D750", "SONY DSC-RX100M7"])
def test_cst_brings_a_known_xyz_colour_back(tmp_path, camera):
    sensor = synth.PRESETS[camera]
    xyz = synth.linear_srgb_to_xyz(synth.srgb_to_linear(np.array([0.85, 0.35, 0.2])))  # an orange
    exposure = 0.4
    frame = raw.read(_patch_dng(tmp_path / "patch.dng", xyz, sensor, exposure))
    np.testing.assert_allclose(frame.xyz_to_camera, sensor.matrix, atol=1e-4)  # LibRaw's own table

    got = gs.preprocess(frame, "xyz", min_side=32, max_side=64).mean(dim=(1, 2)).double().numpy()
    # the synthetic sensor scales camera RGB so that a D65 white has green = 1 (synth.xyz_to_camera)
    white_green = (sensor.matrix @ synth.linear_srgb_to_xyz(np.ones(3)))[1]
    np.testing.assert_allclose(got, xyz * exposure / white_green, rtol=2e-3)

    backwards = gs.preprocess(frame, "xyz-backwards", min_side=32, max_side=64).mean(dim=(1, 2)).double().numpy()
    assert np.abs(_chromaticity(backwards) - _chromaticity(xyz)).max() > 0.03


def test_preprocess_sizes_and_kinds(tmp_path):
    sensor = synth.PRESETS["NIKON D750"]
    rng = np.random.default_rng(0)
    scene, _, _ = synth.render_street_scene(rng, 64, 96)
    path = synth.write_dng(tmp_path / "s.dng", synth.render_raw(scene, sensor, 0.03, 3200, rng), sensor)
    frame = raw.read(path)
    packed = gs.preprocess(frame, "raw", min_side=32, max_side=64)
    assert packed.shape == (3, 32, 48) and packed.dtype == torch.float32
    # no gain: the packed values are the mosaic's own (greens averaged)
    assert float(packed[0].mean()) == pytest.approx(float(frame.mosaic[0::2, 0::2].mean()), rel=1e-5)
    assert gs.preprocess(frame, "xyz", 64, 128).shape == (3, 64, 96)  # short side 32 → 64
    conventional = gs.preprocess(frame, "conventional", 32, 64)
    assert conventional.shape == (3, 32, 48) and 0 <= float(conventional.min()) and float(conventional.max()) <= 1
    with pytest.raises(ValueError, match="kind"):
        gs.preprocess(frame, "srgb", 32, 64)


def test_real_annotations_split_counts(fixtures):
    root = fixtures / "raw-nod"
    for (camera, split), n in REAL_COUNTS.items():
        _, json_path = data.raw_nod_paths(root, camera, split)
        assert len(data.read_raw_nod(json_path)) == n, (camera, split)
    table = data.split_table(root)
    assert {key: int(table.loc[key, "images"]) for key in REAL_COUNTS} == REAL_COUNTS
    assert table.loc[("Nikon", "test"), "degenerate boxes dropped"] == 1  # the zero-height box of DSC_0674
    assert table.loc[("Sony", "train"), "used here"] == "GenISP training"
    assert table.loc[("Nikon", "test"), "used here"] == "Table 1 (unseen camera)"
    assert table.loc[("Sony", "val"), "used here"] == "-"


def test_real_box_scaled_into_the_800x1200_image(fixtures):
    json_path = fixtures / "raw-nod" / "annotations" / "Nikon" / "raw_new_Nikon750_test.json"
    doc = json.loads(json_path.read_text())
    ann = doc["annotations"][0]
    image = next(im for im in doc["images"] if im["id"] == ann["image_id"])
    height, width = image["height"], image["width"]
    assert (height, width) == (2624, 3936)
    size = raw.retinanet_resize_shape(height // 2, width // 2)  # the packed frame, resized
    assert size == (800, 1200)
    x, y, w, h = ann["bbox"]
    expected = torch.tensor([[x * 1200 / 3936, y * 800 / 2624, (x + w) * 1200 / 3936, (y + h) * 800 / 2624]])

    annotations = data.read_raw_nod(json_path)
    item = next(im for im in annotations.images if im.id == ann["image_id"])
    target = {"boxes": torch.from_numpy(item.boxes), "labels": torch.from_numpy(item.labels),
              "image_size": (item.height, item.width)}
    scaled = data.scale_target(target, size)
    match = (scaled["boxes"] - expected).abs().max(dim=1).values.argmin()
    torch.testing.assert_close(scaled["boxes"][match], expected[0], atol=1e-3, rtol=0)
    assert annotations.dropped == 1  # the zero-height box of DSC_0674


def test_augment_moves_boxes_with_the_image():
    image = torch.zeros(3, 96, 144)
    box = torch.tensor([[40.0, 30.0, 80.0, 70.0]])
    image[:, 30:70, 40:80] = 1.0
    target = {"boxes": box, "labels": torch.tensor([1])}
    moved = 0
    for seed in range(8):
        out, t = gs.augment(image, target, np.random.default_rng(seed))
        assert out.shape == image.shape and float(out.min()) >= 0
        assert len(t["boxes"]) == 1
        ys, xs = torch.nonzero(out[1] > 0.5 * out[1].max(), as_tuple=True)
        found = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        torch.testing.assert_close(t["boxes"][0], found, atol=2.5, rtol=0)
        moved += not torch.allclose(t["boxes"][0], box[0])
    assert moved >= 6


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    import os

    old = os.environ.get("REPROLIB_DATA")
    os.environ["REPROLIB_DATA"] = str(tmp_path_factory.mktemp("data"))
    try:
        yield data.prepare("raw-nod-mini", params=TINY_DATA)
    finally:
        if old is None:
            os.environ.pop("REPROLIB_DATA", None)
        else:
            os.environ["REPROLIB_DATA"] = old


def test_raw_nod_inputs_scale_boxes_with_packing(tiny_root):
    annotations = data.read_raw_nod(data.raw_nod_paths(tiny_root, "Sony", "train")[1])
    inputs = gs.RawNODInputs(tiny_root, "Sony", "train", kind="xyz", min_side=32, max_side=64, in_memory=True)
    assert len(inputs) == TINY_DATA["sony"][0]
    image, target = inputs[0]
    assert image.shape == (3, 32, 48) and target["size"] == (32, 48)
    torch.testing.assert_close(target["boxes"], torch.from_numpy(annotations.images[0].boxes) / 2)
    assert inputs[0][0] is image  # kept in memory
    streamed = gs.RawNODInputs(tiny_root, "Sony", "train", kind="xyz", min_side=32, max_side=64)
    assert streamed[0][0] is not streamed[0][0] and torch.equal(streamed[0][0], image)


def test_step_batches_are_deterministic_and_cover_each_epoch(tiny_root):
    inputs = gs.RawNODInputs(tiny_root, "Sony", "train", kind="raw", min_side=32, max_side=64, in_memory=True)
    batches = gs.StepBatches(inputs, batch_size=4, seed=3)
    assert batches.steps_per_epoch == 2
    assert sorted(np.concatenate([batches.indices(0), batches.indices(1)])) == list(range(8))
    for step in range(6):  # the shared sampler, on the GenISP epoch-order stream
        assert np.array_equal(batches.indices(step), train.epoch_batch(8, 4, 3, train.STREAMS["genisp_epoch_order"], step))
    a, b = batches(5), gs.StepBatches(inputs, batch_size=4, seed=3)(5)
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
    assert not all(torch.equal(x, y) for x, y in zip(a[0], batches(4)[0]))


def _genisp_parameters(**changes) -> dict:
    P = {k: p.profiles["smoke"] for k, p in gs.PARAMETERS.items() if k != "profile"}
    return {**P, "profile": "smoke", "deterministic": True, **changes}


def test_training_in_dataloader_workers_is_the_same_run(tiny_root, tmp_path, monkeypatch):
    inputs = gs.RawNODInputs(tiny_root, "Sony", "train", kind="raw", min_side=32, max_side=64)
    detector = detect.freeze(detect.mini_retinanet(32, 64))
    states = []
    for workers in (0, 1):
        monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / f"results-{workers}"))
        P = _genisp_parameters(batch_size=4, epochs=1, num_workers=workers)
        model, _ = gs.train_genisp(detector, inputs, P, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_training_through_the_frozen_detector_changes_only_genisp(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    torch.manual_seed(0)
    detector = detect.freeze(detect.mini_retinanet(32, 64))
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    # the 3 Nikon test images keep this cheap (GenISP's trunks always see 256×256)
    inputs = gs.RawNODInputs(tiny_root, "Nikon", "test", kind="xyz", min_side=32, max_side=64, in_memory=True)

    # one step by hand: gradients reach GenISP, none reach (or exist in) the detector
    from reprolib.models.genisp import GenISP

    model = GenISP()
    loss = gs.genisp_loss(model, detector, gs.StepBatches(inputs, 2, 0)(0), gray_world_weight=0.1)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert all(p.grad is None for p in detector.parameters())

    model, history = gs.train_genisp(detector, inputs, _genisp_parameters(epochs=2, batch_size=1), progress=False)
    assert [p["step"] for p in history.curves["loss"]] == [3, 6]  # one point per epoch
    after = detector.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "a detector weight or statistic changed"


def test_train_genisp_refuses_an_unfrozen_detector(tiny_root):
    inputs = gs.RawNODInputs(tiny_root, "Sony", "train", kind="raw", min_side=32, max_side=64)
    with pytest.raises(ValueError, match="frozen"):
        gs.train_genisp(detect.mini_retinanet(32, 64), inputs, _genisp_parameters(), progress=False)


def test_detection_row_on_a_genisp_row(tiny_root):
    torch.manual_seed(0)
    detector = detect.freeze(detect.mini_retinanet(32, 64))
    test = gs.RawNODInputs(tiny_root, "Nikon", "test", kind="raw", min_side=32, max_side=64)
    r = evaluate.detection_row(detector, test, keep=2)
    assert set(r) >= {"AP", "AP50", "AP75", "input_mean", "input_std", "examples", "predictions"}
    assert len(r["predictions"]) == len(test) and len(r["examples"]) == 2
    assert 0 < r["input_mean"] < 0.2  # dark raw, fed as it is
    table = gs.results_table({"raw": r}, [row for row in gs.ROWS if row[0] == "raw"])
    assert table.iloc[0]["AP"] == r["AP"] and table.iloc[0]["input mean"] == r["input_mean"]


def test_parameters_resolve_for_every_profile_and_reject_unknown_names():
    for profile in study.PROFILES:
        p = study.resolve_parameters("genisp", {"profile": profile}, gs.PARAMETERS)
        assert p["epochs"] >= 1 and p["resize_min"] <= p["resize_max"]
    full = study.resolve_parameters("genisp", {"profile": "full"}, gs.PARAMETERS)
    assert (full["resize_min"], full["resize_max"]) == gs.PAPER_RESIZE and full["lr"] == 1e-2
    assert full["epochs"] == 15 and full["batch_size"] == 8 and full["detector"] == "full"
    with pytest.raises(ValueError, match="unknown parameter"):
        study.resolve_parameters("genisp", {"profile": "mini", "epoch": 3}, gs.PARAMETERS)
    with pytest.raises(ValueError, match="detector"):
        study.resolve_parameters("genisp", {"profile": "mini", "detector": "yolo"}, gs.PARAMETERS)
    for bad in ({"device": "gpu0"}, {"epochs": 0}, {"gray_world_weight": -1.0}, {"num_workers": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            study.resolve_parameters("genisp", {"profile": "mini", **bad}, gs.PARAMETERS)


def test_mini_detector_below_the_well_lit_bar_stops_the_run(tiny_root, monkeypatch):
    seen = {}

    def fake_pretrain(cfg):
        seen["cfg"] = cfg
        return detect.freeze(detect.mini_retinanet(cfg.min_size, cfg.max_size)), {"well_lit": {"AP50": 0.2}}

    monkeypatch.setattr(detect, "pretrain_mini_detector", fake_pretrain)
    P = study.resolve_parameters("genisp", {"profile": "smoke", "min_well_lit_ap50": 0.5}, gs.PARAMETERS)
    with pytest.raises(RuntimeError, match="well-lit AP50"):
        gs.build_detector(tiny_root, P)
    # its scenes have the size the pipeline feeds it: the packed 32×48 training images resized by 64/128
    assert (seen["cfg"].height, seen["cfg"].width, seen["cfg"].steps) == (64, 96, 10)
    detector, info = gs.build_detector(tiny_root, {**P, "min_well_lit_ap50": 0.1})
    assert detect.is_frozen(detector) and info["well_lit"]["AP50"] == 0.2


def test_table_rows_follow_the_switches():
    ids = lambda rows: [r[0] for r in rows]
    assert ids(gs.table_rows()) == ["conventional", "raw", "raw-cst", "genisp-no-cst", "genisp"]
    assert ids(gs.table_rows(use_cst=False)) == ["conventional", "raw", "genisp-no-cst"]
    kinds = {r[0]: r[2] for r in gs.table_rows(cst_matrix="backwards")}
    assert kinds["genisp"] == kinds["raw-cst"] == "xyz-backwards" and kinds["genisp-no-cst"] == "raw"
