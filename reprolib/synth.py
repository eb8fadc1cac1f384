"""Synthetic sensors and data sets that every loader reads exactly like the real ones (real DNGs
read by LibRaw, or the real set's own files, layout and annotations): the ``mini`` profile runs
the real data's code path. One frame (:func:`render_raw`)::

    clean sRGB scene [0, 1] ─inverse gamma─> linear sRGB ─> XYZ (D65) ─camera's XYZ→camera matrix─>
      camera RGB ─CFA mosaic─> × exposure ─Poisson–Gaussian noise (electrons, ISO)─> DN ─> DNG
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import matplotlib
import numpy as np
import skimage.io
import tifffile
from PIL import Image
from skimage.transform import resize

__all__ = ["SensorPreset", "PRESETS", "PHONE_PRESETS", "preset", "srgb_to_linear", "linear_to_srgb",
           "linear_srgb_to_xyz", "xyz_to_linear_srgb", "xyz_to_camera", "camera_neutral", "mosaic", "render_raw",
           "write_dng", "scene_library", "random_scene", "render_street_scene", "write_sid_dataset",
           "write_raw_nod_dataset", "COCO_CATEGORIES", "DSLR_LOOK", "dslr_rendering", "write_zurich_dataset"]

# sRGB (D65) <-> XYZ, IEC 61966-2-1
_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_SRGB = np.linalg.inv(_SRGB_TO_XYZ)


@dataclass(frozen=True)
class SensorPreset:
    """A camera's raw format and noise model: photon shot noise (Poisson in electrons) and read
    noise before and after the ISO gain. Order-of-magnitude values from public sensor tables
    (photonstophotos.net, sensorgen.info): a plausible noise scale, not a calibration."""

    make: str  # make and model go into the DNG, so that LibRaw finds the camera's colour matrix
    model: str
    cfa: str  # 2×2 pattern, e.g. 'RGGB'
    black_level: int  # DN
    white_level: int  # DN
    xyz_to_camera: tuple  # 3×3 row-major, rows R, G, B: LibRaw's rgb_xyz_matrix of the camera
    base_iso: int  # electrons per unit of normalised signal at ISO s: full_well_e · base_iso / s
    full_well_e: float
    read_noise_e: float  # before the ISO gain (electrons, std)
    read_noise_dn: float  # after the ISO gain (DN, std)

    @property
    def matrix(self) -> np.ndarray:
        """:attr:`xyz_to_camera` as a ``3×3`` float64 array."""
        return np.asarray(self.xyz_to_camera, dtype=np.float64).reshape(3, 3)

    def noise_params(self, iso: float) -> tuple[float, float]:
        """``(shot, read)`` of the normalised model ``var(x) = shot · x + read`` at ``iso``
        (``x`` black-subtracted, divided by ``white − black``)."""
        electrons_per_unit = self.full_well_e * self.base_iso / float(iso)
        dn_per_unit = self.white_level - self.black_level
        shot = 1.0 / electrons_per_unit
        read = (self.read_noise_e / electrons_per_unit) ** 2 + (self.read_noise_dn / dn_per_unit) ** 2
        return shot, read


#: Presets for the cameras of the studies. Matrices: LibRaw 0.22's table (what rawpy returns).
PRESETS: dict[str, SensorPreset] = {
    "SONY ILCE-7S": SensorPreset(  # SID's α7S II (LibRaw names the α7S and α7S II "ILCE-7S")
        make="SONY", model="ILCE-7S", cfa="RGGB", black_level=512, white_level=16383,
        xyz_to_camera=(0.5838, -0.1430, -0.0246, -0.3497, 1.1477, 0.2297, -0.0748, 0.1885, 0.5778),
        base_iso=100, full_well_e=150_000.0, read_noise_e=1.5, read_noise_dn=2.5),
    "SONY DSC-RX100M7": SensorPreset(  # RAW-NOD's RX100 VII (1-inch sensor: small full well)
        make="SONY", model="DSC-RX100M7", cfa="RGGB", black_level=800, white_level=16383,
        xyz_to_camera=(1.0315, -0.4390, -0.0937, -0.4859, 1.2734, 0.2365, -0.0734, 0.1537, 0.5997),
        base_iso=125, full_well_e=12_000.0, read_noise_e=2.0, read_noise_dn=1.5),
    "NIKON D750": SensorPreset(  # RAW-NOD's D750 (full frame)
        make="NIKON CORPORATION", model="NIKON D750", cfa="RGGB", black_level=600, white_level=15520,
        xyz_to_camera=(0.9020, -0.2890, -0.0715, -0.4535, 1.2436, 0.2348, -0.0934, 0.1919, 0.7086),
        base_iso=100, full_well_e=50_000.0, read_noise_e=2.5, read_noise_dn=1.0),
}

#: Phone sensors read without metadata: Zurich's Huawei P20 (Exmor IMX380, 10-bit, 64 DN pedestal,
#: a few thousand e⁻ of full well) has no LibRaw matrix, so it borrows the RX100 VII's (a stacked
#: Exmor RS too) and stays out of :data:`PRESETS`.
PHONE_PRESETS: dict[str, SensorPreset] = {"HUAWEI EML-L09": SensorPreset(
    make="HUAWEI", model="EML-L09", cfa="RGGB", black_level=64, white_level=1023,
    xyz_to_camera=PRESETS["SONY DSC-RX100M7"].xyz_to_camera,
    base_iso=100, full_well_e=4_500.0, read_noise_e=1.8, read_noise_dn=0.6)}


def preset(name: str) -> SensorPreset:
    """A preset of :data:`PRESETS` or :data:`PHONE_PRESETS` by ``'MAKE MODEL'`` name."""
    try:
        return PRESETS[name] if name in PRESETS else PHONE_PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown sensor preset {name!r}; known: {sorted(PRESETS) + sorted(PHONE_PRESETS)}") from None


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function, ``[0, 1]`` → linear ``[0, 1]``."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """sRGB transfer function, linear ``[0, 1]`` → ``[0, 1]``."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def linear_srgb_to_xyz(rgb: np.ndarray) -> np.ndarray:
    """Linear sRGB ``(…, 3)`` → CIE XYZ ``(…, 3)`` (D65)."""
    return rgb @ _SRGB_TO_XYZ.T


