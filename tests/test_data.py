"""Tests of reprolib.data: the manifest, prepare / verify, and the SID and RAW-NOD readers.

Nothing here downloads: the download path is exercised with pooch.retrieve replaced by a local
copy, and every other test runs with the files already present (copies of ../shared/fixtures made
in tmp_path) or with downloads disabled.
"""
from __future__ import annotations

import builtins
import gc
import hashlib
import json
import os
import shutil
import sys
import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from reprolib import data, raw

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
SID = FIXTURES / "sid"
NOD = FIXTURES / "raw-nod" / "annotations"


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"fixture {path} not available (it lives beside the checkout in ../shared/fixtures)")
    return path


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Nothing is written to the home folder and nothing is downloaded."""
    monkeypatch.setenv("REPROLIB_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("REPROLIB_MANIFEST", raising=False)
    monkeypatch.delenv("REPROLIB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError(f"a test tried to download: {args} {kwargs}")

    import pooch

    monkeypatch.setattr(pooch, "retrieve", no_network)


# ------------------------------------------------------------------------------------------------
# Manifest
# ------------------------------------------------------------------------------------------------

REAL_AND_WEIGHTS = ["sid-sony", "sid-fuji", "sid-lists", "raw-nod", "raw-nod-annotations",
                    "zurich-raw-to-rgb", "lle-official-weights", "retinanet-resnet50-fpn-v2-coco",
                    "vgg19-imagenet"]
SYNTHETIC = ["sid-sony-mini", "raw-nod-mini", "zurich-mini"]


def test_manifest_has_every_entry_with_its_fields():
    manifest = data.load_manifest()
    assert set(REAL_AND_WEIGHTS + SYNTHETIC) <= set(manifest)
    for name in REAL_AND_WEIGHTS:
        e = manifest[name]
        for key in ("title", "description", "studies", "source", "licence", "citation", "size",
                    "checksums", "how_to_get", "layout"):
            assert e.get(key), f"{name}: empty {key}"
        assert e["kind"] in ("real", "weights")
        for item in e["layout"]:
            if "url" in item:  # anything downloadable is checked, fully or by torchvision's prefix
                assert item.get("sha256") or item.get("sha256_prefix"), (name, item)
                assert item["url"].startswith("https://")
    for name in SYNTHETIC:
        e = manifest[name]
        assert e["kind"] == "synthetic"
        assert e["generator"].startswith("reprolib.synth:write_")
        assert e["params"]["seed"] == 0
        assert "synthetic" in e["description"].lower() and "real" in e["description"].lower()


def test_manifest_checksums_and_sizes_match_the_fixture_copies():
    sums = needs(FIXTURES / "SHA256SUMS").read_text().split("\n")
    sums = {line.split()[1][2:]: line.split()[0] for line in sums if line.strip()}
    where = {"sid-lists": "sid/", "raw-nod-annotations": "raw-nod/", "lle-official-weights": "lle/"}
    checked = 0
    for name, prefix in where.items():
        for item in data.entry(name)["layout"]:
            fixture = prefix + item["path"]
            assert item["sha256"] == sums[fixture], fixture
            assert item["size_bytes"] == (FIXTURES / fixture).stat().st_size, fixture
            checked += 1
    assert checked == 6 + 12 + 1
    # the copies inside the real data set entries are the same files
    for name, small in (("sid-sony", "sid-lists"), ("sid-fuji", "sid-lists"), ("raw-nod", "raw-nod-annotations")):
        known = {i["path"]: i for i in data.entry(small)["layout"]}
        for item in data.entry(name)["layout"]:
            if "path" in item:
                assert item == known[item["path"]]


def test_manifest_torchvision_weights_are_torchvision_s():
    from torchvision.models import VGG19_Weights
    from torchvision.models.detection import RetinaNet_ResNet50_FPN_V2_Weights

    for name, weights in (("retinanet-resnet50-fpn-v2-coco", RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1),
                          ("vgg19-imagenet", VGG19_Weights.IMAGENET1K_V1)):
        (item,) = data.entry(name)["layout"]
        assert item["url"] == weights.url
        assert item["path"] == weights.url.rsplit("/", 1)[1]
        # torch.hub's convention: the file name ends with the first hex digits of the sha256
        assert item["path"].rsplit("-", 1)[1].startswith(item["sha256_prefix"])


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(data.UnknownEntryError) as info:
        data.entry("sid-sonyy")
    message = str(info.value)
    assert "sid-sonyy" in message and "Did you mean 'sid-sony'" in message
    for name in REAL_AND_WEIGHTS + SYNTHETIC:
        assert name in message
    with pytest.raises(data.UnknownEntryError):
        data.prepare("no-such-set")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    assert data.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("REPROLIB_DATA")
    assert data.cache_dir() == Path.home() / ".cache" / "reprolib"


def test_malformed_manifest_is_rejected(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    for text in ("x: {title: X, layout: [{path: a}]}",                     # no kind
                 "x: {kind: real, title: X, layout: [{path: a, glob: b}]}",  # path and glob
                 "x: {kind: synthetic, title: X, generator: nocolon}",
                 "x: [unclosed"):
        bad.write_text(text)
        with pytest.raises(data.ManifestError):
            data.load_manifest(bad)
    monkeypatch.setenv("REPROLIB_MANIFEST", str(bad))
    with pytest.raises(data.ManifestError):
        data.entry("x")


def test_manifest_table(tmp_path):
    table = data.manifest_table()
    assert list(table.columns) == ["name", "kind", "what", "studies", "licence", "citation", "size",
                                   "how to get", "sha256", "present"]
    assert set(table["name"]) == set(data.load_manifest())
    assert (table["present"] == "no").all()  # empty cache
    row = table.set_index("name")
    assert row.loc["lle-official-weights", "sha256"] == "e7a4f76cf12b"
    assert row.loc["raw-nod-annotations", "sha256"] == "12 files"
    assert row.loc["sid-sony", "sha256"] == "3 files"
    assert row.loc["raw-nod", "kind"] == "real" and row.loc["vgg19-imagenet", "kind"] == "weights"
    weights = needs(FIXTURES / "lle" / "weights")
    (tmp_path / "cache" / "lle-official-weights").mkdir(parents=True)
    shutil.copyfile(weights, tmp_path / "cache" / "lle-official-weights" / "weights")
    row = data.manifest_table().set_index("name")
    assert row.loc["lle-official-weights", "present"] == "yes"


# ------------------------------------------------------------------------------------------------
# Synthetic entries: generated once, stamped, regenerated when generator or params change
# ------------------------------------------------------------------------------------------------

GENERATOR = '''
import builtins
from pathlib import Path

CALLS = Path(__file__).with_name("calls.txt")


def write_toy(root, *, seed, n=3, fail_at=None, fail_with="RuntimeError", layout_ok=True):
    with open(CALLS, "a") as f:
        f.write(f"{seed} {n}\\n")
    short = Path(root) / "Sony" / "short"
    short.mkdir(parents=True)
    for i in range(n):
        if i == fail_at:
            raise getattr(builtins, fail_with)("generation interrupted")
        (short / f"{i:05d}_00_0.1s.dng").write_bytes(bytes([seed % 256]) * (100 + i))
    if layout_ok:
        (Path(root) / "Sony_test_list.txt").write_text("list\\n")
'''


class Toy:
    """A generator module on sys.path and a manifest with a synthetic entry 'toy-mini' using it."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.dir = tmp_path / "gen"
        self.dir.mkdir()
        self.module = f"toygen_{uuid.uuid4().hex[:8]}"
        self.source = self.dir / f"{self.module}.py"
        self.source.write_text(GENERATOR)
        monkeypatch.syspath_prepend(str(self.dir))
        self.manifest = tmp_path / "manifest.yaml"
        monkeypatch.setenv("REPROLIB_MANIFEST", str(self.manifest))
        self.write_manifest({"seed": 0})
        self.root = tmp_path / "cache" / "toy-mini"

    def write_manifest(self, params: dict) -> None:
        manifest = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
        manifest["toy-mini"] = {
            "kind": "synthetic", "title": "Toy", "description": "synthetic data in the real format",
            "generator": f"{self.module}:write_toy", "params": params, "how_to_get": "prepare",
            "layout": [{"glob": "Sony/short/*.dng", "min_count": 1}, {"path": "Sony_test_list.txt"}],
        }
        self.manifest.write_text(yaml.safe_dump(manifest))

    def calls(self) -> int:
        calls = self.dir / "calls.txt"
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.root.parent.glob(".toy-mini*"))


