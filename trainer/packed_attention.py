"""Causal attention restricted to each packed item, for the transformers attention interface.

Packed training rows hold several items back to back. The rows of a micro-batch are laid
end to end as one row and the item boundaries passed as `cu_seq_lens_q` (the name
flash-attention's varlen kernels use). Each item then gets plain causal SDPA on its own
slice: no item attends to another, no (T, T) mask is ever built, and the attention work is
the sum of the items' squares instead of the square of the row. `position_ids` restart at
0 for each item, so rotary positions match an item run on its own.
"""

from contextlib import nullcontext
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

NAME = "oppu_packed"
# Not cuDNN's attention, torch's first choice on recent GPUs: it plans anew for every new
# item length, about 0.7 ms of CPU per call against 12-37 us of GPU work. Leaving it out
# took training on an H100 from 11.4k to 15.7k tokens/s (bench/train_gpu.py).
CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def _packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                      cu_seq_lens_q=None, **_kwargs):
    if attention_mask is not None:
        raise ValueError("packed attention takes item boundaries, not an attention mask")
    if cu_seq_lens_q is None:
        sizes = [query.shape[2]]
    elif query.shape[0] != 1:
        raise ValueError("packed attention expects the micro-batch laid out as one row")
    else:
        bounds = [int(b) for b in cu_seq_lens_q]
        sizes = [b - a for a, b in pairwise(bounds)]
    # split, not slicing: its backward is one cat instead of a zero-filled buffer per item
    with sdpa_kernel(CUDA_BACKENDS) if query.is_cuda else nullcontext():
        out = torch.cat([
            F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling,
                                           dropout_p=dropout, enable_gqa=True)  # kv unrepeated
            for q, k, v in zip(query.split(sizes, 2), key.split(sizes, 2), value.split(sizes, 2))
        ], dim=2)
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*_args, **_kwargs):
    return None


def use_packed_attention(model) -> None:
    """Switch `model` (a transformers causal LM, or a peft wrapper of one) to packed attention."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, _packed_attention)
    AttentionMaskInterface.register(NAME, _no_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(NAME)
