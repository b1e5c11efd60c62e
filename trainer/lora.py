"""LoRA training of the personal adapter: the training loop (its configuration: `config`).

The loop is written for a small CPU as much as for CUDA:
- packed rows with per-item attention (`packed_attention`), so no compute goes to padding
  or to attention across items;
- the loss only at loss-bearing positions, against the tied lm_head in chunks
  (`loss.linear_cross_entropy`), so the vocabulary-sized logits never exist whole;
- fused LoRA projections, norms and MLPs (`fused`), every core on the CPU;
- bf16 matmuls (autocast) on CUDA and on CPUs where they are natively fast, fp32
  otherwise (`precision`);
- micro-batches of about `MICRO_BATCH_TOKENS` with gradient accumulation up to
  `batch_size` rows per optimizer step (AdamW, linear warmup, cosine decay, clipping).

`should_stop()` is checked before every micro-batch (a few seconds apart on a 2-core
CPU); when it turns true, `Stopped` is raised. A time budget (`max_minutes`) instead ends
training early but normally: from the second step on, the schedule (and with it the
learning-rate decay) is fitted to the steps that the budget allows at the average step
time of the last few steps, never beyond the planned steps; a busy spell that slows some
steps down shortens it, and it grows back when the steps speed up again.
"""

import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from oppu.trainer.config import TrainConfig
from oppu.trainer.cpu_allocator import keep_freed_memory
from oppu.trainer.dataset import IGNORE, WritingDataset, shuffled_rows
from oppu.trainer.fused import fuse, keep_frozen_copies, release_frozen_copies
from oppu.trainer.loss import packed_loss
from oppu.trainer.packed_attention import use_packed_attention
from oppu.trainer.precision import resolve_precision

# Tokens per forward pass. On the CPU this bounds activation memory (about 1.5 MB a token
# for the 135M model in fp32, roughly half that in bf16): the default preset's peak RSS,
# retrieval's embedder included, stays under 4 GB either way (bench/train.py: 3.7 GB fp32,
# 3.9 GB bf16), and bf16's larger passes run about 10% faster.
MICRO_BATCH_TOKENS = {("cpu", "fp32"): 1024, ("cpu", "bf16"): 2048,
                      ("cuda", "fp32"): 16384, ("cuda", "bf16"): 16384}
MIN_LR_FRACTION = 0.1
RECENT_STEPS = 5  # the time budget is paced by this many latest steps


class Stopped(Exception):
    """Training ended early because `should_stop()` said so."""


@dataclass
class TrainResult:
    peft_model: object
    loss_curve: list  # [step, mean loss of the step]
    steps: int
    tokens: int  # tokens computed (prompts and replies; padding is never computed)
    loss_tokens: int  # of which carried loss (the user's own text)
    seconds: float
    planned_steps: int = 0
    ended_by: str = "schedule"  # schedule | time budget
    precision: str = "fp32"  # what the matmuls ran in


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("training device 'cuda' was asked for but no CUDA GPU is available")
    return name


def _model_device(model) -> str:
    return next(model.parameters()).device.type


def wrap_lora(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    peft_config = LoraConfig(r=config.rank, lora_alpha=config.alpha,
                             lora_dropout=config.dropout,
                             target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, peft_config)


def _pace(step_ends: list[float]) -> float:
    """Seconds per step over the latest `RECENT_STEPS` steps (all of them, early on)."""
    ends = [0.0, *step_ends][-(RECENT_STEPS + 1):]
    return (ends[-1] - ends[0]) / (len(ends) - 1)


def _learning_rate(config: TrainConfig, step: int, total: int) -> float:
    warmup = max(1, round(config.warmup_ratio * total))
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.learning_rate * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * cosine)


def _plan(config: TrainConfig, rows: int) -> int:
    steps = max(1, math.ceil(config.epochs * rows / config.batch_size))
    return min(steps, config.max_steps) if config.max_steps else steps


