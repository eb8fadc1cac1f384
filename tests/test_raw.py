"""reprolib.raw: decoding real and synthetic raws, packing orders, resize rule and resize, bad input."""
import shutil

import numpy as np
import pytest
import torch

from reprolib import raw, synth
from reprolib.raw import CFA_PATTERNS, RawReadError


# ----------------------------------------------------------------- real files

def test_blackmagic_dng_reads_as_rggb_with_black_removed(fixtures):
    import rawpy

    path = fixtures / "raw" / "Blackmagic.dng"
    frame = raw.read(path)
    assert frame.cfa == "RGGB"
    assert frame.black_level.tolist() == [[512, 512], [512, 512]]
    assert frame.white_level == 65535
    assert frame.mosaic.dtype == np.float32 and frame.mosaic.shape == (2176, 4128)
    assert 0.0 <= frame.mosaic.min() and frame.mosaic.max() <= 1.0
    with rawpy.imread(str(path)) as r:
        bayer = r.raw_image_visible.astype(np.float64)
    expected = np.clip((bayer - 512) / (65535 - 512), 0, 1)
    np.testing.assert_allclose(frame.mosaic, expected, atol=1e-6)
    np.testing.assert_allclose(frame.white_balance, [2.206, 1.0, 1.887], atol=2e-3)
    assert frame.camera_to_xyz is None  # the file has no rgb_xyz_matrix


def test_kodak_kdc_reads_as_grbg_and_unicode_path(fixtures, tmp_path):
    frame = raw.read(fixtures / "raw" / "RAW_KODAK_DC50_é.KDC")
    assert frame.cfa == "GRBG"
    assert frame.mosaic.shape == (512, 768)
    assert frame.white_level == 16383 and frame.black_level.max() == 0
    assert frame.camera_to_xyz is None
    packed = raw.pack(frame.mosaic, frame.cfa, "RGGB")
    # In GRBG the red pixel is at (0, 1): the first packed channel must be that plane.
    np.testing.assert_array_equal(packed[0], frame.mosaic[0::2, 1::2])
    np.testing.assert_array_equal(packed[3], frame.mosaic[1::2, 0::2])


def test_film_scanner_nef_is_rejected(fixtures):
    path = fixtures / "raw" / "Nikon_uncompressed.nef"
    with pytest.raises(RawReadError) as e:
        raw.read(path)
    assert "Nikon_uncompressed.nef" in str(e.value) and "not a Bayer" in str(e.value)


@pytest.mark.parametrize("keep", [0.0005, 0.3, 0.5, 0.9])
def test_truncated_dng_is_rejected(fixtures, tmp_path, keep):
    data = (fixtures / "raw" / "Blackmagic.dng").read_bytes()
    bad = tmp_path / "truncated.dng"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(RawReadError) as e:
        raw.read(bad)
    assert "truncated.dng" in str(e.value)
    assert "truncated" in str(e.value) or "unreadable" in str(e.value)


def test_corrupt_and_foreign_files_are_rejected(fixtures, tmp_path):
    data = bytearray((fixtures / "raw" / "Blackmagic.dng").read_bytes())
    data[20000:60000] = bytes(40000)
    corrupt = tmp_path / "corrupt.dng"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(RawReadError, match="corrupt.dng"):
        raw.read(corrupt)
    text = tmp_path / "notes.ARW"
    text.write_text("not a raw file\n" * 50)
    with pytest.raises(RawReadError, match="notes.ARW.*not a raw format"):
        raw.read(text)


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(RawReadError, match="missing.dng: no such file"):
        raw.read(tmp_path / "missing.dng")
    (tmp_path / "empty.dng").write_bytes(b"")
    with pytest.raises(RawReadError, match="empty.dng: empty file"):
        raw.read(tmp_path / "empty.dng")
    with pytest.raises(RawReadError, match="is a directory"):
        raw.read(tmp_path)


class _FakeRaw:
    """Just enough of a rawpy object to reach the X-Trans check."""

    def __init__(self, pattern, desc=b"RGBG"):
        import rawpy

        self.raw_type = rawpy.RawType.Flat
        self.raw_pattern = np.asarray(pattern)
        self.color_desc = desc

        class S:
            top_margin = left_margin = 0
        self.sizes = S()


