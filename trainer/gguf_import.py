"""A bare LoRA adapter `.gguf` (llama.cpp's format, as `oppu export --format gguf` writes it)
read back into PEFT files, the inverse of `gguf_adapter.lora_tensors`.

Names go back through gguf-py's tensor map for the base's architecture, q/k's B matrices
are un-permuted, and llama.cpp's alpha becomes PEFT's (both scale by alpha / rank). Nothing
is trusted before it is checked: the header, the adapter type, the architecture, pairs and
shapes; the result then goes through the same validation as any other import.
"""

import json
import math
from pathlib import Path

import numpy as np

from oppu.trainer.gguf_adapter import BASE_SHA256_KEY, NAME_SUFFIX, BaseInfo, _tensor_name_map
from oppu.trainer.peft_files import KEY_PREFIX, AdapterMismatch, CorruptAdapter, UnsupportedAdapter

HF_MODULE_PREFIX = "model.layers."


def unpermute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of `gguf_adapter.permute_rows`."""
    rows = weights.shape[0]
    return (weights.reshape(n_head, rows // n_head // 2, 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _field(reader, key: str):
    field = reader.get_field(key)
    try:
        return None if field is None else field.contents()
    except (UnicodeDecodeError, ValueError, IndexError) as error:
        raise CorruptAdapter(f"its metadata {key} is damaged ({error})") from None


def _alpha(reader) -> float | None:
    alpha = _field(reader, "adapter.lora.alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))):
        raise CorruptAdapter(f"its metadata adapter.lora.alpha is {alpha!r}, not a number")
    if alpha is not None and not 0 < alpha < math.inf:
        raise CorruptAdapter(f"its metadata adapter.lora.alpha is {alpha!r}; it must be a "
                             "positive finite number")
    return alpha


def projection_modules(base: BaseInfo) -> dict[str, str]:
    """GGUF tensor stem (`blk.0.attn_q`) -> the PEFT module name of a decoder projection."""
    name_map = _tensor_name_map(base)
    stems = {}
    for block in range(base.n_blocks):
        for module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                       "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            hf_name = f"{HF_MODULE_PREFIX}{block}.{module}"
            stem = name_map.get_name(hf_name)
            if stem is not None:
                stems[stem] = hf_name
    return stems


def read_adapter_gguf(path: Path, base: BaseInfo) -> tuple[bytes, bytes, dict]:
    """(adapter_config.json, adapter_model.safetensors, meta) from a LoRA GGUF for `base`."""
    import gguf
    from safetensors.numpy import save

    try:
        reader = gguf.GGUFReader(path)
    except OSError as error:
        raise CorruptAdapter(f"it cannot be read ({error.strerror or error})") from None
    except (ValueError, IndexError, KeyError):  # gguf-py's words are numpy's
        raise CorruptAdapter("the GGUF is damaged or truncated: its header does not match "
                             "the data that follows") from None
    if _field(reader, "general.type") != "adapter" or _field(reader, "adapter.type") != "lora":
        raise UnsupportedAdapter("it is a GGUF model (a base model, or a merged export), "
                                 "not a LoRA adapter: import an adapter's .zip or adapter "
                                 ".gguf; a model to build on is chosen as the base model")
    architecture = _field(reader, "general.architecture")
    if architecture != base.architecture:
        raise AdapterMismatch(f"it is for a {architecture} model, this profile's base is "
                              f"{base.architecture}")
    alpha = _alpha(reader)
    stems = projection_modules(base)
    halves: dict[str, dict[str, np.ndarray]] = {}
    for tensor in reader.tensors:
        weight_name, _, half = tensor.name.rpartition(".")  # blk.0.attn_q.weight, lora_a
        stem = weight_name.removesuffix(".weight")
        if half not in ("lora_a", "lora_b") or stem not in stems:
            raise UnsupportedAdapter(f"tensor {tensor.name} is not a LoRA pair of a projection "
                                     "this app can train")
        if tensor.tensor_type not in (gguf.GGMLQuantizationType.F32,
                                      gguf.GGMLQuantizationType.F16):
            raise UnsupportedAdapter(f"tensor {tensor.name} is {tensor.tensor_type.name}; only "
                                     "F32 and F16 adapters can be imported")
        halves.setdefault(stem, {})[half] = np.array(tensor.data, dtype=np.float32)
    if not halves:
        raise CorruptAdapter("the GGUF holds no LoRA tensors")
    tensors, ranks = {}, set()
    for stem, pair in sorted(halves.items()):
        if set(pair) != {"lora_a", "lora_b"}:
            raise CorruptAdapter(f"{stem} has {', '.join(pair)} without its partner")
        a, b = pair["lora_a"], pair["lora_b"]
        ranks.add(a.shape[0])
        heads = base.permuted_heads(stem)
        if heads and b.shape[0] % (2 * heads) == 0:  # other shapes are refused later
            b = unpermute_rows(b, heads)
        module = stems[stem]
        tensors[f"{KEY_PREFIX}{module}.lora_A.weight"] = a
        tensors[f"{KEY_PREFIX}{module}.lora_B.weight"] = b
    if len(ranks) != 1:
        raise UnsupportedAdapter(f"the tensors have different ranks ({sorted(ranks)}), which a "
                                 "PEFT adapter cannot hold")
    rank = ranks.pop()
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank,
              "lora_alpha": float(alpha) if alpha is not None else float(rank),
              "lora_dropout": 0.0, "bias": "none",
              "target_modules": sorted({stems[s].rpartition(".")[2] for s in halves})}
    sha256 = _field(reader, BASE_SHA256_KEY)
    name = str(_field(reader, "general.name") or "")
    meta = {"base": {"architecture": architecture}
            | ({"name": name.removesuffix(NAME_SUFFIX)} if name.endswith(NAME_SUFFIX) else {})
            | ({"sha256": str(sha256)} if sha256 else {})}
    return json.dumps(config, indent=2).encode(), save(tensors), meta
