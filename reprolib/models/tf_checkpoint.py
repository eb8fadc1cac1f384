"""Reads TensorFlow checkpoints (tensor bundles) in pure Python and NumPy, without TensorFlow.

A checkpoint ``prefix`` is ``prefix.index``, a LevelDB SSTable mapping each variable name to a
``BundleEntryProto`` (dtype, shape, shard, offset, size, masked crc32c; the empty key holds the
``BundleHeaderProto``), and ``prefix.data-SSSSS-of-NNNNN``, the shards of raw little-endian tensor
bytes. Layouts: LevelDB ``table_format.md``; TensorFlow ``core/protobuf/tensor_bundle.proto``,
``core/util/tensor_bundle``. TensorFlow writes its index blocks uncompressed, so snappy-compressed
blocks are rejected rather than decoded.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["BundleEntry", "read_bundle_index", "read_checkpoint", "model_variables",
           "crc32c", "mask_crc32c", "unmask_crc32c"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_LENGTH = 48  # metaindex and index block handles, zero padding, 8-byte magic

#: tensorflow/core/framework/types.proto DataType -> NumPy dtype (the fixed-size ones)
DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 9: "int64",
          10: "bool", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}


@dataclass(frozen=True)
class BundleEntry:
    """One variable of a checkpoint: ``dtype`` a NumPy dtype name (``'unknown'`` for types with
    no fixed-size encoding, e.g. strings), ``shape`` TensorFlow's, bytes ``[offset, offset + size)``
    of data shard ``shard_id``, ``crc32c`` the masked crc32c of those bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message as (field number, value) pairs (length-delimited values as bytes)."""
    fields, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        wire = tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((tag >> 3, value))
    return fields


def _entry(name: str, buf: bytes) -> BundleEntry:
    """Decodes a BundleEntryProto (dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6)."""
    f = dict.fromkeys(range(1, 8))
    for number, value in _fields(buf):
        f[number] = value
    if f[7] is not None:
        raise ValueError(f"variable {name!r} is partitioned (sliced); not supported")
    # TensorShapeProto: repeated dim (2), each a TensorShapeProto.Dim with size (1)
    dims = [v for n, v in _fields(f[2] or b"") if n == 2]
    shape = tuple(dict(_fields(d)).get(1, 0) for d in dims)
    return BundleEntry(name, DTYPES.get(f[1] or 0, "unknown"), shape, f[3] or 0, f[4] or 0,
                       f[5] or 0, f[6])


def _block_entries(data: bytes, handle: bytes, path: Path, compression_seen: list) -> list:
    """The (key, value) pairs of the block at a block handle (varints offset, size)."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    compression = data[offset + size]  # block trailer: compression byte, then crc32c
    compression_seen.append(compression)
    if compression != 0:
        raise ValueError(f"{path}: block at byte {offset} is compressed (type {compression}); "
                         "TensorFlow writes bundle indexes uncompressed: re-save the checkpoint")
    block = data[offset:offset + size]
    end = len(block) - 4 - 4 * struct.unpack_from("<I", block, len(block) - 4)[0]
    entries, key, pos = [], b"", 0
    while pos < end:  # entry: shared, non_shared, value length, key suffix, value
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos:pos + length]))
        pos += length
    return entries


