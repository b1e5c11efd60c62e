"""A fast GGUF header reader and a writer that copies a base's metadata byte for byte.

gguf-py's `GGUFReader` builds Python objects for every element of every metadata array;
for a 49k-token vocabulary that takes seconds. Conversion needs only the scalar keys and
the tensor table, so this reader walks the header once and skips arrays, and the writer
carries the base's whole metadata block over verbatim: every key, tokenizer and chat
template included, exactly as it was.
"""

import mmap
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = b"GGUF"
NOT_GGUF = "is not a GGUF model file (it does not begin as one)"
DEFAULT_ALIGNMENT = 32
# GGUFValueType -> struct format of a scalar; 8 is STRING, 9 is ARRAY.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
_STRING, _ARRAY = 8, 9
_SHORT_ARRAY = 1024  # arrays up to this length are decoded (per-layer head counts and such)


class GGUFFormatError(ValueError):
    """A file that is not a readable GGUF: truncated, damaged or of another kind."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    type: int  # GGMLQuantizationType
    offset: int  # from the start of the data section
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy order: (rows, row length)."""
        return tuple(reversed(self.ne))


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    version: int
    n_kv: int
    kv_span: tuple[int, int]  # byte range of the metadata block
    fields: dict  # scalars, strings and short arrays; long arrays are left out
    tensors: list[TensorEntry]
    alignment: int
    data_start: int
    scalar_at: dict = field(default_factory=dict)  # key -> (file offset, struct format)

    def get(self, key: str, default=None):
        return self.fields.get(key, default)


def tensor_nbytes(ne: Iterable[int], qtype: int) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)]
    ne = list(ne)
    if ne[0] % block:
        raise GGUFFormatError(f"row length {ne[0]} is not a multiple of the block size {block}")
    return int(np.prod(ne[1:], dtype=np.int64)) * (ne[0] // block) * size


class _Cursor:
    def __init__(self, buffer, label: str, position: int = 0):
        self.buffer, self.label, self.position = buffer, label, position

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.buffer, self.position)
        self.position += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        length = self.take("Q")
        if self.position + length > len(self.buffer):
            raise GGUFFormatError(f"{self.label} is truncated: a string runs past its end")
        raw = self.buffer[self.position:self.position + length]
        self.position += length
        return bytes(raw).decode("utf-8", errors="replace")

    def value(self, kind: int):
        if kind == _STRING:
            return self.string()
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind != _ARRAY:
            raise GGUFFormatError(f"{self.label} is damaged: unknown metadata value type {kind}")
        item_kind, count = self.take("I"), self.take("Q")
        if count <= _SHORT_ARRAY:
            return [self.value(item_kind) for _ in range(count)]
        if item_kind in _SCALARS:
            self.position += count * struct.calcsize(_SCALARS[item_kind])
        else:
            for _ in range(count):
                self.value(item_kind)
        return None


def read_header(path: Path) -> GGUFHeader:
    """Metadata scalars and the tensor table of a GGUF, checked against the file's length."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:  # mmap refuses an empty file
                raise GGUFFormatError(f"{path.name} is empty")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                return _parse(path, buffer)
    except (struct.error, OverflowError, MemoryError):
        raise GGUFFormatError(f"{path.name} is truncated or damaged (its header is cut "
                              "short)") from None


def _parse(path: Path, buffer) -> GGUFHeader:
    if buffer[:4] != MAGIC:
        raise GGUFFormatError(f"{path.name} {NOT_GGUF}")
    cursor = _Cursor(buffer, path.name, 4)
    version, n_tensors, n_kv = cursor.take("IQQ")
    if version not in (2, 3):
        raise GGUFFormatError(f"{path.name}: unsupported GGUF version {version}")
    kv_start, fields = cursor.position, {}
    scalar_at = {}
    for _ in range(n_kv):
        key = cursor.string()
        kind = cursor.take("I")
        if kind in _SCALARS:
            scalar_at[key] = (cursor.position, _SCALARS[kind])
        fields[key] = cursor.value(kind)
    kv_end = cursor.position
    tensors, infos = [], []
    for _ in range(n_tensors):
        name = cursor.string()
        n_dims = cursor.take("I")
        ne = tuple(cursor.take("Q") for _ in range(n_dims))
        infos.append((name, ne, *cursor.take("IQ")))
    for name, ne, kind, offset in infos:
        try:
            tensors.append(TensorEntry(name, ne, kind, offset, tensor_nbytes(ne, kind)))
        except (KeyError, ValueError):
            raise GGUFFormatError(f"{path.name}: tensor {name} has an unknown type {kind}") \
                from None
    alignment = fields.get("general.alignment", DEFAULT_ALIGNMENT)
    if type(alignment) is not int or alignment <= 0:
        raise GGUFFormatError(f"{path.name} is damaged: general.alignment is {alignment!r}")
    data_start = _pad(cursor.position, alignment)
    end = max((data_start + t.offset + t.nbytes for t in tensors), default=data_start)
    if end > len(buffer):
        raise GGUFFormatError(f"{path.name} is truncated: its tensors need {end} bytes, "
                              f"the file has {len(buffer)}")
    return GGUFHeader(path, version, n_kv, (kv_start, kv_end), fields, tensors, alignment,
                      data_start, scalar_at)


def _pad(position: int, alignment: int) -> int:
    return (position + alignment - 1) // alignment * alignment


def tensor_data(header: GGUFHeader, entry: TensorEntry) -> np.ndarray:
    """The stored bytes of one tensor, shaped (rows, bytes per row), read from disk."""
    with open(header.path, "rb") as handle:
        handle.seek(header.data_start + entry.offset)
        raw = handle.read(entry.nbytes)
    return np.frombuffer(raw, dtype=np.uint8).reshape(*entry.shape[:-1], -1)


def write_like(header: GGUFHeader, out: BinaryIO, tensors: list[TensorEntry],
               payload: Callable[[TensorEntry], bytes | np.ndarray],
               scalars: dict[str, int | float] | None = None) -> None:
    """Write a GGUF with `header`'s metadata block verbatim but for the numbers in
    `scalars` (keys the header has, as numbers of the same type), and `tensors` (in order).

    Offsets are recomputed from `tensors`' sizes; `payload(entry)` gives each one's bytes.
    """
    with open(header.path, "rb") as source:
        source.seek(header.kv_span[0])
        metadata = bytearray(source.read(header.kv_span[1] - header.kv_span[0]))
    for key, value in (scalars or {}).items():
        position, fmt = header.scalar_at[key]
        struct.pack_into("<" + fmt, metadata, position - header.kv_span[0], value)
    out.write(MAGIC + struct.pack("<IQQ", header.version, len(tensors), header.n_kv))
    out.write(metadata)
    offset = 0
    for entry in tensors:
        name = entry.name.encode("utf-8")
        out.write(struct.pack("<Q", len(name)) + name + struct.pack("<I", len(entry.ne)))
        out.write(struct.pack(f"<{len(entry.ne)}Q", *entry.ne))
        out.write(struct.pack("<IQ", entry.type, offset))
        offset += _pad(entry.nbytes, header.alignment)
    out.write(b"\0" * (_pad(out.tell(), header.alignment) - out.tell()))
    for entry in tensors:
        data = payload(entry)
        raw = data.tobytes() if isinstance(data, np.ndarray) else data
        if len(raw) != entry.nbytes:
            raise ValueError(f"tensor {entry.name}: {len(raw)} bytes, expected {entry.nbytes}")
        out.write(raw)
        out.write(b"\0" * (_pad(entry.nbytes, header.alignment) - entry.nbytes))
