"""Tests of the TensorFlow checkpoint reader and of loading the released SID weights.

The released index (``../shared/fixtures``) drives the reading; the data file is written here
(random values at each entry's offset), since the weights themselves are not a fixture.
"""
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprolib.models.sid_unet import SIDUNet
from reprolib.models.tf_checkpoint import (crc32c, mask_crc32c, model_variables,
                                           read_bundle_index, read_checkpoint, unmask_crc32c)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
CHECKPOINT_INDEX = FIXTURES / "sid" / "checkpoint_index"


def released_index(camera: str) -> Path:
    path = CHECKPOINT_INDEX / f"{camera}_model.ckpt.index"
    if not path.exists():
        pytest.skip(f"checkpoint index fixture absent: {path}")
    return path


def write_checkpoint(tmp_path: Path, camera: str, seed: int = 0) -> tuple[Path, dict]:
    """The released index beside a data file holding random float32 network weights (He-scaled
    so that activations stay O(1)); Adam slots are left as holes. Returns (prefix, weights)."""
    prefix = tmp_path / "model.ckpt"
    shutil.copyfile(released_index(camera), f"{prefix}.index")
    rng = np.random.default_rng(seed)
    weights = {}
    with open(f"{prefix}.data-00000-of-00001", "wb") as f:
        for name, e in model_variables(read_bundle_index(f"{prefix}.index")).items():
            if name.endswith("/biases"):
                fan_in = 10.0
            elif name.startswith("Variable"):  # transposed conv, H×W×out×in
                fan_in = e.shape[3]
            else:  # conv, H×W×in×out
                fan_in = e.numel / e.shape[3]
            weights[name] = (rng.standard_normal(e.shape) * np.sqrt(2 / fan_in)).astype(np.float32)
            f.seek(e.offset)
            f.write(weights[name].astype("<f4").tobytes())
    return prefix, weights


def bitwise_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    # LevelDB util/crc32c_test.cc
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C