def xyz_to_linear_srgb(xyz: np.ndarray) -> np.ndarray:
    """CIE XYZ ``(…, 3)`` (D65) → linear sRGB ``(…, 3)`` (not clipped)."""
    return xyz @ _XYZ_TO_SRGB.T


def xyz_to_camera(xyz: np.ndarray, sensor: SensorPreset) -> np.ndarray:
    """CIE XYZ ``(…, 3)`` → the sensor's camera RGB ``(…, 3)``, scaled so that the D65 white
    (sRGB 1, 1, 1) gives green = 1. This is what the synthetic sensor records before exposure."""
    m = sensor.matrix
    white_g = (m @ linear_srgb_to_xyz(np.ones(3)))[1]
    return xyz @ m.T / white_g


def camera_neutral(sensor: SensorPreset) -> np.ndarray:
    """The camera RGB ``(3,)`` of a D65 white with green = 1: the DNG AsShotNeutral of our scenes.
    The as-shot white-balance multipliers are its reciprocal."""
    return xyz_to_camera(linear_srgb_to_xyz(np.ones(3)), sensor)


def mosaic(camera_rgb: np.ndarray, cfa: str) -> np.ndarray:
    """Sample ``H×W×3`` camera RGB through a 2×2 CFA → ``H×W`` mosaic (H, W even)."""
    h, w, _ = camera_rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"scene size must be even, got {h}×{w}")
    out = np.empty((h, w), dtype=camera_rgb.dtype)
    for i, c in enumerate(cfa):
        dy, dx = divmod(i, 2)
        out[dy::2, dx::2] = camera_rgb[dy::2, dx::2, "RGB".index(c)]
    return out


def render_raw(scene_srgb: np.ndarray, sensor: SensorPreset, exposure: float, iso: float,
               rng: np.random.Generator) -> np.ndarray:
    """Unprocess a clean sRGB scene ``H×W×3`` float in ``[0, 1]`` (H, W even) into the sensor's raw
    digital numbers: ``uint16`` ``H×W``, black level included, clipped to ``[0, white_level]``.
    ``exposure``: green level of a D65 white (0.2 well exposed, 0.2 / 300 SID's darkest); ``iso``
    sets the noise (:meth:`SensorPreset.noise_params`), drawn from ``rng``."""
    xyz = linear_srgb_to_xyz(srgb_to_linear(scene_srgb.astype(np.float64)))
    cam = np.clip(xyz_to_camera(xyz, sensor), 0.0, None)
    signal = mosaic(cam, sensor.cfa) * float(exposure)
    shot, read = sensor.noise_params(iso)
    electrons = rng.poisson(np.clip(signal, 0, None) / shot)
    noisy = electrons * shot + rng.normal(0.0, np.sqrt(read), size=signal.shape)
    dn = noisy * (sensor.white_level - sensor.black_level) + sensor.black_level
    return np.clip(np.rint(dn), 0, sensor.white_level).astype(np.uint16)


