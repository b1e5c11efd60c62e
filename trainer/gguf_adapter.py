"""A PEFT LoRA adapter as a llama.cpp GGUF LoRA adapter, written with gguf-py.

The trap: for llama-family models, llama.cpp's GGUF stores the rows of q and k permuted
for its rope layout, and transformers undoes that when it loads the GGUF. PEFT's lora_B
lives in transformers' row order, so for q_proj and k_proj it must be permuted the same
way before it can sit next to llama.cpp's weights. Without it the adapter loads without
error and gives wrong output.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oppu.storage.atomic import atomic_path
from oppu.trainer.gguf_file import read_header
from oppu.trainer.peft_files import (
    AdapterMismatch,
    PeftLora,
    UnsupportedAdapter,
    read_peft_dir,
)

__all__ = ["UnsupportedAdapter", "lora_tensors", "read_base_info", "write_adapter_gguf"]

# Architectures whose q/k rows llama.cpp's converter permutes (and transformers un-permutes).
ROPE_PERMUTED_ARCHS = frozenset({"llama"})
BASE_SHA256_KEY = "oppu.base_sha256"
NAME_SUFFIX = " personal LoRA"  # an adapter GGUF's general.name: its base's, then this


@dataclass(frozen=True)
class BaseInfo:
    """What conversion needs to know about a base GGUF, read from its header."""

    path: Path
    name: str
    architecture: str
    n_blocks: int
    n_head: int
    n_head_kv: int
    shapes: dict[str, tuple[int, ...]]  # tensor name -> numpy shape (rows, columns)

    @property
    def permutes_qk(self) -> bool:
        return self.architecture in ROPE_PERMUTED_ARCHS

    def permuted_heads(self, stem: str) -> int | None:
        """The head count llama.cpp permutes the rows of tensor `stem` (`blk.0.attn_q`) by,
        or None where it keeps them in order."""
        if not self.permutes_qk:
            return None
        return {"attn_q": self.n_head, "attn_k": self.n_head_kv}.get(stem.rpartition(".")[2])


@dataclass(frozen=True)
class LoraTensor:
    """One adapted base tensor: delta = scale · B @ A, already in llama.cpp's row order."""

    base_name: str  # e.g. blk.0.attn_q.weight
    a: np.ndarray  # (r, in)
    b: np.ndarray  # (out, r)


def read_base_info(path: Path) -> BaseInfo:
    header = read_header(path)
    arch = header.get("general.architecture")
    if not arch:
        raise AdapterMismatch(f"{Path(path).name} has no general.architecture")
    n_head = header.get(f"{arch}.attention.head_count", 0)
    n_head_kv = header.get(f"{arch}.attention.head_count_kv", n_head)
    if isinstance(n_head, list) or isinstance(n_head_kv, list):
        raise UnsupportedAdapter(f"{Path(path).name} has per-layer head counts, which "
                                 "conversion does not support")
    return BaseInfo(
        path=Path(path),
        name=str(header.get("general.name", Path(path).stem)),
        architecture=str(arch),
        n_blocks=int(header.get(f"{arch}.block_count", 0)),
        n_head=int(n_head),
        n_head_kv=int(n_head_kv),
        shapes={t.name: t.shape for t in header.tensors},
    )


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row permutation (convert_hf_to_gguf.py `permute`), per head pair."""
    rows = weights.shape[0]
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensor_name_map(base: BaseInfo):
    import gguf

    arch = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == base.architecture), None)
    if arch is None:
        raise UnsupportedAdapter(f"gguf-py does not know the architecture {base.architecture!r}")
    return gguf.get_tensor_name_map(arch, base.n_blocks)


def lora_tensors(lora: PeftLora, base: BaseInfo, permute_qk: bool = True) -> list[LoraTensor]:
    """Map each PEFT module to its base GGUF tensor, check the shapes, permute q/k's B."""
    name_map = _tensor_name_map(base)
    mapped = []
    for module, (a, b) in lora.modules.items():
        stem = name_map.get_name(module)
        if stem is None:
            raise UnsupportedAdapter(f"unknown target module {module}: it has no tensor in a "
                                     f"{base.architecture} GGUF")
        name = f"{stem}.weight"
        if name not in base.shapes:
            if stem == "output" and "token_embd.weight" in base.shapes:
                raise UnsupportedAdapter("LoRA on lm_head cannot be loaded: this base ties its "
                                         "output to the token embeddings (no output.weight)")
            raise AdapterMismatch(f"module {module} targets {name}, which the base does not have")
        rows, columns = base.shapes[name]
        if a.shape[1] != columns or b.shape[0] != rows:
            raise AdapterMismatch(f"module {module}: B·A is {b.shape[0]}x{a.shape[1]} but the base "
                                  f"tensor {name} is {rows}x{columns}")
        heads = base.permuted_heads(stem) if permute_qk else None
        if heads:
            b = permute_rows(b, heads)
        mapped.append(LoraTensor(name, a, b))
    if lora.others:
        raise UnsupportedAdapter(f"the adapter holds tensors that are not LoRA pairs, which "
                                 f"llama.cpp cannot load ({', '.join(lora.others[:3])})")
    return mapped


def write_adapter_gguf(peft_dir: Path, base_gguf: Path, out_path: Path, *,
                       permute_qk: bool = True, base_sha256: str | None = None) -> Path:
    """Write the PEFT adapter in `peft_dir` as a GGUF LoRA for `base_gguf`, atomically."""
    lora = read_peft_dir(peft_dir)
    base = read_base_info(base_gguf)
    tensors = lora_tensors(lora, base, permute_qk)
    with atomic_path(Path(out_path)) as temp:
        write_lora_gguf(temp, base, lora, tensors, base_sha256)
    return Path(out_path)


def write_lora_gguf(path: Path, base: BaseInfo, lora: PeftLora, tensors: list[LoraTensor],
                    base_sha256: str | None = None) -> None:
    """The GGUF LoRA file itself: adapter metadata and each tensor's lora_a and lora_b."""
    import gguf

    writer = gguf.GGUFWriter(path, base.architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    # llama.cpp scales by alpha / rank; this alpha makes that equal PEFT's own scale.
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, lora.scale * lora.rank)
    writer.add_name(base.name + NAME_SUFFIX)
    if base_sha256:
        writer.add_string(BASE_SHA256_KEY, base_sha256)
    for t in tensors:
        writer.add_tensor(f"{t.base_name}.lora_a", np.ascontiguousarray(t.a, np.float32))
        writer.add_tensor(f"{t.base_name}.lora_b", np.ascontiguousarray(t.b, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
