"""A small pure-Python reader for TensorFlow checkpoint index files (no TensorFlow needed).

A TensorFlow checkpoint ``model.ckpt.index`` is a "tensor bundle" index: a LevelDB-style
SSTable whose keys are variable names and whose values are ``BundleEntryProto`` messages
(dtype, shape, shard, offset, size, crc32c of the tensor bytes kept in the ``.data-*`` shards).
The entry with the empty key holds a ``BundleHeaderProto`` and is skipped here.

Layout read here (LevelDB ``table_format.md``, TensorFlow ``core/lib/io/table*``,
``core/protobuf/tensor_bundle.proto``):

* footer: the last 48 bytes = metaindex handle + index handle (each two varints: offset, size),
  zero padding to 40 bytes, then the magic number 0xdb4775248b80fb57 (fixed64, little endian);
* every block is followed by a 5-byte trailer: 1 compression byte (0 none, 1 snappy) + crc32c;
* block contents: entries ``varint shared, varint non_shared, varint value_len, key suffix, value``
  whose keys are prefix-compressed against the previous key, then ``uint32`` restart offsets and
  their ``uint32`` count;
* the index block maps a separator key to the block handle of each data block.

TensorFlow's bundle writer stores its index uncompressed; a snappy-compressed block is
therefore rejected with a clear error instead of being decoded (the tests check that every
block of the SID indexes has compression byte 0).

Used by ``tests/test_sid_unet.py`` to check the SID U-Net against the released checkpoints.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_LENGTH = 48
BLOCK_TRAILER_LENGTH = 5
NO_COMPRESSION = 0

# tensorflow/core/framework/types.proto (the values that can occur in these checkpoints).
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 9: "int64", 10: "bool", 19: "float16"}


@dataclass(frozen=True)
class BundleEntry:
    """One variable of a TensorFlow checkpoint, as described by its index entry."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decodes a base-128 varint at ``pos``; returns (value, next position)."""
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _protobuf_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Splits a protobuf message into (field number, wire type, raw value) triples."""
    fields = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
        elif wire_type == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        elif wire_type == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        fields.append((number, wire_type, value))
    return fields


def _tensor_shape(buf: bytes) -> tuple[int, ...]:
    """Decodes a TensorShapeProto: repeated ``dim`` (field 2), each with ``size`` (field 1)."""
    dims = []
    for number, _, value in _protobuf_fields(buf):
        if number == 2:
            size = 0
            for dim_number, _, dim_value in _protobuf_fields(value):
                if dim_number == 1:
                    size = dim_value
            dims.append(size)
    return tuple(dims)


def _bundle_entry(name: str, buf: bytes) -> BundleEntry:
    """Decodes a BundleEntryProto (dtype=1, shape=2, shard_id=3, offset=4, size=5, crc32c=6)."""
    values = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": None}
    for number, _, value in _protobuf_fields(buf):
        if number == 1:
            values["dtype"] = value
        elif number == 2:
            values["shape"] = _tensor_shape(value)
        elif number == 3:
            values["shard_id"] = value
        elif number == 4:
            values["offset"] = value
        elif number == 5:
            values["size"] = value
        elif number == 6:
            values["crc32c"] = value
    dtype = DTYPE_NAMES.get(values.pop("dtype"), "unknown")
    return BundleEntry(name=name, dtype=dtype, **values)


def _block(data: bytes, offset: int, size: int, compression_seen: list[int]) -> bytes:
    """Returns the contents of the block at ``offset`` (without its trailer)."""
    compression = data[offset + size]
    compression_seen.append(compression)
    if compression != NO_COMPRESSION:
        raise ValueError(
            f"block at byte {offset} is compressed (type {compression}); "
            "TensorFlow bundle indexes are written uncompressed and this reader does not decode snappy"
        )
    return data[offset : offset + size]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Decodes the (key, value) entries of one block, undoing the prefix compression."""
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    entries_end = len(block) - 4 - 4 * num_restarts
    entries = []
    key = b""
    pos = 0
    while pos < entries_end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def read_bundle_index(path: str | Path, compression_seen: list[int] | None = None) -> dict[str, BundleEntry]:
    """Reads every variable entry of a TensorFlow checkpoint index.

    Args:
        path: a ``*.ckpt.index`` file.
        compression_seen: if given, the compression byte of every block read is appended to it.

    Returns:
        Variable name -> :class:`BundleEntry`, in the file's (sorted) key order; the header entry
        (empty key) is left out.

    Raises:
        ValueError: if the file is not an SSTable or a block is compressed.
    """
    data = Path(path).read_bytes()
    if compression_seen is None:
        compression_seen = []
    if len(data) < FOOTER_LENGTH:
        raise ValueError(f"{path}: too short for an SSTable footer")
    footer = data[-FOOTER_LENGTH:]
    magic = struct.unpack_from("<Q", footer, FOOTER_LENGTH - 8)[0]
    if magic != TABLE_MAGIC:
        raise ValueError(f"{path}: bad table magic {magic:#x}")
    pos = 0
    _metaindex_offset, pos = _varint(footer, pos)
    _metaindex_size, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)

    entries: dict[str, BundleEntry] = {}
    for _, handle in _block_entries(_block(data, index_offset, index_size, compression_seen)):
        block_offset, p = _varint(handle, 0)
        block_size, _ = _varint(handle, p)
        for key, value in _block_entries(_block(data, block_offset, block_size, compression_seen)):
            if key == b"":  # BundleHeaderProto (num_shards, endianness, version)
                continue
            name = key.decode("utf-8")
            entries[name] = _bundle_entry(name, value)
    return entries


def model_variables(entries: dict[str, BundleEntry]) -> dict[str, BundleEntry]:
    """Keeps the network's own variables: drops Adam slots and Adam's beta power accumulators."""
    return {
        name: e
        for name, e in entries.items()
        if not (name.endswith("/Adam") or name.endswith("/Adam_1") or name in ("beta1_power", "beta2_power"))
    }
