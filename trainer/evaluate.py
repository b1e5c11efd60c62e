"""Held-out loss and perplexity, and loading a saved adapter to measure it.

The metrics cover only loss-bearing tokens (the user's own text), on packed rows with
per-item attention, exactly as in training; so the base, a new adapter and the active
adapter are compared on the same tokens. Adapters are read from safetensors only:
loading never unpickles anything.
"""

import math
from pathlib import Path

import torch

from oppu.trainer.dataset import PackedSequences
from oppu.trainer.fused import fuse
from oppu.trainer.loss import packed_loss
from oppu.trainer.packed_attention import use_packed_attention

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
EVAL_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}


class AdapterLoadError(Exception):
    """A PEFT adapter folder that is missing, unsafe to load or does not fit the base."""


@torch.no_grad()
def heldout_metrics(model, sequences: PackedSequences, batch_size: int | None = None) -> dict:
    """{"loss", "perplexity", "tokens"} on the loss-bearing tokens of `sequences`.

    `model` is a transformers causal LM or a peft model (its active adapter counts); it is
    switched to packed attention. `batch_size` is rows per forward pass (default: by device).
    """
    if len(sequences) == 0 or sequences.loss_tokens == 0:
        return {"loss": math.nan, "perplexity": math.nan, "tokens": 0}
    use_packed_attention(model)
    fuse(model)
    device = next(model.parameters()).device.type
    rows = batch_size or max(1, EVAL_BATCH_TOKENS.get(device, 2048) // sequences.input_ids.shape[1])
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    try:
        for batch in sequences.batches(rows):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                total += float(packed_loss(model, batch))
            tokens += batch.loss_tokens
    finally:
        model.train(was_training)
    loss = total / tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": tokens}


def load_adapter(model, peft_dir: Path, adapter_name: str = "default"):
    """`model` with the adapter in `peft_dir` loaded and active (a PeftModel).

    A bare model is wrapped; a PeftModel gets the adapter added under `adapter_name`.
    `PeftModel.unload()` on the result gives the bare model back.
    """
    from peft import PeftModel

    peft_dir = Path(peft_dir)
    if not (peft_dir / ADAPTER_CONFIG).is_file():
        raise AdapterLoadError(f"no adapter in {peft_dir}: {ADAPTER_CONFIG} is missing")
    if not (peft_dir / ADAPTER_WEIGHTS).is_file():
        raise AdapterLoadError(f"no adapter in {peft_dir}: {ADAPTER_WEIGHTS} is missing "
                               "(pickled .bin adapters are never loaded)")
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(peft_dir), adapter_name=adapter_name, is_trainable=False)
            model.set_adapter(adapter_name)
            return model
        return PeftModel.from_pretrained(model, str(peft_dir), adapter_name=adapter_name,
                                         is_trainable=False)
    except (ValueError, KeyError, RuntimeError, OSError) as error:
        raise AdapterLoadError(f"cannot load the adapter in {peft_dir}: {error}") from None


class LearningCurve:
    """Held-out perplexity along a run: how far the adapter has got after how much of the
    writing. It measures at `points` evenly spaced steps before the end; the run's own final
    measurement closes the curve (`finish`), so the end is not measured twice.
    `words_per_row` turns steps into words seen."""

    def __init__(self, model, sequences: PackedSequences, points: int, words_per_row: float,
                 batch_size: int, start: dict):
        self.model, self.sequences = model, sequences
        self.fractions = [i / (points + 1) for i in range(1, points + 1)]
        self.words_per_step = words_per_row * batch_size
        self.points = [{"step": 0, "words_seen": 0, "perplexity": start["perplexity"]}]

    def after_step(self, step: int, total: int) -> None:
        """Measure if `step` has reached the next point (never at the last step); the
        schedule's `total` may shrink under a time budget, so the points follow it."""
        if not self.fractions or step >= total or step < self.fractions[0] * total:
            return
        while self.fractions and step >= self.fractions[0] * total:
            self.fractions.pop(0)
        self._add(step, heldout_metrics(self.model, self.sequences))

    def finish(self, step: int, final: dict) -> list[dict]:
        self._add(step, final)
        return self.points

    def _add(self, step: int, metrics: dict) -> None:
        self.points.append({"step": step, "words_seen": round(step * self.words_per_step),
                            "perplexity": metrics["perplexity"]})
