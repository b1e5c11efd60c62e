"""Cheap checks of GGUF files with gguf-py, made before llama.cpp ever sees them.

llama.cpp reports many bad files as a load failure, but some mistakes (an adapter for
another base, a truncated file) can end in an abort that takes the whole process down.
So a model gets its header checked, and an adapter is compared with its base tensor by
tensor, first.
"""

import struct
from dataclasses import dataclass
from pathlib import Path

from oppu.engine.errors import AdapterMismatch, ModelFileError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
LORA_SUFFIXES = (".lora_a", ".lora_b")


@dataclass(frozen=True)
class GGUFSummary:
    path: Path
    kind: str  # general.type: "model" or "adapter"
    architecture: str
    fields: dict  # scalar metadata only
    tensors: dict[str, tuple[int, ...]]  # ggml order: ne[0] is the input width

    def number(self, key: str) -> int | None:
        value = self.fields.get(f"{self.architecture}.{key}")
        return int(value) if value is not None else None


@dataclass(frozen=True)
class AdapterSummary:
    rank: int
    alpha: float | None
    targets: tuple[str, ...]  # base tensor names the adapter changes


def check_header(path: Path) -> None:
    """Existence, size and the GGUF magic and version: enough to refuse most bad files."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "file not found")
    if not path.is_file():
        raise ModelFileError(path, "not a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise ModelFileError(path, f"cannot read: {error.strerror or error}") from None
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelFileError(path, "not a GGUF model file (it does not begin as one)")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(path, f"unsupported GGUF version {version}")


def read_summary(path: Path) -> GGUFSummary:
    """Metadata and tensor shapes of a GGUF, or ModelFileError if it is damaged."""
    import gguf

    path = Path(path)
    check_header(path)
    try:
        reader = gguf.GGUFReader(path)
        fields = {key: field.contents() for key, field in reader.fields.items()
                  if field.types and field.types[0] != gguf.GGUFValueType.ARRAY}
        tensors = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
        data_end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as error:  # noqa: BLE001 - gguf-py fails in many ways on damaged bytes
        detail = " ".join(str(error).split())[:120]
        raise ModelFileError(path, f"damaged GGUF ({detail})") from None
    if data_end > path.stat().st_size:
        raise ModelFileError(path, "truncated: the tensor data ends past the end of the file")
    architecture = fields.get("general.architecture")
    if not architecture:
        raise ModelFileError(path, "no general.architecture in its metadata")
    return GGUFSummary(path, str(fields.get("general.type", "model")), str(architecture),
                       fields, tensors)


def check_model(summary: GGUFSummary) -> None:
    if summary.kind != "model":
        raise ModelFileError(summary.path, f"is a {summary.kind} file, not a model")
    if not summary.tensors:
        raise ModelFileError(summary.path, "holds no tensors")


def check_adapter(adapter: GGUFSummary, base: GGUFSummary) -> AdapterSummary:
    """The adapter's shape facts, or AdapterMismatch naming the first thing that differs."""
    def refuse(reason: str):
        return AdapterMismatch(adapter.path, f"{reason}; it was not made for {base.path.name}")

    if adapter.kind != "adapter" or adapter.fields.get("adapter.type") != "lora":
        raise AdapterMismatch(adapter.path, "not a LoRA adapter GGUF")
    if adapter.architecture != base.architecture:
        raise refuse(f"architecture {adapter.architecture}, the base is {base.architecture}")
    for key in ("embedding_length", "block_count"):
        mine, theirs = adapter.number(key), base.number(key)
        if mine is not None and mine != theirs:
            raise refuse(f"{key} {mine}, the base has {theirs}")
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, shape in adapter.tensors.items():
        stem, dot, part = name.rpartition(".")
        if not dot or "." + part not in LORA_SUFFIXES:
            raise AdapterMismatch(adapter.path, f"unexpected tensor {name}")
        pairs.setdefault(stem, {})[part] = shape
    if not pairs:
        raise AdapterMismatch(adapter.path, "holds no LoRA tensors")
    ranks = set()
    for stem, parts in pairs.items():
        if set(parts) != {"lora_a", "lora_b"}:
            raise AdapterMismatch(adapter.path, f"{stem} lacks its lora_a or lora_b half")
        if stem not in base.tensors:
            raise refuse(f"it changes {stem}, which the base does not have")
        ranks.add(_pair_rank(stem, parts["lora_a"], parts["lora_b"], base.tensors[stem], refuse))
    alpha = adapter.fields.get("adapter.lora.alpha")
    return AdapterSummary(max(ranks), float(alpha) if alpha is not None else None,
                          tuple(sorted(pairs)))


def _pair_rank(stem, a, b, weight, refuse) -> int:
    """The rank of one lora_a/lora_b pair, checked as llama.cpp checks it."""
    if len(a) != 2 or len(b) != 2 or len(weight) < 2:
        raise refuse(f"{stem} is not a matrix pair")
    if stem.startswith("token_embd"):  # llama.cpp stores this one with A and B flipped
        fits = weight[0] == b[1] and weight[1] == a[1] and a[0] == b[0]
        rank = a[0]
    else:
        fits = weight[0] == a[0] and weight[1] == b[1] and a[1] == b[0]
        rank = a[1]
    if not fits:
        raise refuse(f"{stem} has lora shapes {a} and {b} for a weight of shape {weight[:2]}")
    return rank