def _rational(x: float, denominator: int = 10000) -> tuple[int, int]:
    f = Fraction(float(x)).limit_denominator(denominator)
    return f.numerator, f.denominator


def write_dng(path: str | Path, bayer: np.ndarray, sensor: SensorPreset, *, iso: float | None = None,
              exposure_time: float | None = None, as_shot_neutral: np.ndarray | None = None) -> Path:
    """Write ``bayer`` (``uint16`` ``H×W``, DN with the black level) as a Bayer DNG that LibRaw
    reads back bit-exactly: the preset's levels, CFA, ColorMatrix1 (XYZ→camera, D65), Make/Model,
    AsShotNeutral (default :func:`camera_neutral`), ISO / ExposureTime when given. Deterministic."""
    path = Path(path)
    if bayer.dtype != np.uint16 or bayer.ndim != 2:
        raise ValueError(f"bayer must be a 2-D uint16 array, got {bayer.dtype} {bayer.shape}")
    neutral = camera_neutral(sensor) if as_shot_neutral is None else np.asarray(as_shot_neutral)
    cm = [v for x in sensor.matrix.ravel() for v in _rational(x)]
    an = [v for x in neutral for v in _rational(x)]
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),                         # DNGVersion 1.4
        (50707, "B", 4, (1, 1, 0, 0), True),                         # DNGBackwardVersion
        (33421, "H", 2, (2, 2), True),                               # CFARepeatPatternDim
        (33422, "B", 4, tuple("RGB".index(c) for c in sensor.cfa), True),  # CFAPattern
        (50714, "H", 1, (sensor.black_level,), True),                # BlackLevel
        (50717, "H", 1, (sensor.white_level,), True),                # WhiteLevel
        (50721, "2i", 9, tuple(cm), True),                           # ColorMatrix1 (XYZ→camera)
        (50778, "H", 1, (21,), True),                                # CalibrationIlluminant1 = D65
        (50728, "2I", 3, tuple(an), True),                           # AsShotNeutral
        (271, "s", 0, sensor.make, True),                            # Make
        (272, "s", 0, sensor.model, True),                           # Model
        (50708, "s", 0, f"{sensor.make} {sensor.model}", True),      # UniqueCameraModel
    ]
    if iso is not None:
        tags.append((34855, "H", 1, (int(round(iso)),), True))       # ISOSpeedRatings
    if exposure_time is not None:
        tags.append((33434, "2I", 1, _rational(exposure_time, 100000), True))  # ExposureTime
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, bayer, photometric="cfa", subfiletype=0, extratags=tags,
                     software=False, datetime=False, metadata=None)
    return path


