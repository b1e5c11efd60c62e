"""The precision a training run computes in: bf16 where the hardware does it fast, else fp32.

On CUDA, bf16 autocast. On the CPU, fp32 unless bf16 matmuls are natively fast there
(AMX or similar; measured by `oppu.storage.cpu_bf16`).
Under bf16 only the matmuls run in bf16 (autocast); the LoRA weights, their gradients,
the optimizer state, norms, the residual stream and the loss's softmax stay fp32.
"""

import torch

from oppu.storage import cpu_bf16
from oppu.trainer.config import PRECISIONS


def resolve_precision(name: str, device: str) -> str:
    """"fp32" or "bf16" for a run on `device` that asked for `name` (one of PRECISIONS)."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "bf16" if cpu_bf16.cpu_bf16_is_fast() else "fp32"
