"""What a data set is (``data.fingerprint``: the files the study reads, not the folder's other
files), the decoded SID cache under symbolic links, training batches in DataLoader workers, and
the cost line printed before decoding."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import reprolib.data.sid as sid_data
from reprolib import data, raw


def sid_layout(root: Path) -> Path:
    """Three SID lists naming two scenes' raw files (bytes, not decodable: only names and sizes count)."""
    rows = {"train": ["./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8",
                      "./Sony/short/00001_01_0.1s.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8"],
            "val": ["./Sony/short/20001_00_0.04s.ARW ./Sony/long/20001_00_10s.ARW ISO100 F9"], "test": []}
    for split, lines in rows.items():
        (root / f"Sony_{split}_list.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"Sony_{split}_list.txt").write_text("".join(f"{line}\n" for line in lines))
        for line in lines:
            for name in line.split()[:2]:
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(b"raw" * len(name))
    return root


def nod_layout(root: Path) -> Path:
    for camera, ext in (("Sony", "ARW"), ("Nikon", "NEF")):
        (root / "annotations" / camera).mkdir(parents=True)
        (root / camera).mkdir()
        images = [{"id": i, "file_name": f"DSC{i}.{ext}", "width": 8, "height": 6} for i in range(3)]
        for split in ("train", "val", "test"):
            (root / "annotations" / camera / f"raw_new_{camera}_{split}.json").write_text(json.dumps(
                {"images": images, "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
        for im in images:
            (root / camera / im["file_name"]).write_bytes(b"x" * 10)
    return root


def zurich_layout(root: Path) -> Path:
    for split, n in (("train", 3), ("test", 2)):
        for folder, ext in (("huawei_raw", "png"), ("canon", "jpg")):
            (root / split / folder).mkdir(parents=True)
            for i in range(n):
                (root / split / folder / f"{i}.{ext}").write_bytes(b"z" * (i + 5))
    return root


@pytest.mark.parametrize("layout, unrelated, named, read_by_the_reader", [
    (sid_layout, ["Sony.zip", "README.txt", "Sony/short/00002_00_0.1s.ARW", "Fuji_train_list.txt"],
     "Sony/long/00001_00_10s.ARW", "Sony_val_list.txt"),
    (nod_layout, ["RAW-NOD.zip", "Sony/DSC99.ARW", "annotations/Sony/rawpy_new_Sony_train.json"],
     "Nikon/DSC2.NEF", "annotations/Sony/raw_new_Sony_test.json"),
    (zurich_layout, ["zurich-raw-to-rgb.zip", "full_resolution/huawei_raw/1.png", "train/notes.txt"],
     "test/canon/1.jpg", "train/huawei_raw/2.png"),
])
def test_fingerprint_is_what_the_study_reads(tmp_path, layout, unrelated, named, read_by_the_reader):
    root = layout(tmp_path / "set")
    first = data.fingerprint(root)
    for rel in unrelated:  # an archive kept beside the data, notes, unlisted files: added, then removed
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"unrelated")
    assert data.fingerprint(root) == first
    for rel in unrelated:
        (root / rel).unlink()
    assert data.fingerprint(root) == first
    (root / named).write_bytes((root / named).read_bytes() + b"!")  # a file the study reads: other size
    assert data.fingerprint(root) != first
    (root / named).write_bytes((root / named).read_bytes()[:-1])
    assert data.fingerprint(root) == first
    if layout is sid_layout:  # the list names another file: another data set
        lst = root / read_by_the_reader
        lst.write_text(lst.read_text().replace("20001_00_0.04s", "20001_00_0.1s"))
        (root / "Sony/short/20001_00_0.1s.ARW").write_bytes((root / "Sony/short/20001_00_0.04s.ARW").read_bytes())
    elif layout is nod_layout:  # an annotation changes
        p = root / read_by_the_reader
        p.write_text(p.read_text().replace('"person"', '"human"'))
    else:  # a pair less
        (root / read_by_the_reader).unlink()
        (root / read_by_the_reader.replace("huawei_raw", "canon").replace(".png", ".jpg")).unlink()
    assert data.fingerprint(root) != first


def test_sha256_mode_sees_the_content(tmp_path, monkeypatch):
    root = sid_layout(tmp_path / "set")
    by_size, by_content = data.fingerprint(root), data.fingerprint(root, mode="sha256")
    assert by_size != by_content and len(by_content) == 16
    (root / "Sony.zip").write_bytes(b"unrelated")
    monkeypatch.setenv("REPROLIB_FINGERPRINT", "sha256")
    assert data.fingerprint(root) == by_content
    raw_file = root / "Sony/short/00001_00_0.1s.ARW"
    raw_file.write_bytes(raw_file.read_bytes()[::-1])  # same size, other bytes
    assert data.fingerprint(root) != by_content
    assert data.fingerprint(root, mode="size") == by_size
    with pytest.raises(ValueError, match="REPROLIB_FINGERPRINT"):
        data.fingerprint(root, mode="md5")


def test_a_generated_set_keeps_its_stamp_fingerprint(tmp_path):
    root = sid_layout(tmp_path / "set")
    (root / data.STAMP_NAME).write_text(json.dumps({"fingerprint": "0123456789abcdef"}))
    assert data.fingerprint(root) == data.fingerprint(root, mode="sha256") == "0123456789abcdef"


# ------------------------------------------------------------------ the decoded cache under symbolic links

def link_each_file(src: Path, dst: Path) -> Path:
    """``dst`` with the list files copied and every raw file a symbolic link into ``src``."""
    for p in src.rglob("*"):
        if p.is_file():
            (dst / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            if p.suffix == ".txt":
                shutil.copyfile(p, dst / p.relative_to(src))
            else:
                (dst / p.relative_to(src)).symlink_to(p)
    return dst


@pytest.mark.parametrize("how", ["root", "folder", "files"])
def test_decoded_cache_reads_through_symbolic_links(sid_root, tmp_path, how):
    work = tmp_path / "work" / "my-sid"
    work.parent.mkdir()
    if how == "root":  # the data root is a link to read-only data
        work.symlink_to(sid_root, target_is_directory=True)
    elif how == "folder":  # the lists downloaded into a work folder, the raw folder a link
        work.mkdir()
        for p in sid_root.glob("*_list.txt"):
            shutil.copyfile(p, work / p.name)
        (work / "Sony").symlink_to(sid_root / "Sony", target_is_directory=True)
    else:
        link_each_file(sid_root, work)
    cache = data.DecodedCache(work, folder=tmp_path / "decoded")
    pairs = data.load_splits(work)["test"]
    cache.ensure(pairs, progress=False)
    pair = pairs[0]
    np.testing.assert_array_equal(cache.mosaic(pair.short_path), raw.read(sid_root / pair.short).mosaic)
    assert (tmp_path / "decoded" / pair.short).with_name(Path(pair.short).name + ".json").is_file()
    assert data.DecodedCache(work).folder.name.startswith("my-sid-")  # named after the root as named
    with pytest.raises(ValueError, match="not under the data root"):
        cache.mosaic(tmp_path / "elsewhere.ARW")


# ------------------------------------------------------------------ training batches in DataLoader workers

class Steps(torch.utils.data.Dataset):
    def __init__(self, batch_fn):
        self.batch_fn = batch_fn

    def __getitem__(self, step):
        return self.batch_fn(step)


def test_training_batches_are_the_same_in_dataloader_workers(sid_root, tmp_path, monkeypatch):
    cache = data.DecodedCache(sid_root, folder=tmp_path / "decoded")
    train_pairs = data.load_splits(sid_root)["train"]
    patches = data.SIDTrainingPatches(train_pairs, cache, patch=8, seed=3, batch=2, device=None)
    # everything was decoded in this process: workers (forked) only read the cache
    assert all(cache._has_mosaic(p.short_path) and cache._file(p.long_path, ".srgb16.npy").is_file()
               for p in train_pairs)

    def no_decoding(*a, **k):
        raise AssertionError("decoded in a worker")

    monkeypatch.setattr(raw, "read", no_decoding)
    monkeypatch.setattr(sid_data, "render_ground_truth", no_decoding)
    loader = torch.utils.data.DataLoader(Steps(patches), batch_size=None, sampler=range(0, 6), num_workers=2)
    got = list(loader)
    assert len(got) == 6
    for step, (x, y) in enumerate(got):
        x0, y0 = patches(step)
        assert x.device.type == x0.device.type == "cpu" and x.shape == (2, 4, 8, 8)
        assert torch.equal(x, x0) and torch.equal(y, y0)


# ------------------------------------------------------------------ costs stated before decoding

def test_decoding_states_folder_count_and_size_first(sid_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REPROLIB_DATA", str(tmp_path / "cache"))
    cache = data.DecodedCache(sid_root)
    pairs = data.load_splits(sid_root)["val"]
    cache.ensure(pairs)
    err = capsys.readouterr().err
    n = len({p.short_path for p in pairs} | {p.long_path for p in pairs})
    found = re.search(rf"decoding {n} raw files into {re.escape(str(cache.folder))} \(~([\d.]+) (kB|MB|GB); "
                      r"set REPROLIB_DATA to put it elsewhere\)", err)
    assert found, err
    stated = float(found[1]) * {"kB": 1e3, "MB": 1e6, "GB": 1e9}[found[2]]
    on_disk = sum(p.stat().st_size for p in cache.folder.rglob("*.npy"))
    assert abs(stated - on_disk) < 0.05 * on_disk, (stated, on_disk)
    cache.ensure(pairs)  # nothing left to do: nothing said
    assert "decoding" not in capsys.readouterr().err
