"""The precision a training run computes in: bf16 where the hardware does it fast, else fp32.

On CUDA, bf16 autocast. On the CPU, fp32 unless bf16 matmuls are natively fast there
(AMX or similar): that is measured once per process on a projection-sized matmul rather
than guessed from CPU flags, because emulated bf16 on an older CPU is slower than fp32.
Under bf16 only the matmuls run in bf16 (autocast); the LoRA weights, their gradients,
the optimizer state, norms, the residual stream and the loss's softmax stay fp32.
"""

import functools
import time

import torch

from oppu.trainer.config import PRECISIONS

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


def resolve_precision(name: str, device: str) -> str:
    """"fp32" or "bf16" for a run on `device` that asked for `name` (one of PRECISIONS)."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "bf16" if cpu_bf16_speedup() >= MIN_CPU_BF16_SPEEDUP else "fp32"
