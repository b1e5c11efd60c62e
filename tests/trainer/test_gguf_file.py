"""The fast GGUF header reader agrees with gguf-py and refuses damaged files with a reason."""

import struct

import gguf
import pytest

from oppu.trainer.gguf_file import GGUFFormatError, read_header


def test_header_matches_gguf_py(tiny_gguf):
    reader = gguf.GGUFReader(tiny_gguf)
    header = read_header(tiny_gguf)

    scalars = {k: f.contents() for k, f in reader.fields.items()
               if not k.startswith("GGUF.") and f.types[0] != gguf.GGUFValueType.ARRAY}
    assert {k: header.fields[k] for k in scalars} == pytest.approx(scalars)
    assert header.fields["tokenizer.ggml.tokens"] is None  # long arrays are skipped
    assert [(t.name, t.type, t.nbytes, header.data_start + t.offset) for t in header.tensors] == \
        [(t.name, t.tensor_type, t.n_bytes, t.data_offset) for t in reader.tensors]
    assert [t.shape for t in header.tensors] == \
        [tuple(reversed(t.shape.tolist())) for t in reader.tensors]


@pytest.mark.parametrize(("cut", "reason"), [
    (0, "empty"), (3, "not a GGUF"), (1000, "truncated"), (-10, "truncated")])
def test_damaged_files_are_refused(tmp_path, tiny_gguf, cut, reason):
    data = tiny_gguf.read_bytes()
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(data[:cut] if cut else b"")
    with pytest.raises(GGUFFormatError, match=reason):
        read_header(damaged)


def _metadata_only(path, key: str, kind: int, packed: bytes):
    name = key.encode()
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(name)) + name
                     + struct.pack("<I", kind) + packed)
    return path


@pytest.mark.parametrize("kind, packed", [
    (4, struct.pack("<I", 0)),  # uint32 0
    (8, struct.pack("<Q", 3) + b"abc"),  # a string
    (9, struct.pack("<IQII", 4, 2, 8, 8)),  # an array of two uint32
], ids=["zero", "string", "array"])
def test_a_damaged_alignment_is_refused_with_a_reason(tmp_path, kind, packed):
    damaged = _metadata_only(tmp_path / "odd.gguf", "general.alignment", kind, packed)
    with pytest.raises(GGUFFormatError, match="odd.gguf is damaged: general.alignment is"):
        read_header(damaged)