@pytest.fixture
def toy(tmp_path, monkeypatch):
    t = Toy(tmp_path, monkeypatch)
    yield t
    sys.modules.pop(t.module, None)


def test_synthetic_set_is_generated_once_with_a_stamp(toy):
    root = data.prepare("toy-mini")
    assert root == toy.root and toy.calls() == 1
    stamp = json.loads((root / data.STAMP_NAME).read_text())
    assert stamp["generator"] == f"{toy.module}:write_toy"
    assert stamp["params"] == {"seed": 0}
    assert stamp["code"] == hashlib.sha256(toy.source.read_bytes()).hexdigest()
    assert sorted(stamp["files"]) == ["Sony/short/00000_00_0.1s.dng", "Sony/short/00001_00_0.1s.dng",
                                      "Sony/short/00002_00_0.1s.dng", "Sony_test_list.txt"]
    for rel, info in stamp["files"].items():
        assert info["sha256"] == hashlib.sha256((root / rel).read_bytes()).hexdigest()
        assert info["size"] == (root / rel).stat().st_size
    assert data.prepare("toy-mini") == root and toy.calls() == 1
    report = data.verify("toy-mini")
    assert report["files"] == report["sha256_checked"] == 4
    assert report["counts"] == {"Sony/short/*.dng": 3, "Sony_test_list.txt": 1}
    assert report["fingerprint"] == stamp["fingerprint"] == data.fingerprint(root)
    assert toy.leftovers() == []


