"""Cross-entropy against a frozen output matrix without ever holding all the logits.

A 49k-token vocabulary makes the logits of one 1024-token micro-batch 200 MB, and
autograd would keep them (and their softmax) alive until backward. Here the loss is taken
only at loss-bearing positions, a chunk at a time, and the gradient with respect to the
hidden states is computed in the same pass (softmax minus one-hot, times the matrix), so
backward is a multiply and the logits never outlive their chunk. The output matrix is the
frozen (usually tied) lm_head, so it needs no gradient of its own.
"""

import torch

from oppu.trainer.dataset import IGNORE, MicroBatch
from oppu.trainer.fused import autocast_dtype, weight_as

CHUNK_ROWS = 512


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows):
        total = hidden.new_zeros((), dtype=torch.float32)
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            target = targets[rows]
            logits = (hidden[rows].to(weight.dtype) @ weight.T).float()
            picked = logits.gather(1, target[:, None])[:, 0]
            # logsumexp by hand, in place: one exp pass and no second vocabulary-wide buffer
            peak = logits.amax(dim=1, keepdim=True)
            exps = logits.sub_(peak).exp_()
            sums = exps.sum(dim=1)
            total += (sums.log() + peak[:, 0] - picked).sum()
            if grad is not None:
                # d loss / d hidden = softmax @ W - W[target], with the softmax's division
                # applied to the (rows x d) product rather than to the vocabulary-wide exps
                scaled = (exps.to(weight.dtype) @ weight).float().div_(sums[:, None])
                grad[rows] = scaled.sub_(weight[target].float()).to(hidden.dtype)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        (grad,) = ctx.saved_tensors
        return grad * grad_total.to(grad.dtype), None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` against `targets`; rows are (n, d)."""
    if weight.requires_grad and torch.is_grad_enabled():
        raise ValueError("linear_cross_entropy expects a frozen output matrix")
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_rows)


def packed_loss(model, batch: MicroBatch) -> torch.Tensor:
    """Summed loss of a packed micro-batch; `model` uses packed attention (plain or peft)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    device = head.weight.device
    hidden = base.get_decoder()(
        input_ids=batch.input_ids.to(device), position_ids=batch.position_ids.to(device),
        use_cache=False, cu_seq_lens_q=batch.cu_seq_lens).last_hidden_state[0]
    targets = batch.labels[0, 1:].to(device)
    keep = targets != IGNORE  # the hidden state at t predicts the token at t + 1
    weight = weight_as(head, autocast_dtype(device.type) or head.weight.dtype)
    return linear_cross_entropy(hidden[:-1][keep], weight, targets[keep])
