"""Base-model preparation: dequantize a GGUF once with transformers, cache it by sha256.

transformers needs tens of seconds to load a GGUF (it dequantizes every tensor) and
refuses `save_pretrained` on the result. So we copy the weights into a fresh model built
from the same config and save that, with the tokenizer, under
`<data root>/cache/bases/<sha256>/`. Later loads read safetensors in seconds, and the
weights are exactly the ones llama.cpp serves from the GGUF.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from oppu.storage.index import no_loading_bars
from oppu.storage.paths import data_root, private_dir
from oppu.storage.privacy import go_offline

# Decoder-only families whose GGUF transformers can load and whose projections are named
# q_proj/k_proj/v_proj/o_proj/gate_proj/up_proj/down_proj, as the LoRA targets expect.
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
CACHE_FORMAT = 1
META_FILE = "oppu-base.json"
GGUF_MAGIC = b"GGUF"

ReportStep = Callable[[str, float], None]


class BaseModelError(Exception):
    """A base GGUF that is missing, corrupt or of a kind we cannot train on."""


@dataclass(frozen=True)
class PreparedBase:
    gguf_path: Path
    sha256: str
    hf_dir: Path
    architecture: str
    n_head: int
    n_head_kv: int
    n_layer: int

    def load_model(self, dtype=None, device: str = "cpu"):
        import torch
        from transformers import AutoModelForCausalLM

        go_offline()
        with no_loading_bars():
            model = AutoModelForCausalLM.from_pretrained(
                self.hf_dir, dtype=dtype or torch.float32, local_files_only=True)
        return model.to(device)

    def load_tokenizer(self):
        from transformers import AutoTokenizer

        go_offline()
        return AutoTokenizer.from_pretrained(self.hf_dir, local_files_only=True)


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def bases_cache() -> Path:
    return private_dir(data_root() / "cache" / "bases")


def read_gguf_shape(gguf_path: Path) -> dict:
    """Architecture and head/layer counts from the GGUF header, or BaseModelError."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(gguf_path))

        def value(key: str):
            field = reader.fields.get(key)
            if field is None:
                raise BaseModelError(f"{gguf_path.name}: GGUF has no {key!r}")
            return field.contents()

        kind = reader.fields.get("general.type")
        if kind is not None and kind.contents() != "model":
            raise BaseModelError(f"{gguf_path.name} is an {kind.contents()} file (a LoRA adapter "
                                 "is imported with Import adapter… or `oppu import-adapter`), not a "
                                 "base model")
        arch = str(value("general.architecture"))
        if arch not in SUPPORTED_ARCHITECTURES:
            raise BaseModelError(
                f"{gguf_path.name}: architecture {arch!r} is not supported for training "
                f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
        n_head = int(value(f"{arch}.attention.head_count"))
        n_head_kv_field = reader.fields.get(f"{arch}.attention.head_count_kv")
        return {"architecture": arch, "n_head": n_head,
                "n_head_kv": int(n_head_kv_field.contents()) if n_head_kv_field else n_head,
                "n_layer": int(value(f"{arch}.block_count"))}
    except BaseModelError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, OSError) as error:  # from gguf/numpy
        raise BaseModelError(f"{gguf_path.name} is not a readable GGUF file "
                             f"({_one_line(error)})") from None


def _one_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _check_file(gguf_path: Path) -> None:
    if not gguf_path.is_file():
        raise BaseModelError(f"base model file not found: {gguf_path}")
    with open(gguf_path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise BaseModelError(f"{gguf_path.name} is not a GGUF file (wrong magic bytes)")


def _sweep_stale_temps(cache: Path) -> None:
    """Remove half-written cache folders of processes that no longer run (killed mid-way)."""
    for temp in cache.glob(".tmp-*"):
        try:
            pid = int(temp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            shutil.rmtree(temp, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's process: leave it


def _dequantize_to(gguf_path: Path, target: Path, shape: dict, sha: str,
                   report: ReportStep) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    go_offline()
    transformers_logging.disable_progress_bar()
    folder, name = str(gguf_path.parent), gguf_path.name
    report("reading the tokenizer", 0.05)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    report("dequantizing the weights", 0.25)
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    report("saving the cache", 0.85)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    del loaded
    fresh.save_pretrained(target, safe_serialization=True)
    report("saving the tokenizer", 0.95)
    tokenizer.save_pretrained(target)
    meta = {"format": CACHE_FORMAT, "sha256": sha, "source": str(gguf_path), **shape}
    (target / META_FILE).write_text(json.dumps(meta, indent=2))


def prepare_base(gguf_path: Path, report: ReportStep | None = None) -> PreparedBase:
    """The transformers copy of a base GGUF, made once and cached by the file's sha256."""
    report = report or (lambda _message, _fraction: None)
    gguf_path = Path(gguf_path).expanduser().resolve()
    _check_file(gguf_path)
    report("hashing the base model", 0.0)
    sha = sha256_file(gguf_path)
    cache = bases_cache()
    final = cache / sha
    meta_path = final / META_FILE
    if not meta_path.is_file():
        shape = read_gguf_shape(gguf_path)
        _sweep_stale_temps(cache)
        if final.exists() and not meta_path.is_file():  # no meta file: not a cache
            shutil.rmtree(final, ignore_errors=True)
        temp = cache / f".tmp-{sha[:16]}-{os.getpid()}"
        shutil.rmtree(temp, ignore_errors=True)
        try:
            _dequantize_to(gguf_path, temp, shape, sha, report)
            try:
                os.rename(temp, final)
            except OSError:
                if not meta_path.is_file():  # not a concurrent winner: a real failure
                    raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
            raise BaseModelError(f"cannot prepare {gguf_path.name}: {_one_line(error)}"
                                 ) from error
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    meta = json.loads(meta_path.read_text())
    report("base model ready", 1.0)
    return PreparedBase(gguf_path=gguf_path, sha256=sha, hf_dir=final,
                        **{k: meta[k] for k in ("architecture", "n_head", "n_head_kv", "n_layer")})


def describe(base: PreparedBase) -> dict:
    """A JSON-ready summary, for run records and adapter meta files."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(base).items()}