@functools.cache
def scene_library() -> list[np.ndarray]:
    """The RGB photographs shipped inside scikit-image and matplotlib (no download), loaded once:
    a list of ``H×W×3`` float64 in ``[0, 1]``."""
    skdata, mpl = resources.files("skimage") / "data", Path(matplotlib.get_data_path()) / "sample_data"
    files = [skdata / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                                  "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "motorcycle_left.png",
                                  "motorcycle_right.png", "color.png", "logo.png")]
    files += [mpl / n for n in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")]
    out = []
    for im in (np.asarray(skimage.io.imread(str(f))) for f in files if f.is_file()):
        if im.ndim == 2:
            im = np.stack([im] * 3, -1)
        im = im[..., :3].astype(np.float64)
        im /= 255.0 if im.max() > 1.0 else 1.0
        out.append(im)
    if not out:
        raise RuntimeError("no bundled photographs found in scikit-image / matplotlib")
    return out


def _procedural(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random colour patches, gradients and fine stripes: texture and colour variety."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.empty((h, w, 3))
    base = rng.uniform(0.1, 0.9, 3)
    grad = rng.uniform(-0.5, 0.5, (2, 3))
    img[:] = base + yy[..., None] * grad[0] + xx[..., None] * grad[1]
    for _ in range(rng.integers(6, 16)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(h // 16 + 1, h // 3 + 2), rng.integers(w // 16 + 1, w // 3 + 2)
        colour = rng.uniform(0, 1, 3)
        if rng.random() < 0.5:
            mask = ((np.arange(h)[:, None] - y0) / ry) ** 2 + ((np.arange(w)[None] - x0) / rx) ** 2 < 1
        else:
            mask = np.zeros((h, w), bool)
            mask[max(0, y0 - ry):y0 + ry, max(0, x0 - rx):x0 + rx] = True
        if rng.random() < 0.3:  # fine stripes: high-frequency detail a denoiser must keep
            period = rng.integers(3, 9)
            stripes = ((np.arange(w)[None] // period) % 2).astype(bool)
            mask &= np.broadcast_to(stripes, mask.shape)
        img[mask] = colour
    return np.clip(img, 0, 1)


def random_scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A clean ``h×w×3`` sRGB scene in ``[0, 1]``: a random crop (random scale, flip) of a bundled
    photograph, or (one time in four) procedural content."""
    if rng.random() < 0.25:
        return _procedural(rng, h, w)
    lib = scene_library()
    src = lib[rng.integers(len(lib))]
    sh, sw = src.shape[:2]
    scale = rng.uniform(max(h / sh, w / sw), max(h / sh, w / sw) * 1.8)
    ch, cw = min(sh, int(np.ceil(h / scale))), min(sw, int(np.ceil(w / scale)))
    y0, x0 = rng.integers(0, sh - ch + 1), rng.integers(0, sw - cw + 1)
    crop = src[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.clip(resize(crop, (h, w), order=1, anti_aliasing=True), 0, 1)


def _log_uniform(rng: np.random.Generator, bounds: tuple) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


SID_SHORT_EXPOSURES = (0.1, 0.04, 0.033)  # with a 10 s long exposure: ratios 100, 250, 300 (303 clipped)
SID_ISOS = (100, 200, 400, 800, 1600, 3200)


def write_sid_dataset(root: str | Path, *, seed: int = 0, camera: str = "SONY ILCE-7S",
                      n_train: int = 24, n_test: int = 8, n_val: int = 4, height: int = 256,
                      width: int = 384, long_exposure: float = 10.0,
                      short_exposures: tuple = SID_SHORT_EXPOSURES, extra_bursts: int = 1) -> Path:
    """Write a SID-format data set (``sid-sony-mini``) into ``root``: SID's ``Sony/{short,long}/`` DNGs
    and ``Sony_{train,test,val}_list.txt`` (ids start with 0/1/2). Per scene: one long exposure
    (green mean 0.08–0.25 of white), one short exposure per time in ``short_exposures`` in burst
    ``00`` and ``extra_bursts`` more of the first time; noise at the scene's ISO."""
    sensor = preset(camera)
    root = Path(root)
    lists = {"train": [], "test": [], "val": []}
    for digit, (split, count) in enumerate((("train", n_train), ("test", n_test), ("val", n_val))):
        for k in range(count):
            scene_id = digit * 10000 + k + 1
            srng = np.random.default_rng([seed, scene_id])
            scene = random_scene(srng, height, width)
            iso = int(srng.choice(SID_ISOS))
            aperture = f"F{int(srng.choice([4, 5, 8, 9, 11, 14, 16]))}"
            target_mean = srng.uniform(0.08, 0.25)
            scene_g = mosaic(xyz_to_camera(linear_srgb_to_xyz(srgb_to_linear(scene)), sensor),
                             sensor.cfa)[0::2, 1::2].mean()
            exposure_long = target_mean / max(scene_g, 1e-3)
            long_name = f"{scene_id:05d}_00_{long_exposure:g}s.dng"
            write_dng(root / "Sony" / "long" / long_name, render_raw(scene, sensor, exposure_long, iso, srng),
                      sensor, iso=iso, exposure_time=long_exposure)
            shots = [(0, t) for t in short_exposures] + [(b + 1, short_exposures[0]) for b in range(extra_bursts)]
            for burst, t in shots:
                short_name = f"{scene_id:05d}_{burst:02d}_{t:g}s.dng"
                bayer = render_raw(scene, sensor, exposure_long * t / long_exposure, iso, srng)
                write_dng(root / "Sony" / "short" / short_name, bayer, sensor, iso=iso, exposure_time=t)
                lists[split].append(f"./Sony/short/{short_name} ./Sony/long/{long_name} ISO{iso} {aperture}")
    for split, rows in lists.items():
        (root / f"Sony_{split}_list.txt").write_text("\n".join(rows) + "\n")
    return root


_COCO = {  # supercategory: "id name, …" (COCO's ids have gaps)
    "person": "1 person", "vehicle": "2 bicycle, 3 car, 4 motorcycle, 5 airplane, 6 bus, 7 train, 8 truck, 9 boat",
    "outdoor": "10 traffic light, 11 fire hydrant, 13 stop sign, 14 parking meter, 15 bench",
    "animal": "16 bird, 17 cat, 18 dog, 19 horse, 20 sheep, 21 cow, 22 elephant, 23 bear, 24 zebra, 25 giraffe",
    "accessory": "27 backpack, 28 umbrella, 31 handbag, 32 tie, 33 suitcase",
    "sports": "34 frisbee, 35 skis, 36 snowboard, 37 sports ball, 38 kite, 39 baseball bat, 40 baseball glove, "
              "41 skateboard, 42 surfboard, 43 tennis racket",
    "kitchen": "44 bottle, 46 wine glass, 47 cup, 48 fork, 49 knife, 50 spoon, 51 bowl",
    "food": "52 banana, 53 apple, 54 sandwich, 55 orange, 56 broccoli, 57 carrot, 58 hot dog, 59 pizza, 60 donut, 61 cake",
    "furniture": "62 chair, 63 couch, 64 potted plant, 65 bed, 67 dining table, 70 toilet",
    "electronic": "72 tv, 73 laptop, 74 mouse, 75 remote, 76 keyboard, 77 cell phone",
    "appliance": "78 microwave, 79 oven, 80 toaster, 81 sink, 82 refrigerator",
    "indoor": "84 book, 85 clock, 86 vase, 87 scissors, 88 teddy bear, 89 hair drier, 90 toothbrush"}
#: COCO's 80 categories ``(id, name, supercategory)`` in id order — the list RAW-NOD's Nikon test
#: file carries.
COCO_CATEGORIES = [(int(i), name, sup) for sup, items in _COCO.items()
                   for i, name in (item.split(" ", 1) for item in items.split(", "))]


def _disk(img, cy, cx, r, colour, width=None):
    h, w = img.shape[:2]
    y0, y1 = max(0, int(cy - r - 1)), min(h, int(cy + r + 2))
    x0, x1 = max(0, int(cx - r - 1)), min(w, int(cx + r + 2))
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    m = d <= r if width is None else np.abs(d - r) <= width / 2
    img[y0:y1, x0:x1][m] = colour


def _line(img, y0, x0, y1, x1, colour, width):
    n = int(max(abs(y1 - y0), abs(x1 - x0))) + 1
    for t in np.linspace(0, 1, n):
        _disk(img, y0 + t * (y1 - y0), x0 + t * (x1 - x0), width / 2, colour)


def _rect(img, y0, x0, y1, x1, colour):
    h, w = img.shape[:2]
    img[max(0, int(y0)):min(h, int(y1)), max(0, int(x0)):min(w, int(x1))] = colour


def _draw_person(img, rng, x, y, hgt):
    """Person standing with feet at (x, y), height ``hgt``; returns its box [x1, y1, x2, y2]."""
    wid = hgt * rng.uniform(0.28, 0.38)
    skin = rng.uniform([0.55, 0.35, 0.25], [0.95, 0.75, 0.6])
    shirt, trousers = rng.uniform(0, 1, 3), rng.uniform(0, 0.6, 3)
    head_r = hgt * 0.075
    top = y - hgt
    _rect(img, y - hgt * 0.45, x - wid * 0.3, y, x - wid * 0.05, trousers)        # legs
    _rect(img, y - hgt * 0.45, x + wid * 0.05, y, x + wid * 0.3, trousers)
    _rect(img, top + hgt * 0.17, x - wid * 0.35, y - hgt * 0.42, x + wid * 0.35, shirt)  # torso
    _rect(img, top + hgt * 0.18, x - wid * 0.5, y - hgt * 0.5, x - wid * 0.36, shirt)   # arms
    _rect(img, top + hgt * 0.18, x + wid * 0.36, y - hgt * 0.5, x + wid * 0.5, shirt)
    _disk(img, top + head_r, x, head_r, skin)                                     # head
    return [x - wid * 0.5, top, x + wid * 0.5, y]


def _draw_bicycle(img, rng, x, y, size):
    """Bicycle with its wheels on the ground at y, centred on x; width ``size``."""
    r = size * 0.22
    colour = rng.uniform(0, 1, 3)
    lw = max(1.5, size * 0.03)
    xa, xb = x - size * 0.5 + r, x + size * 0.5 - r
    cy = y - r
    _disk(img, cy, xa, r, (0.08, 0.08, 0.08), width=max(2, lw * 1.5))
    _disk(img, cy, xb, r, (0.08, 0.08, 0.08), width=max(2, lw * 1.5))
    seat = (cy - r * 1.1, x - size * 0.08)
    bar = (cy - r * 1.2, xb - r * 0.35)
    for y0, x0, y1, x1 in ((cy, xa, *seat), (cy, xa, cy, x), (*seat, cy, x),
                           (seat[0] + r * 0.1, seat[1], bar[0] + r * 0.2, bar[1]),
                           (cy, x, bar[0] + r * 0.2, bar[1]), (*bar, cy, xb)):
        _line(img, y0, x0, y1, x1, colour, lw)
    return [x - size * 0.5, bar[0] - lw, x + size * 0.5, y]


def _draw_car(img, rng, x, y, length):
    """Car on the ground at y centred on x; returns its box."""
    body_h = length * rng.uniform(0.22, 0.3)
    cabin_h = length * rng.uniform(0.15, 0.2)
    colour = rng.uniform(0, 1, 3)
    wheel_r = length * 0.1
    body_top = y - wheel_r - body_h
    _rect(img, body_top, x - length / 2, y - wheel_r * 0.6, x + length / 2, colour)
    cab_x0, cab_x1 = x - length * rng.uniform(0.25, 0.32), x + length * rng.uniform(0.15, 0.25)
    _rect(img, body_top - cabin_h, cab_x0, body_top + 1, cab_x1, colour * 0.85)
    _rect(img, body_top - cabin_h * 0.8, cab_x0 + length * 0.03, body_top,
          cab_x1 - length * 0.03, (0.55, 0.65, 0.75))                               # windows
    _disk(img, y - wheel_r, x - length * 0.3, wheel_r, (0.05, 0.05, 0.05))
    _disk(img, y - wheel_r, x + length * 0.3, wheel_r, (0.05, 0.05, 0.05))
    _rect(img, body_top + body_h * 0.2, x + length / 2 - length * 0.04, body_top + body_h * 0.45,
          x + length / 2, (1.0, 0.95, 0.7))                                           # headlight
    return [x - length / 2, body_top - cabin_h, x + length / 2, y]


def render_street_scene(rng: np.random.Generator, height: int, width: int,
                        max_objects: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A well-lit procedural street scene with people, bicycles and cars (``raw-nod-mini``, GenISP's
    mini detector): ``(image, boxes, labels)``, ``H×W×3`` sRGB float ``[0, 1]``, ``N×4`` float
    ``[x1, y1, x2, y2]`` pixel boxes clipped to the image, ``N`` COCO ids (1 person, 2 bicycle, 3 car)."""
    h, w = height, width
    img = np.empty((h, w, 3))
    horizon = int(h * rng.uniform(0.35, 0.55))
    sky = rng.uniform([0.3, 0.4, 0.5], [0.7, 0.8, 0.95])
    img[:horizon] = sky * np.linspace(0.7, 1.1, horizon)[:, None, None]
    for _ in range(rng.integers(2, 6)):  # buildings with windows
        bx0 = rng.integers(0, w)
        bw = rng.integers(w // 10, w // 3)
        bh = rng.integers(horizon // 3, horizon + 1)
        bcol = rng.uniform(0.2, 0.7, 3)
        _rect(img, horizon - bh, bx0, horizon, bx0 + bw, bcol)
        for wy in range(horizon - bh + 4, horizon - 6, 10):
            for wx in range(bx0 + 3, bx0 + bw - 4, 9):
                if rng.random() < 0.5:
                    _rect(img, wy, wx, wy + 5, wx + 4, rng.uniform(0.6, 1.0, 3) * (1, 0.9, 0.6))
    ground = rng.uniform(0.25, 0.5) * np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.05, 0.05, 3)
    img[horizon:] = ground
    for yy in range(horizon, h, max(4, h // 24)):  # texture on the road
        img[yy, :] *= rng.uniform(0.85, 1.1)
    boxes, labels = [], []
    n = rng.integers(1, max_objects + 1)
    depth = np.sort(rng.uniform(0, 1, n))  # far to near, nearer objects drawn later and larger
    for d in depth:
        y = horizon + (h - horizon) * (0.15 + 0.85 * d)
        scale = (y - horizon) / (h - horizon + 1e-6)
        cls = int(rng.choice([1, 2, 3], p=[0.45, 0.25, 0.30]))
        x = rng.uniform(0.05, 0.95) * w
        draw, size = {1: (_draw_person, h * (0.25 + 0.45 * scale)),
                      2: (_draw_bicycle, h * (0.25 + 0.4 * scale)),
                      3: (_draw_car, w * (0.18 + 0.3 * scale))}[cls]
        box = np.clip(draw(img, rng, x, y, size), [0, 0, 0, 0], [w, h, w, h])
        if (box[2] - box[0]) >= 4 and (box[3] - box[1]) >= 4:
            boxes.append(box)
            labels.append(cls)
    img += rng.normal(0, 0.01, img.shape)  # slight texture everywhere
    return (np.clip(img, 0, 1), np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(labels, dtype=np.int64))


_RAW_NOD_HEADER = {  # the "info" and "licenses" of RAW-NOD's annotation files
    "info": {"description": "Synthetic stand-in in the format of the Raw Night Object Detection (RAW-NOD) "
                            "Dataset (GenISP: Neural ISP for Low-Light Machine Cognition, Morawski et al., "
                            "CVPR Workshops 2022); procedural scenes written by reprolib.synth",
             "url": "https://github.com/igor-morawski/RAW-NOD", "version": "1.0", "year": 2022,
             "contributor": "reprolib.synth (synthetic)", "date_created": "2020"},
    "licenses": [{"id": 1, "name": "Attribution-NonCommercial-ShareAlike License",
                  "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/"}]}
_RAW_NOD_FLAGS = ("isnoisy", "isoutoffocus", "ismotionblur", "isheavilyoccluded", "isextreme",
                  "isbacklit", "istruncated", "isconfusing")


def write_raw_nod_dataset(root: str | Path, *, seed: int = 0, height: int = 384, width: int = 576,
                          sony: tuple = (96, 16, 16), nikon: tuple = (16, 16, 64),
                          light: tuple = (0.01, 0.05), iso: tuple = (1600, 6400)) -> Path:
    """Write a RAW-NOD-format data set (``raw-nod-mini``) into ``root``: low-light DNGs of
    :func:`render_street_scene` from RX100 VII- and D750-like sensors (``sony`` / ``nikon``: (train,
    val, test) counts; ``light``, ``iso``: log-uniform ranges of the green level of a white and the
    ISO) with RAW-NOD's annotation files, names and quirks (Sony test: int ids and per-box flags;
    Nikon: string ids, its test file with 80 categories and one zero-height box)."""
    root = Path(root)
    cats3, cats80 = ([{"supercategory": s, "id": i, "name": n} for i, n, s in COCO_CATEGORIES[:k]]
                     for k in (3, len(COCO_CATEGORIES)))
    cameras = [("Sony", "SONY DSC-RX100M7", sony, "DSC{:05d}", "raw_new_Sony_RX100m7_{}.json",
                "raw_str_labeled_new_Sony_RX100m7_test.json"),
               ("Nikon", "NIKON D750", nikon, "DSC_{:04d}", "raw_new_Nikon750_{}.json", "raw_new_Nikon750_test.json")]
    for cam_index, (folder, preset_name, counts, stem_fmt, json_fmt, test_json) in enumerate(cameras):
        sensor = preset(preset_name)
        for split_index, (split, count) in enumerate(zip(("train", "val", "test"), counts)):
            images, annotations = [], []
            labelled_test = folder == "Sony" and split == "test"
            for k in range(count):
                stem = stem_fmt.format(sum(counts[:split_index]) + k + 1)  # numbered across the splits
                rng = np.random.default_rng([seed, cam_index, split_index, k])
                scene, boxes, labels = render_street_scene(rng, height, width)
                exposure, iso_k = _log_uniform(rng, light), _log_uniform(rng, iso)
                write_dng(root / folder / f"{stem}.dng", render_raw(scene, sensor, exposure, iso_k, rng), sensor,
                          iso=iso_k, exposure_time=float(rng.choice([1 / 30, 1 / 60, 1 / 125])))
                image_id = len(images) + 100 if labelled_test else stem
                images.append({"id": image_id, "width": width, "height": height,
                               "file_name": f"{stem}.dng", "license": 1})
                for box, label in zip(boxes, labels):
                    x1, y1, x2, y2 = (int(round(v)) for v in box)
                    ann = {"image_id": image_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
                           "category_id": int(label), "id": len(annotations), "iscrowd": 0,
                           "area": (x2 - x1) * (y2 - y1)}
                    if labelled_test:
                        ann.update({f: False for f in _RAW_NOD_FLAGS}, islabeled=True)
                    annotations.append(ann)
            nikon_test = folder == "Nikon" and split == "test"
            if nikon_test and images:  # the real file's quirk: a box of height 0 (DSC_0674)
                annotations.append({"image_id": images[0]["id"], "bbox": [width // 2, height // 2, 2, 0],
                                    "category_id": 1, "id": len(annotations), "iscrowd": 0, "area": 0})
            out = root / "annotations" / folder / (test_json if split == "test" else json_fmt.format(split))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({**_RAW_NOD_HEADER, "images": images,
                                       "categories": cats80 if nikon_test else cats3,
                                       "annotations": annotations}))
    return root


#: the target camera's look in :func:`dslr_rendering`: white-balance gains (linear R, G, B), a
#: saturation factor about the luminance, an exposure gain, and the strength of the S-curve
DSLR_LOOK = {"gains": (1.08, 1.0, 0.90), "saturation": 1.3, "exposure": 1.15, "contrast": 0.6}


def dslr_rendering(scene_srgb: np.ndarray, look: dict = DSLR_LOOK) -> np.ndarray:
    """The synthetic "DSLR" of ``zurich-mini`` (what PyNET learns), ``H×W×3`` float in ``[0, 1]`` →
    float64 in ``[0, 1]``: in linear sRGB warm gains, a saturation boost about the Rec. 709 luminance,
    an exposure gain; then the sRGB curve and the S-curve ``y = x + c·x(1−x)(2x−1)`` (``c ≤ 1``)."""
    linear = srgb_to_linear(scene_srgb) * np.asarray(look["gains"])
    luma = linear @ np.array([0.2126, 0.7152, 0.0722])
    linear = luma[..., None] + look["saturation"] * (linear - luma[..., None])
    x = linear_to_srgb(np.clip(linear * look["exposure"], 0.0, 1.0))
    c = look["contrast"]
    return np.clip(x + c * x * (1 - x) * (2 * x - 1), 0.0, 1.0)


def write_zurich_dataset(root: str | Path, *, seed: int = 0, n_train: int = 400, n_test: int = 40,
                         train_size: int = 64, test_size: int = 192, camera: str = "HUAWEI EML-L09",
                         exposure: tuple = (0.45, 0.75), iso: tuple = (50, 400)) -> Path:
    """Write a Zurich RAW-to-RGB-format data set (``zurich-mini``) into ``root``: ``<split>/huawei_raw/
    <i>.png`` (the phone's mosaic in DN, 16-bit grey) and ``<split>/canon/<i>.jpg`` (the aligned target,
    JPEG quality 95, 4:2:2): one :func:`random_scene` through :func:`render_raw` (green level of a
    white and ISO log-uniform in ``exposure`` / ``iso``) and through :func:`dslr_rendering`."""
    sensor = preset(camera)
    root = Path(root)
    for split_index, (split, count, size) in enumerate((("train", n_train, train_size),
                                                        ("test", n_test, test_size))):
        if size % 2:
            raise ValueError(f"{split} patch size must be even (whole 2×2 Bayer tiles), got {size}")
        (root / split / "huawei_raw").mkdir(parents=True, exist_ok=True)
        (root / split / "canon").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = np.random.default_rng([seed, split_index, i])
            scene = random_scene(rng, size, size)
            level, iso_i = _log_uniform(rng, exposure), _log_uniform(rng, iso)
            Image.fromarray(render_raw(scene, sensor, level, iso_i, rng)).save(
                root / split / "huawei_raw" / f"{i}.png")
            target = np.round(dslr_rendering(scene) * 255).astype(np.uint8)
            Image.fromarray(target).save(root / split / "canon" / f"{i}.jpg", quality=95,
                                         subsampling="4:2:2")
    return root
