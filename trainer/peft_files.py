"""Reading a PEFT LoRA adapter (`adapter_config.json` + `adapter_model.safetensors`) safely.

Nothing here unpickles: the safetensors file is parsed by hand, its header checked
against the file's real length before a byte of tensor data is read, so a truncated or
forged file is refused with a reason instead of crashing a library.
"""

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# A trained adapter changes the base's weights by well under 1 (by 0.009 at most after a
# default-preset run on 1,000 words); an imported one whose change could exceed this is
# damaged, and would only make chat print noise.
MAX_WEIGHT_CHANGE = 100.0
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
MODEL_CARD_NAME = "README.md"  # written by save_pretrained; it repeats the base's local path
KEY_PREFIX = "base_model.model."
MAX_HEADER_BYTES = 100 * 2**20

# dtype name -> (numpy dtype of the stored bytes, bytes per element)
_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2), "F64": ("<f8", 8)}

# Config switches whose adapters llama.cpp cannot reproduce, with the reason shown to the user.
_UNSUPPORTED_SWITCHES = {
    "use_dora": "DoRA adapters (use_dora) cannot be loaded by llama.cpp",
    "rank_pattern": "per-module ranks (rank_pattern) cannot be written as a llama.cpp adapter",
    "alpha_pattern": "per-module alphas (alpha_pattern) cannot be written as a llama.cpp adapter,"
                     " which has one alpha",
    "modules_to_save": "fully trained modules (modules_to_save) are not part of a LoRA adapter",
    "fan_in_fan_out": "fan_in_fan_out (Conv1D) layers are not supported",
    "lora_bias": "LoRA biases (lora_bias) cannot be loaded by llama.cpp",
    "layer_replication": "layer_replication changes the model's layers",
    "trainable_token_indices": "trained token embeddings are not supported",
    "target_parameters": "LoRA on raw parameters (target_parameters) is not supported",
}


class AdapterFileError(ValueError):
    """An adapter that cannot be used; the message is one line a person can act on."""


class CorruptAdapter(AdapterFileError):
    """The files are damaged, truncated or not what they claim to be."""


class UnsupportedAdapter(AdapterFileError):
    """A valid PEFT adapter that llama.cpp cannot load."""


class AdapterMismatch(AdapterFileError):
    """An adapter whose tensors do not fit the base model."""


@dataclass
class PeftLora:
    """A LoRA adapter: per module (`model.layers.0.self_attn.q_proj`), A (r, in) and B (out, r)."""

    config: dict
    rank: int
    alpha: float
    modules: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)  # saved tensors that are not LoRA pairs

    @property
    def scale(self) -> float:
        """The factor PEFT puts on B·A."""
        root = math.sqrt(self.rank) if self.config.get("use_rslora") else self.rank
        return self.alpha / root

    def same_adapter(self, other: "PeftLora") -> bool:
        """The same update B·A·scale on the same modules, whichever file each came from."""
        if (self.rank, self.scale, self.modules.keys()) != (other.rank, other.scale,
                                                            other.modules.keys()):
            return False
        return all(np.array_equal(mine, theirs)
                   for name, pair in self.modules.items()
                   for mine, theirs in zip(pair, other.modules[name], strict=True))


def parse_safetensors(data: bytes, label: str = WEIGHTS_NAME) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file as float32 arrays, after checking its header."""
    if len(data) < 8:
        raise CorruptAdapter(f"{label} is empty or truncated ({len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len == 0 or header_len > min(MAX_HEADER_BYTES, len(data) - 8):
        raise CorruptAdapter(f"{label} is not a safetensors file or is truncated "
                             f"(header of {header_len} bytes in a {len(data)}-byte file)")
    try:
        header = parsed_json(data[8:8 + header_len])
    except ValueError:
        raise CorruptAdapter(f"{label} has a damaged safetensors header") from None
    if not isinstance(header, dict):
        raise CorruptAdapter(f"{label} has a damaged safetensors header")
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + header_len:]
    tensors, end = {}, 0
    for name, info in sorted(header.items(), key=lambda item: _offsets(item, label)[0]):
        begin, stop = _offsets((name, info), label)
        dtype, width = _DTYPES.get(info.get("dtype"), (None, 0))
        if dtype is None:
            raise CorruptAdapter(f"{label}: tensor {name} has unsupported dtype {info.get('dtype')}")
        shape = info.get("shape")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or begin != end or stop - begin != width * math.prod(shape)):
            raise CorruptAdapter(f"{label}: tensor {name} has an inconsistent header entry")
        if stop > len(body):
            raise CorruptAdapter(f"{label} is truncated: tensor {name} needs bytes up to {stop},"
                                 f" the file holds {len(body)}")
        raw = np.frombuffer(body[begin:stop], dtype=dtype).reshape(shape)
        if info["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = raw.astype(np.float32)
        end = stop
    if end != len(body):
        raise CorruptAdapter(f"{label} has {len(body) - end} stray bytes after its tensors")
    return tensors


def _offsets(item, label: str) -> tuple[int, int]:
    name, info = item
    offsets = info.get("data_offsets") if isinstance(info, dict) else None
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
        raise CorruptAdapter(f"{label}: tensor {name} has invalid data offsets")
    return offsets[0], offsets[1]


def parsed_json(raw: str | bytes):
    """JSON from a file made elsewhere: bad bytes, bad syntax, or nesting deep enough to
    exhaust Python's parser (a 200 KB "[[[…") are all ValueError."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_config(text: str | bytes) -> dict:
    """The adapter config, refused if it is not a LoRA that llama.cpp can represent."""
    try:
        config = parsed_json(text)
    except ValueError:
        raise CorruptAdapter(f"{CONFIG_NAME} is not valid JSON") from None
    if not isinstance(config, dict):
        raise CorruptAdapter(f"{CONFIG_NAME} is not a JSON object")
    if config.get("peft_type") != "LORA":
        raise UnsupportedAdapter(f"not a LoRA adapter (peft_type {config.get('peft_type')!r})")
    for key, reason in _UNSUPPORTED_SWITCHES.items():
        if config.get(key):
            raise UnsupportedAdapter(reason)
    if config.get("bias", "none") != "none":
        raise UnsupportedAdapter(f"trained biases (bias={config['bias']!r}) cannot be loaded by "
                                 "llama.cpp")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if (type(rank) is not int or rank <= 0 or type(alpha) not in (int, float)
            or not 0 < alpha < math.inf):
        raise CorruptAdapter(f"{CONFIG_NAME} lacks a valid rank r and lora_alpha")
    return config