def test_xtrans_and_cmyg_patterns_are_rejected(tmp_path):
    xtrans = np.array([[1, 1, 0, 1, 1, 2], [1, 1, 2, 1, 1, 0], [2, 0, 1, 0, 2, 1],
                       [1, 1, 2, 1, 1, 0], [1, 1, 0, 1, 1, 2], [0, 2, 1, 2, 0, 1]])
    with pytest.raises(RawReadError, match="X-Trans"):
        raw._bayer_pattern(_FakeRaw(xtrans), tmp_path / "x.RAF")
    with pytest.raises(RawReadError, match="CMYG"):
        raw._bayer_pattern(_FakeRaw([[0, 1], [3, 2]], b"CMYG"), tmp_path / "x.CRW")


# ----------------------------------------------------------------- packing

@pytest.mark.parametrize("cfa", CFA_PATTERNS)
@pytest.mark.parametrize("order", ["RGGB", "RGBG", "BGGR", "GRBG"])
def test_pack_unpack_round_trip_all_phases(cfa, order):
    rng = np.random.default_rng(0)
    m = rng.random((6, 10)).astype(np.float32)
    p = raw.pack(m, cfa, order)
    assert p.shape == (4, 3, 5)
    np.testing.assert_array_equal(raw.unpack(p, cfa, order), m)
    t = torch.from_numpy(m).expand(2, 6, 10)  # torch and batch dims work too
    pt = raw.pack(t, cfa, order)
    assert pt.shape == (2, 4, 3, 5)
    assert torch.equal(raw.unpack(pt, cfa, order), t)


@pytest.mark.parametrize("cfa", CFA_PATTERNS)
def test_pack_puts_each_colour_in_its_channel(cfa):
    """Build a mosaic whose value says its colour: R=1, G(red row)=2, B=3, G(blue row)=4."""
    m = np.zeros((4, 4))
    red_row = cfa.index("R") // 2
    for i, c in enumerate(cfa):
        dy, dx = divmod(i, 2)
        code = {"R": 1, "B": 3}.get(c, 2 if dy == red_row else 4)
        m[dy::2, dx::2] = code
    assert raw.pack(m, cfa, "RGGB")[:, 0, 0].tolist() == [1, 2, 4, 3]
    assert raw.pack(m, cfa, "RGBG")[:, 0, 0].tolist() == [1, 2, 3, 4]  # SID's order
    assert raw.pack_rgb(m, cfa)[:, 0, 0].tolist() == [1, 3, 3]  # greens averaged


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError, match="even"):
        raw.pack(np.zeros((5, 4)), "RGGB")
    with pytest.raises(ValueError, match="cfa must be one of"):
        raw.pack(np.zeros((4, 4)), "RGBX")
    with pytest.raises(ValueError, match="permutation"):
        raw.pack(np.zeros((4, 4)), "RGGB", order="RRGB")


# ----------------------------------------------------------------- resize rule

@pytest.mark.parametrize("hw, expected", [((3648, 5472), (800, 1200)), ((2624, 3936), (800, 1200)),
                                          ((800, 1333), (800, 1333)), ((1000, 3000), (444, 1333)),
                                          ((384, 576), (800, 1200))])
def test_retinanet_resize_shape(hw, expected):
    assert raw.retinanet_resize_shape(*hw) == expected


def test_resize_keep_aspect_follows_the_keras_retinanet_rule():
    nikon_packed = torch.rand(3, 1312, 1968)  # a D750 frame 2624×3936, packed
    assert raw.resize_keep_aspect(nikon_packed, 800, 1333).shape == (3, 800, 1200)
    x = torch.rand(3, 192, 288)
    assert raw.resize_keep_aspect(x, 192, 320) is x  # the miniature's rule keeps its size
    batch = torch.rand(2, 3, 32, 48)  # (…)×C×H×W: each image resized alone, bilinear, no anti-aliasing
    out = raw.resize_keep_aspect(batch, 64, 128)
    assert out.shape == (2, 3, 64, 96)
    torch.testing.assert_close(out[1], torch.nn.functional.interpolate(batch[1:], size=(64, 96), mode="bilinear",
                                                                      align_corners=False)[0])


def test_scale_boxes_numpy_and_torch():
    boxes = np.array([[100, 200, 300, 400]], dtype=np.float32)
    out = raw.scale_boxes(boxes, (3648, 5472), (800, 1200))
    np.testing.assert_allclose(out, [[100 * 1200 / 5472, 200 * 800 / 3648, 300 * 1200 / 5472,
                                      400 * 800 / 3648]])
    np.testing.assert_allclose(raw.scale_boxes(torch.from_numpy(boxes), (3648, 5472), (800, 1200)).numpy(),
                               out, rtol=1e-6)