@pytest.mark.parametrize("size", [16383, 16384, 16391, 70001])
def test_chunked_crc32c_equals_the_bytewise_definition(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == bitwise_crc32c(data)


def test_masking_is_leveldbs():
    crc = crc32c(b"foo")
    assert mask_crc32c(crc) != crc and mask_crc32c(mask_crc32c(crc)) != crc
    assert unmask_crc32c(mask_crc32c(crc)) == crc
    assert unmask_crc32c(unmask_crc32c(mask_crc32c(mask_crc32c(crc)))) == crc


def test_masked_crc32c_matches_a_value_tensorflow_wrote():
    # A real TensorFlow-written value: Adam's beta powers underflowed to 0.0 in the released
    # models, and a 4-byte CRC is a bijection, so the stored checksum names the float 0.0.
    entries = read_bundle_index(released_index("Sony"))
    assert entries["beta1_power"].crc32c == entries["beta2_power"].crc32c
    assert mask_crc32c(crc32c(np.float32(0).tobytes())) == entries["beta1_power"].crc32c


def test_reads_every_tensor_at_its_offset(tmp_path):
    prefix, weights = write_checkpoint(tmp_path, "Sony")
    read = read_checkpoint(prefix, names=weights, verify_crc=False)
    assert list(read) == list(weights)
    for name, value in weights.items():
        assert read[name].dtype == np.float32 and read[name].shape == value.shape, name
        np.testing.assert_array_equal(read[name], value)
    assert read["g_conv1_1/weights"].shape == (3, 3, 4, 32)  # HWIO
    assert read["Variable"].shape == (2, 2, 256, 512)  # H×W×out×in
    # the same through a path ending in ".index"
    again = read_checkpoint(f"{prefix}.index", names=["g_conv10/biases"], verify_crc=False)
    np.testing.assert_array_equal(again["g_conv10/biases"], weights["g_conv10/biases"])


def test_crc32c_is_verified_against_the_index(tmp_path):
    prefix, _ = write_checkpoint(tmp_path, "Sony")
    # the holes left for the beta powers read as 0.0, which is what the released file holds
    powers = read_checkpoint(prefix, names=["beta1_power", "beta2_power"])
    assert powers["beta1_power"] == 0 and powers["beta1_power"].shape == ()
    with pytest.raises(ValueError, match="crc32c mismatch for g_conv1_1/weights"):
        read_checkpoint(prefix, names=["g_conv1_1/weights"])


def test_clear_errors(tmp_path):
    prefix, _ = write_checkpoint(tmp_path, "Sony")
    with pytest.raises(FileNotFoundError, match=r"no checkpoint index.*without '\.index'"):
        read_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(KeyError, match="g_conv11"):
        read_checkpoint(prefix, names=["g_conv11/weights"])
    # the data file ends after the last network variable: the trailing Adam slots are cut off
    with pytest.raises(ValueError, match=r"truncated \(g_conv9_2/weights/Adam needs.*again"):
        read_checkpoint(prefix, verify_crc=False)
    Path(f"{prefix}.data-00000-of-00001").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.ckpt\.data-00000-of-00001.*missing"):
        read_checkpoint(prefix, names=["Variable"])


def test_a_compressed_block_is_rejected(tmp_path):
    data = bytearray(released_index("Sony").read_bytes())
    footer = data[-48:]
    # footer: metaindex handle then index handle, as varints (offset, size)
    values, pos = [], 0
    while len(values) < 4:
        value = shift = 0
        while True:
            byte = footer[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    index_offset, index_size = values[2:]
    data[index_offset + index_size] = 1  # the index block's compression byte: snappy
    path = tmp_path / "model.ckpt.index"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.ckpt\.index: block at byte \d+ is compressed"):
        read_bundle_index(path)


# A minimal tensor-bundle writer, to test what the released index does not contain.
def _varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def _field(number: int, value) -> bytes:
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + struct.pack("<II", 0, 1)


def write_bundle(prefix: Path, tensors: dict, num_shards: int = 1, big_endian: bool = False,
                 size_error: int = 0) -> None:
    """Writes ``tensors`` (name -> (shard, array)) as a checkpoint, each shard in name order."""
    dtypes = {"float32": 1, "float64": 2, "int32": 3}
    shards = [bytearray() for _ in range(num_shards)]
    entries = [(b"", _field(1, num_shards) + _field(2, int(big_endian)))]
    for name, (shard, array) in sorted(tensors.items()):
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        shape = b"".join(_field(2, _field(1, d)) for d in array.shape)
        entry = (_field(1, dtypes[array.dtype.name]) + _field(2, shape) + _field(3, shard)
                 + _field(4, len(shards[shard])) + _field(5, len(raw) + size_error)
                 + _varint(6 << 3 | 5) + struct.pack("<I", mask_crc32c(crc32c(raw))))
        entries.append((name.encode(), entry))
        shards[shard] += raw
    data_block = _block(entries)
    index_block = _block([(b"~", _varint(0) + _varint(len(data_block)))])
    table = data_block + b"\0\0\0\0\0" + index_block + b"\0\0\0\0\0"
    handles = (_varint(0) + _varint(0) + _varint(len(data_block) + 5) + _varint(len(index_block)))
    table += handles.ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(table)
    for i, shard in enumerate(shards):
        Path(f"{prefix}.data-{i:05d}-of-{num_shards:05d}").write_bytes(shard)


def test_two_shards_and_dtypes(tmp_path):
    tensors = {"a": (0, np.arange(6, dtype=np.float64).reshape(2, 3)),
               "b/c": (1, np.array([-1, 2, 3], dtype=np.int32)),
               "d": (1, np.float32(0.5) * np.ones((1, 2, 1), np.float32))}
    write_bundle(tmp_path / "ckpt", tensors, num_shards=2)
    read = read_checkpoint(tmp_path / "ckpt")
    assert list(read) == ["a", "b/c", "d"]
    for name, (_, array) in tensors.items():
        assert read[name].dtype == array.dtype
        np.testing.assert_array_equal(read[name], array)


def test_size_mismatch_and_big_endian_are_rejected(tmp_path):
    tensors = {"w": (0, np.ones((2, 2), np.float32))}
    write_bundle(tmp_path / "bad", tensors, size_error=4)
    with pytest.raises(ValueError, match=r"bad\.index: w has 20 bytes"):
        read_checkpoint(tmp_path / "bad")
    write_bundle(tmp_path / "big", tensors, big_endian=True)
    with pytest.raises(ValueError, match="big-endian"):
        read_checkpoint(tmp_path / "big")


# The official network (test_Sony.py's network()) in TensorFlow's conventions: NHWC activations,
# the checkpoint's kernels as they are stored, tf.depth_to_space's DCR channel order.
def conv_same(x, kernel, bias):
    """slim.conv2d, stride 1, SAME padding: x N×H×W×C, kernel H×W×in×out."""
    kh, kw = kernel.shape[:2]
    h, w = x.shape[1:3]
    padded = F.pad(x, (0, 0, kw // 2, kw // 2, kh // 2, kh // 2))
    return bias + sum(torch.einsum("nhwc,co->nhwo", padded[:, i:i + h, j:j + w], kernel[i, j])
                      for i in range(kh) for j in range(kw))


def conv2d_transpose(x, kernel):
    """tf.nn.conv2d_transpose, 2×2 stride 2: input pixel (h, w) feeds output (2h + i, 2w + j)
    through kernel[i, j] (H×W×out×in)."""
    n, h, w, _ = x.shape
    return torch.einsum("nhwc,ijoc->nhiwjo", x, kernel).reshape(n, 2 * h, 2 * w, -1)


def depth_to_space(x, r):
    """tf.depth_to_space (DCR): channel (i·r + j)·C + c goes to pixel (r·h + i, r·w + j), c."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, r, r, c // r**2).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * r, w * r, -1)


def official_forward(x, weights, upscale):
    """x N×H×W×C; weights: the checkpoint's variables by name."""
    t = {name: torch.from_numpy(value).double() for name, value in weights.items()}

    def block(x, level):
        for j in (1, 2):
            x = conv_same(x, t[f"g_conv{level}_{j}/weights"], t[f"g_conv{level}_{j}/biases"])
            x = torch.maximum(0.2 * x, x)
        return x

    skips = []
    for level in range(1, 6):
        x = block(x, level)
        if level < 5:
            skips.append(x)
            n, h, w, c = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, c).amax(dim=(2, 4))
    for k, level in enumerate(range(6, 10)):
        up = conv2d_transpose(x, t["Variable" if k == 0 else f"Variable_{k}"])
        x = block(torch.cat([up, skips.pop()], dim=3), level)
    x = conv_same(x, t["g_conv10/weights"], t["g_conv10/biases"])
    return depth_to_space(x, upscale)


@pytest.mark.parametrize("camera, in_channels, upscale", [("Sony", 4, 2), ("Fuji", 9, 3)])
def test_from_official_gives_the_official_output(tmp_path, camera, in_channels, upscale):
    prefix, weights = write_checkpoint(tmp_path, camera)
    model = SIDUNet.from_official(prefix, verify_crc=False).eval()
    assert (model.in_channels, model.upscale) == (in_channels, upscale)
    assert model.conv10.weight.dtype == torch.float32
    # in float64 (the loaded float32 weights, exactly), so that only the layouts are under test
    model.double()
    x = torch.rand(1, in_channels, 32, 32, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        ours = model(x)
    expected = official_forward(x.permute(0, 2, 3, 1), weights, upscale).permute(0, 3, 1, 2)
    assert ours.shape == expected.shape == (1, 3, 32 * upscale, 32 * upscale)
    assert expected.abs().mean() > 0.1  # the check is not vacuous
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)

    # without reordering conv10's output channels, pixel_shuffle would scramble the colours
    with torch.no_grad():
        model.conv10.weight.copy_(torch.from_numpy(weights["g_conv10/weights"]).permute(3, 2, 0, 1))
        model.conv10.bias.copy_(torch.from_numpy(weights["g_conv10/biases"]))
        unpermuted = model(x)
    assert (unpermuted - expected).abs().mean() > 0.1


def test_from_official_verifies_the_data_and_names_a_missing_file(tmp_path):
    prefix, _ = write_checkpoint(tmp_path, "Sony")
    with pytest.raises(ValueError, match="crc32c mismatch"):
        SIDUNet.from_official(prefix)
    Path(f"{prefix}.data-00000-of-00001").unlink()
    with pytest.raises(FileNotFoundError, match=r"data-00000-of-00001: checkpoint data file"):
        SIDUNet.from_official(prefix, verify_crc=False)