def test_synthetic_set_is_regenerated_when_params_or_code_change(toy):
    data.prepare("toy-mini")
    toy.write_manifest({"seed": 0, "n": 4})
    data.prepare("toy-mini")
    assert toy.calls() == 2 and len(list((toy.root / "Sony" / "short").iterdir())) == 4
    data.prepare("toy-mini")
    assert toy.calls() == 2
    toy.source.write_text(GENERATOR + "\n# a change in the generator's code\n")
    data.prepare("toy-mini")
    assert toy.calls() == 3
    # parameters given by a notebook (e.g. a smoke profile) get their own folder
    other = data.prepare("toy-mini", params={"n": 2})
    assert other != toy.root and other.name.startswith("toy-mini-") and toy.calls() == 4
    assert len(list((other / "Sony" / "short").iterdir())) == 2
    data.prepare("toy-mini")
    assert toy.calls() == 4  # the manifest's set was left alone
    assert toy.leftovers() == []


def test_missing_or_resized_file_triggers_regeneration(toy):
    root = data.prepare("toy-mini")
    (root / "Sony" / "short" / "00001_00_0.1s.dng").unlink()
    data.prepare("toy-mini")
    assert toy.calls() == 2
    (root / "Sony_test_list.txt").write_text("longer than before\n")
    data.prepare("toy-mini")
    assert toy.calls() == 3
    assert (root / "Sony_test_list.txt").read_text() == "list\n"


@pytest.mark.parametrize("fail_with", ["RuntimeError", "KeyboardInterrupt"])
def test_interrupted_generation_leaves_no_set_that_looks_complete(toy, fail_with):
    toy.write_manifest({"seed": 0, "fail_at": 1, "fail_with": fail_with})
    with pytest.raises(getattr(builtins, fail_with), match="interrupted"):
        data.prepare("toy-mini")
    assert not toy.root.exists() and toy.leftovers() == []
    # a complete set survives a failed regeneration untouched
    toy.write_manifest({"seed": 0})
    root = data.prepare("toy-mini")
    before = (root / data.STAMP_NAME).read_text()
    toy.write_manifest({"seed": 1, "fail_at": 2, "fail_with": fail_with})
    with pytest.raises(BaseException, match="interrupted"):
        data.prepare("toy-mini")
    assert (root / data.STAMP_NAME).read_text() == before and toy.leftovers() == []
    assert data.verify("toy-mini")["files"] == 4


def test_generator_output_must_have_the_layout(toy):
    toy.write_manifest({"seed": 0, "layout_ok": False})
    with pytest.raises(RuntimeError, match="Sony_test_list.txt: missing"):
        data.prepare("toy-mini")
    assert not toy.root.exists() and toy.leftovers() == []


def test_leftovers_of_a_dead_process_are_removed_but_foreign_folders_kept(toy):
    toy.root.parent.mkdir(parents=True)
    dead = toy.root.parent / ".toy-mini.partial-999999999-abcd"  # no such pid
    alive = toy.root.parent / f".toy-mini.partial-{os.getpid()}-abcd"
    dead.mkdir()
    alive.mkdir()
    data.prepare("toy-mini")
    assert not dead.exists() and alive.exists()
    shutil.rmtree(toy.root)
    toy.root.mkdir()
    (toy.root / "my-notes.txt").write_text("not a generated set")
    with pytest.raises(FileExistsError, match="not overwriting"):
        data.prepare("toy-mini")
    assert (toy.root / "my-notes.txt").exists()


def test_verify_recomputes_every_hash(toy):
    root = data.prepare("toy-mini")
    victim = root / "Sony" / "short" / "00002_00_0.1s.dng"
    content = bytearray(victim.read_bytes())
    content[50] ^= 0xFF  # same size: only the full check can see it
    victim.write_bytes(bytes(content))
    assert data.prepare("toy-mini") == root and toy.calls() == 1  # the cheap check passes
    with pytest.raises(data.DataVerificationError, match="00002_00_0.1s.dng: sha256"):
        data.verify("toy-mini")
    shutil.rmtree(root)
    data.prepare("toy-mini")
    (root / "Sony" / "short" / "extra.dng").write_bytes(b"x")
    with pytest.raises(data.DataVerificationError, match="extra.dng: not in the stamp"):
        data.verify("toy-mini")
    with pytest.raises(data.DataMissingError, match="prepare sid-sony-mini"):
        data.verify("sid-sony-mini", root / "nowhere")