def _row_schedule(config: TrainConfig, rows: int, steps: int) -> list[list[int]]:
    """The rows of each optimizer step: shuffled anew every epoch."""
    order: list[int] = []
    epoch = 0
    while len(order) < steps * config.batch_size:
        order += shuffled_rows(rows, config.seed, epoch)
        epoch += 1
    return [order[i * config.batch_size:(i + 1) * config.batch_size] for i in range(steps)]


def train_lora(model, dataset: WritingDataset, config: TrainConfig,
               report: Callable[[dict], None], should_stop: Callable[[], bool]) -> TrainResult:
    """Train a LoRA adapter on `dataset.train`; `model` is wrapped in place by peft."""
    if len(dataset.train) == 0:
        raise ValueError("the training set is empty")
    device = _model_device(model)
    if device == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    peft_model = wrap_lora(model, config)
    use_packed_attention(peft_model)
    fuse(peft_model)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                  weight_decay=config.weight_decay, fused=True)
    precision = resolve_precision(config.precision, device)
    micro_rows = max(1, MICRO_BATCH_TOKENS[device, precision] // dataset.train.input_ids.shape[1])
    planned = total = _plan(config, len(dataset.train))
    schedule = _row_schedule(config, len(dataset.train), planned)
    autocast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if precision == "bf16" \
        else nullcontext
    budget_s = config.max_minutes * 60
    result = TrainResult(peft_model, [], 0, 0, 0, 0.0, planned_steps=planned,
                         precision=precision)
    torch.set_flush_denormal(True)  # LoRA B starts at zero: keep denormals off the slow path
    keeps_freed_memory = device == "cpu" and keep_freed_memory()
    started = time.perf_counter()
    paused = 0.0  # time spent in `report` (a caller's measurements) is not training time
    step_ends: list[float] = []
    try:
        if precision == "bf16":
            keep_frozen_copies(peft_model, torch.bfloat16)
        step = 0
        while step < total:
            loss = _train_step(peft_model, dataset, schedule[step], micro_rows, autocast,
                               should_stop, result)
            _optimizer_step(optimizer, params, config, _learning_rate(config, step, total))
            step += 1
            result.steps = step
            result.loss_curve.append([step, loss])
            elapsed = time.perf_counter() - started - paused
            step_ends.append(elapsed)
            if budget_s and step >= 2:  # re-planned each step, at the pace of recent steps
                total = min(planned, step + max(0, int((budget_s - elapsed) / _pace(step_ends))))
                result.ended_by = "time budget" if total < planned else "schedule"
            reporting = time.perf_counter()
            report({"phase": "train", "step": step, "total": total, "loss": loss,
                    "tokens": result.tokens, "tokens_per_s": result.tokens / elapsed,
                    "eta_s": _pace(step_ends) * (total - step)})
            paused += time.perf_counter() - reporting
    finally:
        result.seconds = time.perf_counter() - started - paused
        torch.set_flush_denormal(False)
        if keeps_freed_memory:
            keep_freed_memory(False)
        release_frozen_copies(peft_model)
        peft_model.eval()
    return result


def _train_step(model, dataset: WritingDataset, rows: list[int], micro_rows: int, autocast,
                should_stop: Callable[[], bool], result: TrainResult) -> float:
    """Forward and backward over `rows`, micro-batch by micro-batch; the step's mean loss."""
    sequences = dataset.train
    step_loss_tokens = max(1, int((sequences.labels[rows] != IGNORE).sum()))
    loss_sum = 0.0
    for start in range(0, len(rows), micro_rows):
        if should_stop():
            raise Stopped("training was stopped")
        batch = sequences.batch(rows[start:start + micro_rows])
        with autocast():
            loss = packed_loss(model, batch)
        (loss / step_loss_tokens).backward()
        loss_sum += loss.item()
        result.tokens += batch.tokens
        result.loss_tokens += batch.loss_tokens
    return loss_sum / step_loss_tokens


def _optimizer_step(optimizer, params, config: TrainConfig, learning_rate: float) -> None:
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip, foreach=True)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