def _read_index(path: Path, compression_seen: list) -> tuple[dict, dict[str, BundleEntry]]:
    """The BundleHeaderProto fields (num_shards 1, endianness 2) and the entries of an index."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint index; pass the prefix without '.index' "
                                "(e.g. checkpoint/Sony/model.ckpt) and check the path")
    data = path.read_bytes()
    if len(data) < FOOTER_LENGTH or int.from_bytes(data[-8:], "little") != TABLE_MAGIC:
        raise ValueError(f"{path}: not a TensorFlow checkpoint index (bad table magic)")
    footer = data[-FOOTER_LENGTH:]
    _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
    header, entries = {}, {}
    for _, handle in _block_entries(data, footer[pos:], path, compression_seen):
        for key, value in _block_entries(data, handle, path, compression_seen):
            if key:
                entries[key.decode()] = _entry(key.decode(), value)
            else:
                header = dict(_fields(value))
    return header, entries


def read_bundle_index(path: str | Path, compression_seen: list[int] | None = None
                      ) -> dict[str, BundleEntry]:
    """Every variable of a checkpoint index ``path`` (a ``*.index`` file), name -> entry, in the
    file's sorted order; the compression byte of every block read is appended to
    ``compression_seen`` if given. Raises ValueError for a non-table or a compressed block."""
    return _read_index(Path(path), [] if compression_seen is None else compression_seen)[1]


def model_variables(entries: dict[str, BundleEntry]) -> dict[str, BundleEntry]:
    """The network's own variables: drops Adam's slots (``*/Adam``, ``*/Adam_1``) and
    ``beta1_power`` / ``beta2_power``."""
    optimizer = ("beta1_power", "beta2_power")
    return {name: e for name, e in entries.items()
            if not name.endswith(("/Adam", "/Adam_1")) and name not in optimizer}


def read_checkpoint(prefix: str | Path, names: Iterable[str] | None = None,
                    verify_crc: bool = True) -> dict[str, np.ndarray]:
    """Reads tensors of the TensorFlow checkpoint ``prefix`` (the path without ``.index``).

    Args:
        prefix: e.g. ``checkpoint/Sony/model.ckpt`` for ``model.ckpt.index`` and
            ``model.ckpt.data-00000-of-00001``.
        names: the variables to read (default: all, Adam slots included).
        verify_crc: check every tensor's bytes against the crc32c stored in the index.

    Returns:
        name -> NumPy array in TensorFlow's layout and dtype (conv kernels H×W×in×out,
        transposed-conv kernels H×W×out×in), native byte order.

    Raises:
        FileNotFoundError: a missing ``.index`` or ``.data-*`` file. KeyError: an unknown name.
        ValueError: a malformed or big-endian index, a compressed block, a truncated data file,
            a size that does not match dtype × shape, or a crc32c mismatch.
    """
    prefix = Path(str(prefix).removesuffix(".index"))
    header, entries = _read_index(Path(f"{prefix}.index"), [])
    if header.get(2, 0) != 0:
        raise ValueError(f"{prefix}.index: big-endian checkpoint, not supported")
    names = list(entries) if names is None else list(names)
    missing = sorted(set(names) - set(entries))
    if missing:
        raise KeyError(f"{prefix}.index has no variable(s) {missing}")
    out = {}
    with ExitStack() as stack:
        shards = {}
        for name in names:
            out[name] = _read_tensor(prefix, header, entries[name], shards, stack, verify_crc)
    return out


def _read_tensor(prefix: Path, header: dict, e: BundleEntry, shards: dict, stack: ExitStack,
                 verify_crc: bool) -> np.ndarray:
    """One tensor's bytes from its data shard (opened once, kept in ``shards``), checked."""
    itemsize = np.dtype(e.dtype).itemsize if e.dtype != "unknown" else 0
    if not itemsize or e.size != e.numel * itemsize:
        raise ValueError(f"{prefix}.index: {e.name} has {e.size} bytes, which {e.shape} "
                         f"{e.dtype} does not fill (only fixed-size dtypes are readable)")
    shard = Path(f"{prefix}.data-{e.shard_id:05d}-of-{header.get(1, 1):05d}")
    if shard not in shards:
        if not shard.is_file():
            raise FileNotFoundError(f"{shard}: checkpoint data file missing; download it and put "
                                    f"it next to {prefix.name}.index")
        shards[shard] = stack.enter_context(open(shard, "rb"))
    shards[shard].seek(e.offset)
    raw = shards[shard].read(e.size)
    if len(raw) != e.size:
        raise ValueError(f"{shard}: truncated ({e.name} needs bytes up to {e.offset + e.size}, "
                         f"the file has {shard.stat().st_size}); download it again")
    if verify_crc and e.crc32c is not None and mask_crc32c(crc32c(raw)) != e.crc32c:
        raise ValueError(f"{shard}: crc32c mismatch for {e.name}: the file is corrupt or not the "
                         "one this index describes; download it again (or verify_crc=False)")
    little_endian = np.dtype(e.dtype).newbyteorder("<")
    return np.frombuffer(raw, little_endian).astype(e.dtype).reshape(e.shape)


# CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF)
_TABLE = np.arange(256, dtype=np.uint32)
for _ in range(8):
    _TABLE = np.where(_TABLE & 1, (_TABLE >> 1) ^ np.uint32(0x82F63B78), _TABLE >> 1)
_TABLE_LIST = _TABLE.tolist()
_MASK_DELTA = 0xA282EAD8


@lru_cache(maxsize=None)
def _zeros_operator(n: int) -> list[list[int]]:
    """4 tables ``t`` such that a CRC register ``s`` becomes ``t[0][s & 255] ^ t[1][s >> 8 & 255]
    ^ t[2][s >> 16 & 255] ^ t[3][s >> 24]`` after ``n`` zero bytes (the update is linear)."""
    s = np.uint32(1) << np.arange(32, dtype=np.uint32)
    for _ in range(n):
        s = _TABLE[s & 255] ^ (s >> 8)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    return [np.bitwise_xor.reduce(np.where(bits, s[8 * k:8 * k + 8], 0), axis=1).tolist()
            for k in range(4)]


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``).

    Large inputs are cut into chunks whose registers are advanced in parallel by NumPy, then
    combined (a CRC register is linear: ``crc(a + b) = zeros_len(b)(crc(a)) ^ crc(b)`` from a zero
    register); about 1 s for 100 MB.
    """
    buf = np.frombuffer(data, np.uint8)
    if buf.size < 1 << 14:
        crc = 0xFFFFFFFF
        for byte in buf.tobytes():
            crc = _TABLE_LIST[(crc ^ byte) & 255] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    chunk = 1 << int(np.clip(np.round(np.log2(buf.size / 8) / 2), 6, 13))
    n_chunks = -(-buf.size // chunk)
    # leading zeros leave a zero register unchanged; the initial 0xFFFFFFFF is equivalent to
    # complementing the first 4 bytes from a zero register
    padded = np.zeros(n_chunks * chunk, np.uint8)
    start = padded.size - buf.size
    padded[start:] = buf
    padded[start:start + 4] ^= 255
    registers = np.zeros(n_chunks, np.uint32)
    for column in padded.reshape(n_chunks, chunk).T.copy():
        registers = _TABLE[(registers ^ column) & 255] ^ (registers >> 8)
    t0, t1, t2, t3 = _zeros_operator(chunk)
    crc = 0
    for r in registers.tolist():
        crc = t0[crc & 255] ^ t1[crc >> 8 & 255] ^ t2[crc >> 16 & 255] ^ t3[crc >> 24] ^ r
    return crc ^ 0xFFFFFFFF


def mask_crc32c(crc: int) -> int:
    """LevelDB's masked CRC (rotate right by 15, add 0xA282EAD8), as TensorFlow stores it."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc32c(masked: int) -> int:
    """Inverse of :func:`mask_crc32c`."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