def test_fingerprint_without_stamp_uses_names_and_sizes(tmp_path):
    folder = tmp_path / "set"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x.ARW").write_bytes(b"12345")
    (folder / "y.txt").write_bytes(b"1")
    (folder / ".hidden").write_bytes(b"ignored")
    first = data.fingerprint(folder)
    assert len(first) == 16 and data.fingerprint(folder) == first
    (folder / ".hidden").write_bytes(b"still ignored")
    assert data.fingerprint(folder) == first
    (folder / "y.txt").write_bytes(b"22")
    assert data.fingerprint(folder) != first
    (folder / "y.txt").write_bytes(b"1")
    (folder / "y.txt").rename(folder / "z.txt")
    assert data.fingerprint(folder) != first
    with pytest.raises(data.DataMissingError):
        data.fingerprint(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------
# Real data sets and small files: present / missing / corrupt, downloads disabled or mocked
# ------------------------------------------------------------------------------------------------

def copy_sid_lists(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for p in sorted(needs(SID).glob("*_list.txt")):
        shutil.copyfile(p, root / p.name)
    return root


def copy_nod_annotations(root: Path) -> Path:
    shutil.copytree(needs(NOD), root / "annotations", copy_function=shutil.copyfile)
    return root


def test_small_files_already_present_are_checked_not_downloaded(tmp_path):
    root = copy_sid_lists(tmp_path / "sid")
    assert data.prepare("sid-lists", root) == root
    report = data.verify("sid-lists", root)
    assert report["sha256_checked"] == report["files"] == 6
    assert report["bytes"] == 367030
    root = copy_nod_annotations(tmp_path / "nod")
    assert data.prepare("raw-nod-annotations", root) == root
    assert data.verify("raw-nod-annotations", root)["sha256_checked"] == 12
    (tmp_path / "w").mkdir()
    shutil.copyfile(needs(FIXTURES / "lle" / "weights"), tmp_path / "w" / "weights")
    assert data.prepare("lle-official-weights", tmp_path / "w") == tmp_path / "w"
    assert data.verify("lle-official-weights", tmp_path / "w")["sha256_checked"] == 1


def test_missing_small_file_with_downloads_disabled(tmp_path, monkeypatch):
    root = copy_sid_lists(tmp_path / "sid")
    (root / "Fuji_val_list.txt").unlink()
    with pytest.raises(data.DataMissingError) as info:
        data.prepare("sid-lists", root, download=False)
    message = str(info.value)
    assert "Fuji_val_list.txt: missing" in message and "Downloads are disabled" in message
    assert "https://github.com/cchen156/Learning-to-See-in-the-Dark/raw/0448b58/dataset/Fuji_val_list.txt" in message
    assert str(root / "Fuji_val_list.txt") in message
    assert isinstance(info.value, FileNotFoundError)
    monkeypatch.setenv("REPROLIB_OFFLINE", "1")
    with pytest.raises(data.DataMissingError, match="Downloads are disabled"):
        data.prepare("sid-lists", root)  # download=True, but the environment says offline
    with pytest.raises(data.DataMissingError, match="weights: missing"):
        data.prepare("lle-official-weights")


def test_corrupt_small_file_is_caught(tmp_path):
    root = copy_sid_lists(tmp_path / "sid")
    victim = root / "Sony_test_list.txt"
    text = victim.read_text()
    victim.write_text(text.replace("ISO200", "ISO400", 1))  # same size, other content
    with pytest.raises(data.DataMissingError, match="Sony_test_list.txt: sha256"):
        data.prepare("sid-lists", root, download=False)
    with pytest.raises(data.DataVerificationError, match="Sony_test_list.txt: sha256"):
        data.verify("sid-lists", root)


def test_download_goes_through_pooch_with_the_sha256(tmp_path, monkeypatch):
    import pooch

    calls = []

    def fake_retrieve(url, known_hash=None, fname=None, path=None, progressbar=False):
        calls.append((url, known_hash, fname, Path(path)))
        source = {"weights": FIXTURES / "lle" / "weights"}.get(fname, SID / str(fname))
        shutil.copyfile(needs(source), Path(path) / fname)
        return str(Path(path) / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    root = copy_sid_lists(tmp_path / "sid")
    (root / "Sony_train_list.txt").unlink()
    assert data.prepare("sid-lists", root) == root
    (url, known_hash, fname, path), = calls
    assert url.endswith("/0448b58/dataset/Sony_train_list.txt") and fname == "Sony_train_list.txt"
    assert known_hash == "sha256:96647f5eae580bc026c12d889276d7e8ca4fdbd32a024b5f7ae9ef83fe0ace65"
    assert path == root and data.verify("sid-lists", root)["sha256_checked"] == 6
    # default location: the cache
    weights = data.prepare("lle-official-weights")
    assert weights == tmp_path / "cache" / "lle-official-weights" and (weights / "weights").is_file()
    # torchvision weights: only the hash prefix in the file name is known, checked afterwards
    def wrong_file(url, known_hash=None, fname=None, path=None, progressbar=False):
        assert known_hash is None
        (Path(path) / fname).write_bytes(b"not the weights")
        return str(Path(path) / fname)

    monkeypatch.setattr(pooch, "retrieve", wrong_file)
    with pytest.raises(data.DataVerificationError, match="does not match the expected 5905b1c5"):
        data.prepare("retinanet-resnet50-fpn-v2-coco")
    assert not any((tmp_path / "cache" / "retinanet-resnet50-fpn-v2-coco").iterdir())

    def no_connection(url, **kwargs):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(pooch, "retrieve", no_connection)
    with pytest.raises(data.DataMissingError, match="could not download .*vgg19-dcbb9e9d.pth.*unreachable"):
        data.prepare("vgg19-imagenet")


@pytest.mark.parametrize("name, needle", [
    ("sid-sony", "https://drive.google.com/file/d/10kpAcvldtcb9G2ze5hTcF1odzu4V_Zvh"),
    ("sid-fuji", "Fuji.zip"),
    ("raw-nod", "https://docs.google.com/forms/d/1aIKTV6026daYFRtje7zcx4LeDz68AOcpWIH7XxNCICY/"),
    ("zurich-raw-to-rgb", "http://people.ee.ethz.ch/~ihnatova/pynet.html#dataset"),
])
def test_missing_real_data_set_says_what_where_and_how_big(tmp_path, name, needle):
    root = tmp_path / "not-here"
    with pytest.raises(data.DataMissingError) as info:
        data.prepare(name, root)
    message = str(info.value)
    assert needle in message and str(root) in message
    assert f"size: {data.entry(name)['size']}" in message
    assert "DATA_ROOT" not in message  # the steps name the user's folder
    for item in data.entry(name)["layout"]:
        assert str(root / item.get("glob", item.get("path"))) in message
    assert not root.exists()  # checking does not create anything


def touch_sid_files(root: Path, lists, only=None) -> int:
    """Empty placeholder files for every short / long file the lists name."""
    names = set()
    for list_path in lists:
        for line in Path(list_path).read_text().splitlines():
            names.update(line.split()[:2])
    if only:
        names = {n for n in names if only(n)}
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    return len(names)


def test_sid_sony_layout_counts_agree_with_the_lists(tmp_path):
    root = copy_sid_lists(tmp_path / "sid")
    touched = touch_sid_files(root, sorted(root.glob("Sony_*_list.txt")))
    assert touched == 2697 + 231
    assert data.prepare("sid-sony", root, download=False) == root
    report = data.verify("sid-sony", root)
    assert report["counts"]["Sony/short/*.ARW"] == 2697
    assert report["counts"]["Sony/long/*.ARW"] == 231
    assert report["sha256_checked"] == 3
    (root / "Sony" / "long" / "00001_00_10s.ARW").unlink()
    with pytest.raises(data.DataMissingError, match=r"Sony/long/\*.ARW: 230 files, expected at least 231"):
        data.prepare("sid-sony", root, download=False)


# ------------------------------------------------------------------------------------------------
# SID lists
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("camera, rows, scenes, burst00", [
    ("Sony", {"train": 1865, "val": 234, "test": 598}, {"train": 161, "val": 20, "test": 50},
     {"train": 280, "val": 36, "test": 93}),
    ("Fuji", {"train": 1655, "val": 218, "test": 524}, {"train": 135, "val": 17, "test": 41},
     {"train": 286, "val": 38, "test": 94}),
])
def test_read_sid_list_counts_on_the_official_lists(camera, rows, scenes, burst00):
    for split in ("train", "val", "test"):
        pairs = data.read_sid_list(needs(SID / f"{camera}_{split}_list.txt"))
        assert len(pairs) == rows[split]
        assert len({p.scene for p in pairs}) == scenes[split]
        assert sum(p.burst == 0 for p in pairs) == burst00[split]
        assert {p.split for p in pairs} == {split}  # scene id's first digit agrees with the file
        for p in pairs:
            assert p.ratio == pytest.approx(p.long_exposure / p.short_exposure)
            assert p.short.startswith(f"./{camera}/short/") and p.long.startswith(f"./{camera}/long/")


def test_read_sid_list_parses_a_row():
    first = data.read_sid_list(needs(SID / "Sony_train_list.txt"))[0]
    assert first == data.SIDPair(short="./Sony/short/00001_00_0.04s.ARW", long="./Sony/long/00001_00_10s.ARW",
                                 scene=1, burst=0, short_exposure=0.04, long_exposure=10.0, ratio=250.0,
                                 iso=200, aperture="F8", split="train")
    test = data.read_sid_list(SID / "Sony_test_list.txt")
    assert {p.short_exposure for p in test} == {0.033, 0.04, 0.1}
    assert {p.long_exposure for p in test} == {10.0, 30.0}
    # 10 s / 0.033 s is above SID's amplification cap of 300
    assert max(p.ratio for p in test) == pytest.approx(10 / 0.033)


@pytest.mark.parametrize("row, reason", [
    ("./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW ISO200", "expected 4 fields"),
    ("./Sony/short/00001_00_fast.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8", "is not <scene>"),
    ("./Sony/short/00001_00_0.1s.ARW ./Sony/long/00002_00_10s.ARW ISO200 F8", "paired with long exposure of scene 00002"),
    ("./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW 200 F8", "ISO field"),
    ("./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW ISO200 8", "aperture field"),
    ("./Sony/short/30001_00_0.1s.ARW ./Sony/long/30001_00_10s.ARW ISO200 F8", "does not start with 0, 1 or 2"),
])
def test_malformed_sid_row_names_file_and_line(tmp_path, row, reason):
    path = tmp_path / "bad_list.txt"
    good = "./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8"
    path.write_text(f"{good}\n\n{row}\n")
    with pytest.raises(data.SIDListError, match=reason) as info:
        data.read_sid_list(path)
    assert f"{path}:3:" in str(info.value)


def test_sid_pairs_follow_the_official_selection(tmp_path):
    root = copy_sid_lists(tmp_path / "sid")
    touch_sid_files(root, [root / "Sony_train_list.txt", root / "Sony_test_list.txt"],
                    only=lambda n: "_00_" in Path(n).name)
    assert len(data.sid_pairs("Sony_train_list.txt", root)) == 280
    all_test = data.sid_pairs(root / "Sony_test_list.txt", root, exclude_misaligned=False)
    assert len(all_test) == 93
    test = data.sid_pairs("Sony_test_list.txt", root)
    assert len(test) == 88
    assert {p.scene for p in all_test} - {p.scene for p in test} == {10034, 10045, 10172} == data.SID_MISALIGNED_SCENES
    for p in test:
        assert p.short_path == root / "Sony" / "short" / Path(p.short).name and p.short_path.is_file()
        assert p.long_path.is_file() and p.burst == 0
    with pytest.raises(data.DataMissingError, match="_01_"):  # later bursts were not created
        data.sid_pairs("Sony_test_list.txt", root, burst00_only=False)


def test_sid_pairs_missing_file_and_other_extension(tmp_path):
    root = tmp_path / "mini"
    (root / "Sony" / "short").mkdir(parents=True)
    (root / "Sony" / "long").mkdir(parents=True)
    (root / "list.txt").write_text("./Sony/short/00001_00_0.1s.dng ./Sony/long/00001_00_10s.dng ISO200 F8\n")
    (root / "Sony" / "short" / "00001_00_0.1s.dng").touch()
    (root / "Sony" / "long" / "00001_00_10s.dng").touch()
    (pair,) = data.sid_pairs("list.txt", root)  # the list is the truth: .dng here
    assert pair.long_path.suffix == ".dng"
    (root / "Sony" / "long" / "00001_00_10s.dng").rename(root / "Sony" / "long" / "00001_00_10s.ARW")
    with pytest.raises(data.DataMissingError) as info:
        data.sid_pairs("list.txt", root)
    assert "00001_00_10s.dng" in str(info.value) and "found 00001_00_10s.ARW instead" in str(info.value)


# ------------------------------------------------------------------------------------------------
# RAW-NOD annotations
# ------------------------------------------------------------------------------------------------

# (file, images, boxes in the file, degenerate boxes, categories listed, type of the image ids)
RAW_NOD_FILES = [
    ("Sony/raw_new_Sony_RX100m7_train.json", 2571, 14982, 0, 3, str),
    ("Sony/raw_new_Sony_RX100m7_val.json", 321, 1896, 0, 3, str),
    ("Sony/raw_str_labeled_new_Sony_RX100m7_test.json", 321, 1827, 0, 3, int),
    ("Nikon/raw_new_Nikon750_train.json", 3206, 22474, 0, 3, str),
    ("Nikon/raw_new_Nikon750_val.json", 400, 2720, 0, 3, str),
    ("Nikon/raw_new_Nikon750_test.json", 400, 2852, 1, 80, str),
]


@pytest.mark.parametrize("name, images, boxes, degenerate, categories, id_type", RAW_NOD_FILES)
def test_read_raw_nod_counts(name, images, boxes, degenerate, categories, id_type):
    ann = data.read_raw_nod(needs(NOD / name))
    assert len(ann) == images
    # the published box counts are those of the files, before dropping the degenerate box
    assert ann.num_boxes + ann.dropped == boxes and ann.dropped == degenerate
    assert len(ann.categories) == categories
    assert ann.classes == data.RAW_NOD_CLASSES == {1: "person", 2: "bicycle", 3: "car"}
    assert {type(im.id) for im in ann.images} == {id_type}
    assert [im.index for im in ann.images] == list(range(images))
    for im in ann.images:
        assert im.boxes.dtype == np.float32 and im.boxes.shape == (len(im.labels), 4)
        assert im.labels.dtype == np.int64
        assert np.all(im.boxes[:, 2] > im.boxes[:, 0]) and np.all(im.boxes[:, 3] > im.boxes[:, 1])
        assert np.all(im.boxes >= 0)
        assert np.all(im.boxes[:, 2] <= im.width) and np.all(im.boxes[:, 3] <= im.height)
        assert set(im.flags) >= {"iscrowd"} and all(len(v) == len(im.labels) for v in im.flags.values())


def test_read_raw_nod_boxes_and_the_dropped_one():
    ann = data.read_raw_nod(needs(NOD / "Nikon" / "raw_new_Nikon750_test.json"))
    by_id = {im.id: im for im in ann.images}
    # COCO [x, y, w, h] = [127, 798, 2194, 1533] of DSC_0557 -> [x1, y1, x2, y2]
    assert [127, 798, 2321, 2331] in by_id["DSC_0557"].boxes.tolist()
    assert by_id["DSC_0557"].file_name == "DSC_0557.NEF"
    assert (by_id["DSC_0557"].width, by_id["DSC_0557"].height) == (3936, 2624)
    # the box [1764, 872, 2, 0] of DSC_0674 (height 0) is not among the kept ones
    assert not any(b[0] == 1764 and b[1] == 872 for b in by_id["DSC_0674"].boxes.tolist())
    assert ann.categories[79]["name"] == "toothbrush"


def test_read_raw_nod_integer_ids_map_to_the_right_images():
    """The Sony test raw file uses integer ids: its boxes must match the rawpy file's (string ids)."""
    raw_file = data.read_raw_nod(needs(NOD / "Sony" / "raw_str_labeled_new_Sony_RX100m7_test.json"))
    jpeg_file = data.read_raw_nod(NOD / "Sony" / "rawpy_new_Sony_RX100m7_test.json")
    boxes = {Path(im.file_name).stem: sorted(map(tuple, im.boxes.tolist())) for im in jpeg_file.images}
    for im in raw_file.images:
        assert sorted(map(tuple, im.boxes.tolist())) == boxes[Path(im.file_name).stem]
    flags = {"isnoisy", "isoutoffocus", "ismotionblur", "isheavilyoccluded", "isextreme", "isbacklit",
             "istruncated", "isconfusing", "islabeled"}
    assert flags <= set(raw_file.images[0].flags)
    assert raw_file.images[0].flags["isnoisy"].dtype == bool


def test_read_raw_nod_rejects_other_schemas(tmp_path):
    path = tmp_path / "bad.json"
    base = {"images": [{"id": "a", "file_name": "a.dng", "width": 8, "height": 8}],
            "categories": [{"id": 1, "name": "person"}], "annotations": []}
    for change, reason in (({"images": None}, "missing the COCO list 'images'"),
                           ({"annotations": [{"id": 0, "image_id": "b", "bbox": [0, 0, 1, 1], "category_id": 1}]}, "unknown 'b'"),
                           ({"annotations": [{"id": 0, "image_id": "a", "bbox": [0, 0, 1], "category_id": 1}]}, "bbox is not"),
                           ({"annotations": [{"id": 0, "image_id": "a", "bbox": [0, 0, 1, 1], "category_id": 7}]}, "category 7")):
        path.write_text(json.dumps({**base, **change}))
        with pytest.raises(data.RawNODFormatError, match=reason):
            data.read_raw_nod(path)
    with pytest.raises(data.DataMissingError):
        data.read_raw_nod(tmp_path / "none.json")


def test_raw_nod_paths(tmp_path):
    root = copy_nod_annotations(tmp_path / "nod")
    images, sony_test = data.raw_nod_paths(root, "Sony", "test")
    assert images == root / "Sony" and sony_test.name == "raw_str_labeled_new_Sony_RX100m7_test.json"
    assert data.raw_nod_paths(root, "Nikon", "train")[1].name == "raw_new_Nikon750_train.json"
    with pytest.raises(data.DataMissingError, match="raw-nod-annotations"):
        data.raw_nod_paths(tmp_path, "Nikon", "val")
    with pytest.raises(ValueError):
        data.raw_nod_paths(root, "Canon", "val")


# ------------------------------------------------------------------------------------------------
# RawNODDetection: streams real DNG files from disk
# ------------------------------------------------------------------------------------------------

def write_dng(path: Path, bayer: np.ndarray) -> None:
    """A Bayer DNG that rawpy reads back bit-exactly (tags as in MEASURED.md)."""
    import tifffile

    tags = [(50706, "B", 4, (1, 4, 0, 0), True),   # DNGVersion
            (33421, "H", 2, (2, 2), True),         # CFARepeatPatternDim
            (33422, "B", 4, (0, 1, 1, 2), True),   # CFAPattern: RGGB
            (50714, "H", 1, (512,), True),         # BlackLevel
            (50717, "H", 1, (16383,), True),       # WhiteLevel
            (271, "s", 0, "SONY", True),           # Make
            (272, "s", 0, "DSC-RX100M7", True)]    # Model
    tifffile.imwrite(path, bayer, photometric="cfa", subfiletype=0, extratags=tags)


@pytest.fixture
def dng_set(tmp_path):
    """30 small DNGs and a RAW-NOD-style annotation file (string ids, one degenerate box)."""
    rng = np.random.default_rng(0)
    h, w = 384, 512
    folder = tmp_path / "Sony"
    folder.mkdir()
    images, annotations = [], []
    for i in range(30):
        write_dng(folder / f"DSC{i:05d}.dng", rng.integers(512, 16383, (h, w), dtype=np.uint16))
        images.append({"id": f"DSC{i:05d}", "width": w, "height": h, "file_name": f"DSC{i:05d}.dng", "license": 1})
        for k in range(i % 3 + 1):
            annotations.append({"image_id": f"DSC{i:05d}", "bbox": [10 * k, 20, 30, 40 + k], "category_id": k + 1,
                                "id": len(annotations), "iscrowd": 0, "area": 30 * (40 + k)})
    annotations.append({"image_id": "DSC00004", "bbox": [5, 5, 3, 0], "category_id": 1, "id": len(annotations),
                        "iscrowd": 0, "area": 0})
    categories = [{"supercategory": s, "id": c, "name": n}
                  for c, (s, n) in {1: ("person", "person"), 2: ("vehicle", "bicycle"), 3: ("vehicle", "car")}.items()]
    json_path = tmp_path / "raw_new_test.json"
    json_path.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "categories": categories,
                                     "annotations": annotations}))
    return folder, json_path


