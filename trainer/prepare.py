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

from oppu.storage.disk_space import require_free_space
from oppu.storage.index import no_loading_bars
from oppu.storage.paths import A_FOLDER, NO_SUCH_FILE, data_root, file_problem, private_dir
from oppu.storage.privacy import go_offline
from oppu.trainer.disk_needs import prepared_base_bytes
from oppu.trainer.gguf_file import MAGIC, NOT_GGUF

# Decoder-only families whose GGUF transformers can load and whose projections are named
# q_proj/k_proj/v_proj/o_proj/gate_proj/up_proj/down_proj, as the LoRA targets expect.
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
CACHE_FORMAT = 2  # 2: the meta file lists every file with its size
META_FILE = "oppu-base.json"
SHAPE_KEYS = ("architecture", "n_head", "n_head_kv", "n_layer")
REBUILDING = "the cached copy of this base was incomplete or outdated: preparing it again"

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
    from oppu.trainer.gguf_file import GGUFFormatError, read_header

    try:
        header = read_header(gguf_path)
    except GGUFFormatError as error:
        raise BaseModelError(str(error)) from None  # it names the file and what is wrong
    except OSError as error:
        raise _unreadable(gguf_path, error) from None

    def value(key: str):
        if header.get(key) is None:
            raise BaseModelError(f"{gguf_path.name}: GGUF has no {key!r}")
        return header.get(key)

    kind = header.get("general.type", "model")
    if kind != "model":
        raise BaseModelError(f"{gguf_path.name} is an {kind} file (a LoRA adapter is imported "
                             "with Import adapter… or `oppu import-adapter`), not a base model")
    arch = str(value("general.architecture"))
    if arch not in SUPPORTED_ARCHITECTURES:
        raise BaseModelError(
            f"{gguf_path.name}: architecture {arch!r} is not supported for training "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    try:
        n_head = int(value(f"{arch}.attention.head_count"))
        return {"architecture": arch, "n_head": n_head,
                "n_head_kv": int(header.get(f"{arch}.attention.head_count_kv", n_head)),
                "n_layer": int(value(f"{arch}.block_count"))}
    except (TypeError, ValueError):  # per-layer head counts: a layout we do not train
        raise BaseModelError(f"{gguf_path.name}: its head or layer counts are not single "
                             "numbers; this model layout is not supported for training") from None


def one_line(error: Exception) -> str:
    """The first line of an error's message: libraries add hints and tracebacks below."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _unreadable(gguf_path: Path, error: OSError) -> BaseModelError:
    reason = (error.strerror or one_line(error)).lower()
    return BaseModelError(f"cannot read {gguf_path}: {reason}")


def _check_file(gguf_path: Path) -> None:
    problem, _info = file_problem(gguf_path)
    if problem == A_FOLDER:
        raise BaseModelError(f"{gguf_path} is a folder, not a GGUF file")
    if problem == NO_SUCH_FILE:
        raise BaseModelError(f"base model file not found: {gguf_path}")
    if problem:
        raise BaseModelError(f"{gguf_path} cannot be a base model: {problem}")
    try:
        with open(gguf_path, "rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise _unreadable(gguf_path, error) from None
    if not magic:
        raise BaseModelError(f"{gguf_path.name} is empty")
    if magic != MAGIC:
        raise BaseModelError(f"{gguf_path.name} {NOT_GGUF}")


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


def _cached_meta(folder: Path, sha: str) -> dict | None:
    """The meta record of `folder` if it holds a whole, current cache of this GGUF, else None."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
        whole = (meta["format"] == CACHE_FORMAT and meta["sha256"] == sha
                 and all(key in meta for key in SHAPE_KEYS)
                 and all((folder / name).stat().st_size == size
                         for name, size in meta["files"].items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # damaged meta file
        return None
    return meta if whole else None


def _discard_broken_cache(folder: Path, sha: str, report: ReportStep) -> None:
    if folder.exists() and _cached_meta(folder, sha) is None:
        report(REBUILDING, 0.0)
        shutil.rmtree(folder, ignore_errors=True)


def _dequantize_to(gguf_path: Path, target: Path, shape: dict, sha: str,
                   report: ReportStep) -> dict:
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
    files = {path.name: path.stat().st_size for path in target.iterdir() if path.is_file()}
    meta = {"format": CACHE_FORMAT, "sha256": sha, "source": str(gguf_path), **shape,
            "files": files}
    (target / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def prepare_base(gguf_path: Path, report: ReportStep | None = None) -> PreparedBase:
    """The transformers copy of a base GGUF, made once and cached by the file's sha256."""
    report = report or (lambda _message, _fraction: None)
    gguf_path = Path(gguf_path).expanduser().resolve()
    _check_file(gguf_path)
    report("hashing the base model", 0.0)
    sha = sha256_file(gguf_path)
    cache = bases_cache()
    final = cache / sha
    meta = _cached_meta(final, sha)
    if meta is None:
        shape = read_gguf_shape(gguf_path)
        _sweep_stale_temps(cache)
        _discard_broken_cache(final, sha, report)
        require_free_space(cache, prepared_base_bytes(gguf_path),
                           "prepare the base model for training")
        temp = cache / f".tmp-{sha[:16]}-{os.getpid()}"
        shutil.rmtree(temp, ignore_errors=True)
        try:
            meta = _dequantize_to(gguf_path, temp, shape, sha, report)
            try:
                os.rename(temp, final)
            except OSError:
                if _cached_meta(final, sha) is None:  # not a concurrent winner: a real failure
                    raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
            raise BaseModelError(f"cannot prepare {gguf_path.name}: {one_line(error)}"
                                 ) from error
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    report("base model ready", 1.0)
    return PreparedBase(gguf_path=gguf_path, sha256=sha, hf_dir=final,
                        **{key: meta[key] for key in SHAPE_KEYS})


def describe(base: PreparedBase) -> dict:
    """A JSON-ready summary, for run records and adapter meta files."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(base).items()}
