"""Checking a converted GGUF against transformers: same token ids, last-position logits.

A conversion is only trusted when llama.cpp's logits agree with transformers + peft on
the same tokens (correlation ≥ PARITY_BOUND), not merely when the file loads. Used by the
parity tests and by bench/convert.py.
"""

from pathlib import Path

import numpy as np

PARITY_BOUND = 0.999
# "Clearly differs from the base": the adapter's logits correlate with the base's below this.
DIFFERS_BOUND = 0.98
PROMPT = ("<|im_start|>user\nWrite a short note about the sea, the way I would.<|im_end|>\n"
          "<|im_start|>assistant\nThe sea")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two logit vectors."""
    return float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])


def open_llama(model_path: Path, **options):
    """A llama-cpp-python `Llama`, loaded the way the engine loads one."""
    from llama_cpp import Llama

    from oppu.engine.llm import _without_amx_buffers  # ggml's AMX kernels crash on some CPUs

    with _without_amx_buffers():
        return Llama(model_path=str(model_path), verbose=False, **options)


def llama_last_logits(model_path: Path, token_ids: list[int], lora_path: Path | None = None,
                      n_threads: int | None = None) -> np.ndarray:
    """llama.cpp's logits after the last of `token_ids`, with an optional LoRA GGUF."""
    llm = open_llama(model_path, lora_path=str(lora_path) if lora_path else None,
                     n_ctx=max(64, len(token_ids) + 8), n_batch=max(64, len(token_ids)),
                     logits_all=True, n_threads=n_threads)
    try:
        llm.eval(token_ids)
        return np.array(llm.scores[len(token_ids) - 1], dtype=np.float32)
    finally:
        llm.close()


def torch_last_logits(model, token_ids: list[int]) -> np.ndarray:
    """A transformers (or peft) causal LM's logits after the last of `token_ids`."""
    import torch

    with torch.no_grad():
        output = model(input_ids=torch.tensor([token_ids]))
    return output.logits[0, -1].float().numpy()


def tokenize(model_path: Path, text: str) -> list[int]:
    """Token ids of `text` with the GGUF's own tokenizer (no weights are loaded)."""
    llm = open_llama(model_path, vocab_only=True)
    try:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    finally:
        llm.close()