def _largest_change(scale: float, a: np.ndarray, b: np.ndarray) -> float:
    """A bound on |scale · B·A| over all weights, without the product (a large model's
    is big): each rank's largest entry of B's column times that of A's row, summed. An
    overflow is infinite, and refused."""
    if not (a.size and b.size):
        return 0.0
    with np.errstate(over="ignore"):
        per_rank = np.abs(b).max(axis=0).astype(np.float64) * np.abs(a).max(axis=1)
        return abs(scale) * float(per_rank.sum())


def build_lora(config: dict, tensors: dict[str, np.ndarray]) -> PeftLora:
    """Pair each module's lora_A and lora_B; other tensors are listed in `others`."""
    pairs: dict[str, dict[str, np.ndarray]] = {}
    lora = PeftLora(config=config, rank=config["r"], alpha=float(config["lora_alpha"]))
    for key, array in tensors.items():
        stem = key.removeprefix(KEY_PREFIX)
        module, _, kind = stem.rpartition(".lora_")
        if "lora_magnitude" in key:
            raise UnsupportedAdapter(f"DoRA magnitudes ({key}) cannot be loaded by llama.cpp")
        if kind not in ("A.weight", "B.weight") or not module:
            lora.others.append(key)
            continue
        pairs.setdefault(module, {})[kind[0]] = array
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise CorruptAdapter(f"module {module} has lora_{''.join(pair)} without its partner")
        a, b = pair["A"], pair["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != lora.rank or b.shape[1] != lora.rank:
            raise AdapterMismatch(f"module {module}: lora_A {a.shape} and lora_B {b.shape} do not "
                                  f"have rank {lora.rank}")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise CorruptAdapter(f"module {module} holds weights that are not finite numbers "
                                 "(NaN or infinity)")
        if (change := _largest_change(lora.scale, a, b)) > MAX_WEIGHT_CHANGE:
            raise CorruptAdapter(f"module {module} could change a weight by up to {change:.3g}, "
                                 f"far beyond what training makes (under {MAX_WEIGHT_CHANGE:g}"
                                 "): the adapter is damaged")
        lora.modules[module] = (a, b)
    uncovered = [module for module in lora.modules if not _targeted(config, module)]
    if uncovered:
        raise CorruptAdapter(f"{CONFIG_NAME}'s target_modules "
                             f"({config.get('target_modules')!r}) leave out {uncovered[0]}, "
                             "whose weights the adapter holds: PEFT would drop them")
    if not lora.modules and lora.others:
        raise UnsupportedAdapter(f"the adapter holds no LoRA pairs llama.cpp can load "
                                 f"({', '.join(lora.others[:3])})")
    if not lora.modules:
        raise CorruptAdapter("the adapter holds no LoRA tensors")
    return lora


def _targeted(config: dict, module: str) -> bool:
    """Whether PEFT applies the config's LoRA to `module`, as it reads target_modules: a
    list of name endings, "all-linear", or a regular expression for the whole name."""
    targets = config.get("target_modules")
    if isinstance(targets, list):
        return any(module == t or module.endswith(f".{t}") for t in targets
                   if isinstance(t, str))
    if targets == "all-linear":
        return True
    try:
        return isinstance(targets, str) and re.fullmatch(targets, module) is not None
    except re.error:
        return False


def parse_lora(config_text: str | bytes, weights: bytes) -> PeftLora:
    return build_lora(parse_config(config_text), parse_safetensors(weights))


def read_peft_dir(folder: Path) -> PeftLora:
    folder = Path(folder)
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise CorruptAdapter(f"{folder} is not a PEFT adapter folder (missing {', '.join(missing)})")
    return parse_lora((folder / CONFIG_NAME).read_bytes(), (folder / WEIGHTS_NAME).read_bytes())


def without_local_paths(config_bytes: bytes, base_name: str) -> bytes:
    """adapter_config.json naming its base by `base_name` instead of the folder peft loaded
    it from, which is a path on this machine (the user's name in it): files that leave the
    profile must not carry it."""
    config = json.loads(config_bytes)
    if config.get("base_model_name_or_path") == base_name:
        return config_bytes
    config["base_model_name_or_path"] = base_name
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


def save_without_local_paths(peft_dir: Path, base_name: str) -> None:
    """Rewrite what `save_pretrained` left in `peft_dir` without local paths: the config's
    base path, and the model card (README.md) that repeats it."""
    config = Path(peft_dir) / CONFIG_NAME
    config.write_bytes(without_local_paths(config.read_bytes(), base_name))
    (Path(peft_dir) / MODEL_CARD_NAME).unlink(missing_ok=True)