# ----------------------------------------------------------------- synthetic DNG round trip

@pytest.mark.parametrize("name", sorted(synth.PRESETS))
def test_synthetic_dng_reads_back_exactly(tmp_path, name):
    import rawpy

    sensor = synth.PRESETS[name]
    rng = np.random.default_rng(1)
    bayer = synth.render_raw(synth.random_scene(rng, 64, 96), sensor, 0.2, 800, rng)
    path = synth.write_dng(tmp_path / "x.dng", bayer, sensor, iso=800, exposure_time=0.04)
    with rawpy.imread(str(path)) as r:
        np.testing.assert_array_equal(r.raw_image_visible, bayer)
        np.testing.assert_allclose(r.rgb_xyz_matrix[:3], sensor.matrix, atol=1e-4)
    frame = raw.read(path)
    assert frame.cfa == sensor.cfa
    assert frame.white_level == sensor.white_level
    assert np.all(frame.black_level == sensor.black_level)
    np.testing.assert_allclose(frame.white_balance, 1 / synth.camera_neutral(sensor), rtol=1e-3)
    expected = np.clip((bayer.astype(np.float64) - sensor.black_level)
                       / (sensor.white_level - sensor.black_level), 0, 1)
    np.testing.assert_allclose(frame.mosaic, expected, atol=1e-6)
    assert frame.iso == 800 and frame.exposure_time == pytest.approx(0.04)


def test_sony_a7s_colour_matrix_and_its_inverse(tmp_path):
    sensor = synth.PRESETS["SONY ILCE-7S"]
    path = synth.write_dng(tmp_path / "a7s.dng", np.full((32, 48), 1000, np.uint16), sensor)
    frame = raw.read(path)
    assert frame.make == "SONY" and frame.model == "ILCE-7S"
    assert np.abs(frame.xyz_to_camera).sum() > 0
    product = frame.camera_to_xyz @ frame.xyz_to_camera
    row_scale = np.diag(product)
    np.testing.assert_allclose(product, np.diag(row_scale), atol=1e-9)
    np.testing.assert_allclose(row_scale, 1.0, atol=1e-9)
    # camera → XYZ then XYZ → camera is the identity on colours too
    cam = np.array([[0.2, 0.5, 0.3], [0.9, 0.1, 0.05]])
    np.testing.assert_allclose((cam @ frame.camera_to_xyz.T) @ frame.xyz_to_camera.T, cam, atol=1e-12)


def test_conventional_pipeline_renders_the_scene(tmp_path):
    """LibRaw's rendering of a well exposed synthetic frame resembles the clean scene: the
    unprocessing (colour matrix, white balance) agrees with what LibRaw does in reverse."""
    sensor = synth.PRESETS["SONY ILCE-7S"]
    rng = np.random.default_rng(3)
    scene = synth._procedural(rng, 128, 192)
    bayer = synth.render_raw(scene, sensor, 0.9, 100, rng)
    path = synth.write_dng(tmp_path / "x.dng", bayer, sensor)
    rgb = raw.conventional_pipeline(path)
    assert rgb.shape == (128, 192, 3) and rgb.dtype == np.float32
    # compare in linear light, inside flat patches (away from demosaicing edges)
    lin_out = synth.srgb_to_linear(rgb)  # LibRaw's BT.709 curve ~ sRGB: compare after a gain fit
    lin_in = synth.srgb_to_linear(scene) * 0.9
    gain = np.median(lin_out[8:-8, 8:-8]) / np.median(lin_in[8:-8, 8:-8])
    assert 0.5 < gain < 2.0
    corr = [np.corrcoef(lin_out[8:-8, 8:-8, c].ravel(), lin_in[8:-8, 8:-8, c].ravel())[0, 1] for c in range(3)]
    assert min(corr) > 0.9, corr


def test_conventional_pipeline_amplifies(tmp_path):
    sensor = synth.PRESETS["SONY ILCE-7S"]
    rng = np.random.default_rng(4)
    bayer = synth.render_raw(synth._procedural(rng, 64, 96), sensor, 0.002, 100, rng)
    path = synth.write_dng(tmp_path / "dark.dng", bayer, sensor)
    dark = raw.conventional_pipeline(path)
    bright = raw.conventional_pipeline(path, amplification=100)
    assert bright.mean() > 5 * dark.mean()