def test_raw_nod_detection_items(dng_set):
    folder, json_path = dng_set
    ds = data.RawNODDetection(folder, json_path)
    assert len(ds) == 30 and ds.annotations.dropped == 1 and ds.missing_files() == []
    frame, target = ds[4]
    assert isinstance(frame, raw.RawFrame) and frame.cfa == "RGGB"
    assert frame.mosaic.shape == (384, 512) and frame.mosaic.dtype == np.float32
    assert 0 <= frame.mosaic.min() and frame.mosaic.max() <= 1
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["boxes"].tolist() == [[0, 20, 30, 60], [10, 20, 40, 61]]
    assert target["labels"].tolist() == [1, 2]
    assert target["image_id"] == 4 and target["image_size"] == (384, 512) and target["file_name"] == "DSC00004.dng"
    seen = []

    def transform(frame, target):
        seen.append(frame.path.name)
        return torch.from_numpy(raw.pack_rgb(frame.mosaic, frame.cfa)), target

    x, target = data.RawNODDetection(folder, json_path, transform=transform)[7]
    assert seen == ["DSC00007.dng"] and x.shape == (3, 192, 256) and len(target["boxes"]) == 2


def test_raw_nod_detection_missing_image_names_the_file(dng_set):
    folder, json_path = dng_set
    (folder / "DSC00012.dng").unlink()
    ds = data.RawNODDetection(folder, json_path)
    assert ds.missing_files() == [folder / "DSC00012.dng"]
    ds[11]
    with pytest.raises(data.DataMissingError, match="DSC00012.dng"):
        ds[12]


def test_raw_nod_detection_memory_does_not_grow_with_the_images(dng_set):
    folder, json_path = dng_set
    one_mosaic = 384 * 512 * 4

    def traced_after(ds, indices):
        for i in indices:
            item = ds[i]
            del item
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    class Caching(data.RawNODDetection):  # a data set that keeps what it read
        def __init__(self, *args):
            super().__init__(*args)
            self.kept = []

        def __getitem__(self, index):
            item = super().__getitem__(index)
            self.kept.append(item)
            return item

    tracemalloc.start()
    try:
        ds = data.RawNODDetection(folder, json_path)
        after5 = traced_after(ds, range(5))
        after30 = traced_after(ds, range(5, 30))
        after60 = traced_after(ds, range(30))  # a second pass
        caching = Caching(folder, json_path)
        c5 = traced_after(caching, range(5))
        c30 = traced_after(caching, range(5, 30))
    finally:
        tracemalloc.stop()
    assert after30 - after5 < one_mosaic / 2, (after5, after30)
    assert after60 - after5 < one_mosaic / 2, (after5, after60)
    # the measurement is sensitive enough to see a data set that keeps its images
    assert c30 - c5 > 20 * one_mosaic
