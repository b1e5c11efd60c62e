"""A llama.cpp model loaded once, with LoRA adapters attached and detached between replies.

Reusing one loaded model across adapter switches is safe because every switch also
forgets the evaluated tokens: llama-cpp-python reuses the longest cached prompt prefix
(and, for an identical prompt, even the cached logits), and those were computed under the
previous adapter. `tests/engine/test_llm.py` compares a switched engine with fresh ones.
"""

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Self

from oppu.engine.errors import ModelFileError
from oppu.engine.gguf_check import (
    AdapterSummary,
    GGUFSummary,
    check_adapter,
    check_header,
    check_model,
    read_summary,
)
from oppu.engine.template import ChatTemplate
from oppu.storage.process_output import REDIRECT_LOCK

DEFAULT_N_CTX = 4096
UNLOADABLE = ("llama.cpp cannot load it: the file is damaged, truncated or of an architecture "
              "it does not support")


def cpu_threads() -> int:
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gpu_layers() -> int:
    """Every layer on the GPU when llama.cpp was built with offload, else none."""
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


@contextlib.contextmanager
def _without_amx_buffers():
    """Load without llama.cpp's extra (AMX/repack) weight buffers on CPUs with AMX.

    On AMX machines ggml routes quantized matmuls to its AMX kernels, which crashed the
    process with a segfault in `ggml_backend_amx_mul_mat` on our reference machine.
    Llama() exposes no switch for this, so its default model parameters are patched for
    the duration of one construction (serialized by `REDIRECT_LOCK`).
    """
    from llama_cpp import llama_cpp as lib

    if b"AMX_INT8 = 1" not in lib.llama_print_system_info():
        yield
        return
    original = lib.llama_model_default_params

    def params():
        value = original()
        value.use_extra_bufts = False
        return value

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def file_key(path: Path) -> tuple:
    """Which file is at `path` now: one written anew under the same name is another file."""
    stat = Path(path).stat()
    return (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def _open_llama(path: Path, n_ctx: int, n_threads: int, n_gpu_layers: int, seed: int,
                options: dict):
    import llama_cpp

    with REDIRECT_LOCK, _without_amx_buffers():  # Llama() redirects stdout and stderr
        try:
            return llama_cpp.Llama(
                str(path), n_ctx=n_ctx, n_batch=512, n_threads=n_threads,
                n_threads_batch=n_threads, n_gpu_layers=n_gpu_layers, seed=seed,
                verbose=False, **options)
        except (ValueError, RuntimeError):
            raise ModelFileError(path, UNLOADABLE) from None


def _trained_context(path: Path) -> int:
    """The context length a model was trained for (its `ARCH.context_length`), 0 if it does
    not say; read by llama.cpp with the vocabulary only, in about 0.1 s."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with REDIRECT_LOCK, llama_cpp._utils.suppress_stdout_stderr(disable=False):
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ModelFileError(path, UNLOADABLE)
    try:
        value = ctypes.create_string_buffer(64)

        def metadata(key: bytes) -> str:
            found = llama_cpp.llama_model_meta_val_str(model, key, value, len(value)) >= 0
            return value.value.decode("utf-8", "replace") if found else ""

        length = metadata(metadata(b"general.architecture").encode() + b".context_length")
        return int(length) if length.isdigit() else 0
    finally:
        llama_cpp.llama_model_free(model)


class Engine:
    """One GGUF model (a base or a merged one) and its context; not for parallel use."""

    def __init__(self, model_path: Path, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None,
                 n_gpu_layers: int | None = None, seed: int = 0, **llama_options):
        """`llama_options`: more `llama_cpp.Llama` arguments (logits_all for a benchmark)."""
        self.model_path = Path(model_path)
        check_header(self.model_path)
        threads = n_threads or cpu_threads()
        layers = gpu_layers() if n_gpu_layers is None else n_gpu_layers
        trained = _trained_context(self.model_path)
        if 0 < trained < n_ctx:  # a window beyond the training length only degrades output
            n_ctx = trained  # and a huge one would take gigabytes, so it is never made
        self._llm = _open_llama(self.model_path, n_ctx, threads, layers, seed, llama_options)
        import llama_cpp

        self._lib = llama_cpp
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self.n_ctx = self._llm.n_ctx()
        self.n_threads = threads
        self.n_gpu_layers = layers
        self.template = ChatTemplate.from_metadata(self._llm.metadata, self.token_text,
                                                   self._control_texts())
        self.lock = threading.RLock()  # one reply at a time on this context
        self._summary: GGUFSummary | None = None
        self._checked: dict[tuple, AdapterSummary] = {}  # by path, size and mtime
        self._loaded_adapters: dict[tuple, object] = {}
        self.adapter: tuple[Path, float] | None = None

    # -- adapters -----------------------------------------------------------------------

    @property
    def summary(self) -> GGUFSummary:
        """The model's tensor shapes, read once and only when an adapter needs them."""
        if self._summary is None:
            self._summary = read_summary(self.model_path)
            check_model(self._summary)
        return self._summary

    def set_adapter(self, path: Path | None, scale: float = 1.0) -> AdapterSummary | None:
        """Use the LoRA adapter at `path` (None: none) from the next reply on."""
        wanted = (Path(path), float(scale)) if path is not None and scale != 0 else None
        info = None
        if wanted is not None:
            check_header(wanted[0])
            key = file_key(wanted[0])
            if key not in self._checked:
                self._checked[key] = check_adapter(read_summary(wanted[0]), self.summary)
            info = self._checked[key]
        if wanted == self.adapter and (wanted is None or key in self._loaded_adapters):
            return info
        if wanted is None:
            failed = self._lib.llama_set_adapters_lora(self._llm.ctx, None, 0, None)
        else:
            handle = self._load_adapter(wanted[0], key)
            adapters = (self._lib.llama_adapter_lora_p_ctypes * 1)(handle)
            scales = (ctypes.c_float * 1)(wanted[1])
            failed = self._lib.llama_set_adapters_lora(self._llm.ctx, adapters, 1, scales)
        self.forget_evaluated()
        if failed:
            self.adapter = None
            raise ModelFileError(path or self.model_path, "llama.cpp refused to apply the adapter")
        self.adapter = wanted
        return info

    def _load_adapter(self, path: Path, key: tuple):
        """llama.cpp's copy of the adapter file, loaded once per version of the file."""
        if key not in self._loaded_adapters:
            handle = self._lib.llama_adapter_lora_init(self._llm.model, str(path).encode())
            if not handle:
                raise ModelFileError(path, "llama.cpp cannot load this adapter")
            self._loaded_adapters[key] = handle
        return self._loaded_adapters[key]

    def forget_evaluated(self) -> None:
        """Drop the KV cache and the cached prompt so nothing computed before is reused."""
        self._llm.reset()
        memory = self._lib.llama_get_memory(self._llm.ctx)
        if memory:
            self._lib.llama_memory_clear(memory, True)

    # -- tokens -------------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def detokenize_bytes(self, tokens: list[int]) -> bytes:
        """The bytes `tokens` spell. Not llama-cpp-python's `detokenize`: its 32-byte buffer
        turns any longer piece (SmolLM2 has 47: a newline and 35 spaces, 60 dashes) into
        nothing, and deeply indented code lost lines."""
        buffer = ctypes.create_string_buffer(64)
        pieces = []
        for token in tokens:
            size = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0,
                                                  False)
            if size < 0:  # too small: -size is what the piece needs
                buffer = ctypes.create_string_buffer(-size)
                size = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer),
                                                      0, False)
            pieces.append(buffer.raw[:size])
        return b"".join(pieces)

    def detokenize(self, tokens: list[int]) -> str:
        return self.detokenize_bytes(tokens).decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._lib.llama_vocab_get_text(self._vocab, token).decode("utf-8", "replace")

    def _control_texts(self) -> frozenset[str]:
        """The text of every control token, which the prompt's tokenizing would read as
        that token wherever it is spelled (about 30 ms for a 49k vocabulary)."""
        n_tokens = self._lib.llama_vocab_n_tokens(self._vocab)
        return frozenset(self.token_text(token) for token in range(n_tokens)
                         if self._lib.llama_vocab_is_control(self._vocab, token))

    def is_end(self, token: int) -> bool:
        """End of generation: the template's end-of-turn token, EOS and the like."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        """Messages laid out by the model's chat template, ready for the assistant's reply."""
        text = self.template.render(messages)
        bos = self._llm.token_bos()
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        if len(tokens) > 1 and tokens[0] == bos and tokens[1] == bos:
            tokens = tokens[1:]  # the template wrote BOS itself
        return tokens

    # -- generation ---------------------------------------------------------------------

    def generate(self, tokens: list[int], sampler_args: dict):
        """llama-cpp-python's token generator (prefix-cached) for `tokens`."""
        return self._llm.generate(tokens, **sampler_args)

    def read_prompt(self, tokens: list[int], should_stop: Callable[[], bool]) -> bool:
        """Evaluate all of `tokens` but the last, one batch at a time, asking `should_stop`
        between batches; False if it said stop. A long prompt takes seconds to read, and
        `generate` reads it whole before it yields anything: after this it finds the
        prompt evaluated (its own prefix check, done the same way here) and reads only the
        last token."""
        llm = self._llm
        cached = 0
        for had, wanted in zip(llm._input_ids, tokens[:-1]):
            if had != wanted:
                break
            cached += 1
        if cached and not llm._ctx.kv_cache_seq_rm(-1, cached, -1):
            cached = 0  # a model whose memory cannot be cut part-way: read it all again
            llm.reset()
        llm.n_tokens = cached
        rest = tokens[cached:-1]
        for start in range(0, len(rest), llm.n_batch):
            if should_stop():
                return False
            llm.eval(rest[start:start + llm.n_batch])
        return True

    def negative_log_likelihood(self, tokens: list[int]) -> float:
        """The summed -log p of tokens[1:], each given those before it, from nothing cached
        (the engine must be opened with logits_all=True)."""
        import numpy as np

        self.forget_evaluated()
        self._llm.eval(tokens[:-1])
        logits = np.asarray(self._llm.scores[:len(tokens) - 1], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        return float((log_norm - logits[np.arange(len(tokens) - 1), tokens[1:]]).sum())

    def set_seed(self, seed: int) -> None:
        self._llm.set_seed(seed)

    def close(self) -> None:
        """Free the model, after the reply in progress (if any) has ended: freeing it under
        a running evaluation crashes the process."""
        with self.lock:
            if self._llm is None:
                return
            # Adapters belong to the model: detach and free them before the model goes.
            self._lib.llama_set_adapters_lora(self._llm.ctx, None, 0, None)
            for handle in self._loaded_adapters.values():
                self._lib.llama_adapter_lora_free(handle)
            self._loaded_adapters.clear()
            self._llm.close()
            self._llm = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
