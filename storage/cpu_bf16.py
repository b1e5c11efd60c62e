"""Whether this CPU computes bf16 matmuls natively fast (AMX or similar), and a context that
uses them where it does: training and the embedding model both compute their matmuls in
bf16 there. Measured once per process on a projection-sized matmul rather than guessed
from CPU flags, because emulated bf16 on an older CPU is slower than fp32.
"""

import functools
import time
from contextlib import nullcontext

import torch

# bf16 is chosen on the CPU only when its matmuls measure at least this much faster.
MIN_CPU_BF16_SPEEDUP = 2.0


def best_matmul_seconds(a: torch.Tensor, b: torch.Tensor, repeats: int = 5) -> float:
    """The fastest of `repeats` timed `a @ b`, after a warm-up."""
    a @ b  # warm-up: oneDNN builds its kernels on first use
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return best


@functools.cache
def cpu_bf16_speedup() -> float:
    """How many times faster a bf16 matmul runs than fp32 on this CPU (about 0.1 s to measure)."""
    a, b = torch.randn(1024, 576), torch.randn(576, 1536)
    fp32 = best_matmul_seconds(a, b)
    bf16 = best_matmul_seconds(a.bfloat16(), b.bfloat16())
    return fp32 / bf16


def cpu_bf16_is_fast() -> bool:
    return cpu_bf16_speedup() >= MIN_CPU_BF16_SPEEDUP


def fast_cpu_matmuls():
    """bf16 autocast on a CPU where it is fast, else nothing: norms, softmax and the
    outputs stay fp32 either way."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_bf16_is_fast() else nullcontext()
