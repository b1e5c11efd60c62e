"""Leaner forward/backward for LoRA training of a frozen base, mostly for the CPU.

peft computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as separate ops, so every
adapted projection costs two extra full-size elementwise passes forward and more in
backward, and transformers' RMSNorm is six ops that each keep a tensor for backward. On a
2-core CPU that elementwise traffic costs as much time as the matmuls. Here:

- a LoRA projection is one autograd function: the LoRA term is accumulated into the base
  output by `addmm_` (scaling as the BLAS alpha), and backward is four matmuls with no
  full-size temporaries; only the (dropped-out) input and the rank-r activation are saved;
- RMSNorm uses torch's fused `rms_norm` kernel;
- rotary embedding is one autograd function over the two halves of each head (the stock
  version concatenates a negated copy, and its backward zero-fills two full-size buffers
  per call for the slices);
- the gated MLP's `silu(gate) * up` keeps only gate and up for backward and recomputes
  silu there: one cheap op instead of a kept (tokens x intermediate) tensor per layer,
  about 180 MB per 1024-token micro-batch of the 135M model.

Under autocast (bf16 training) a LoRA projection runs wholly in the autocast dtype; during
training it uses copies of the frozen base weights in that dtype made once for the run
(`keep_frozen_copies`) instead of a cast on every call. The LoRA weights stay fp32
masters and get fp32 gradients.

The modules and their state dicts are untouched: only `forward` is swapped on instances,
so peft still saves, loads and merges the adapter as usual. The fast path is taken only
where it is exactly equivalent (one plain LoRA adapter active, unmerged, frozen base
weights); anything else falls back to peft's own forward.
"""

import types

import torch
import torch.nn.functional as F

# Norms computing exactly weight * x / rms(x) (not Gemma's 1 + weight).
PLAIN_RMS_NORMS = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"})
# Gated MLPs computing down(silu(gate(x)) * up(x)).
GATED_MLPS = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP"})
SILUS = frozenset({"SiLUActivation", "SiLU"})
# Attention modules whose family applies rotary embedding with llama's rotate_half.
ROTARY_ATTENTIONS = frozenset({"LlamaAttention", "MistralAttention", "Qwen2Attention",
                               "Qwen3Attention"})


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes matmuls in on `device_type`, or None when it is off."""
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


COPY = "_oppu_frozen_copy"


def keep_frozen_copies(model, dtype: torch.dtype) -> int:
    """Keep a `dtype` copy of every frozen weight an autocast pass of `model` multiplies by
    (LoRA base layers and the output matrix), for as long as training runs: converting
    once instead of on every call. The weights must stay unchanged until
    `release_frozen_copies`; returns how many copies were made."""
    from peft.tuners.lora import Linear as LoraLinear

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = [m.base_layer for m in model.modules() if isinstance(m, LoraLinear)]
    layers.append(base.get_output_embeddings())
    count = 0
    for layer in layers:
        weight = layer.weight
        if not weight.requires_grad and weight.dtype != dtype:
            layer.__dict__[COPY] = weight.detach().to(dtype)
            count += 1
    return count


def release_frozen_copies(model) -> None:
    for module in model.modules():
        module.__dict__.pop(COPY, None)


def weight_as(layer: torch.nn.Linear, dtype: torch.dtype) -> torch.Tensor:
    """`layer`'s weight in `dtype`: the weight itself, its kept copy, or a fresh cast (which,
    unlike a kept copy, still carries the weight's gradient if it has one)."""
    if layer.weight.dtype == dtype:
        return layer.weight
    copy = layer.__dict__.get(COPY)
    return copy if copy is not None and copy.dtype == dtype else layer.weight.to(dtype)


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dropped, weight, bias, lora_a, lora_b, scaling):
        out = F.linear(x, weight, bias)
        low = (x if dropped is None else dropped) @ lora_a.T
        out.addmm_(low, lora_b.T, alpha=scaling)
        ctx.scaling = scaling
        ctx.has_dropout = dropped is not None
        ctx.save_for_backward(x if dropped is None else dropped, low, weight, lora_a, lora_b)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        lora_input, low, weight, lora_a, lora_b = ctx.saved_tensors
        s = ctx.scaling
        grad_low = grad_out @ lora_b
        grad_a = (grad_low.T @ lora_input).mul_(s) if ctx.needs_input_grad[4] else None
        grad_b = (grad_out.T @ low).mul_(s) if ctx.needs_input_grad[5] else None
        grad_x = grad_dropped = None
        if ctx.has_dropout:
            if ctx.needs_input_grad[0]:
                grad_x = grad_out @ weight
            if ctx.needs_input_grad[1]:
                grad_dropped = (grad_low @ lora_a).mul_(s)
        elif ctx.needs_input_grad[0]:
            grad_x = (grad_out @ weight).addmm_(grad_low, lora_a, alpha=s)
        return grad_x, grad_dropped, None, None, grad_a, grad_b, None


def _fast_lora_forward(self, x, *args, **kwargs):
    adapters = [a for a in self.active_adapters if a in self.lora_A]
    if (args or kwargs or self.disable_adapters or self.merged or len(adapters) != 1
            or adapters[0] in self.lora_variant or self.base_layer.weight.requires_grad):
        return self._peft_forward(x, *args, **kwargs)
    name = adapters[0]
    lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
    dtype = autocast_dtype(x.device.type) or lora_a.dtype
    dropout = self.lora_dropout[name]
    flat = x.reshape(-1, x.shape[-1]).to(dtype)
    dropped = None if isinstance(dropout, torch.nn.Identity) or not self.training \
        else dropout(flat)
    bias = self.base_layer.bias
    out = _LoraLinear.apply(flat, dropped, weight_as(self.base_layer, dtype),
                            None if bias is None else bias.to(dtype), lora_a.to(dtype),
                            lora_b.to(dtype), self.scaling[name])
    return out.view(*x.shape[:-1], out.shape[-1])


class _Rotary(torch.autograd.Function):
    """`x * cos + rotate_half(x) * sin`, with rotate_half(x) = [-x2, x1] on the halves."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        out = torch.empty_like(x)
        torch.mul(x1, cos[..., :half], out=out[..., :half])
        out[..., :half].addcmul_(x2, sin[..., :half], value=-1)
        torch.mul(x2, cos[..., half:], out=out[..., half:])
        out[..., half:].addcmul_(x1, sin[..., half:])
        ctx.save_for_backward(cos, sin)
        return out

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        half = grad.shape[-1] // 2
        g1, g2 = grad[..., :half], grad[..., half:]
        out = torch.empty_like(grad)
        torch.mul(g1, cos[..., :half], out=out[..., :half])
        out[..., :half].addcmul_(g2, sin[..., half:])
        torch.mul(g2, cos[..., half:], out=out[..., half:])
        out[..., half:].addcmul_(g1, sin[..., :half], value=-1)
        return out, None, None


def fused_rotary(q, k, cos, sin, unsqueeze_dim=1):
    """Drop-in for transformers' `apply_rotary_pos_emb` (llama-style rotate_half)."""
    cos = cos.unsqueeze(unsqueeze_dim).to(q.dtype)
    sin = sin.unsqueeze(unsqueeze_dim).to(q.dtype)
    return _Rotary.apply(q, cos, sin), _Rotary.apply(k, cos, sin)


class _SiluGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        grad_up = F.silu(gate).mul_(grad)
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad_up


def _fused_mlp(self, x):
    return self.down_proj(_SiluGate.apply(self.gate_proj(x), self.up_proj(x)))


def _fused_rms_norm(self, hidden):
    normed = F.rms_norm(hidden, self.weight.shape, self.weight, self.variance_epsilon)
    # Under autocast a norm feeds matmuls (q/k/v, gate/up, the output layer), which would
    # each cast it: cast once here, so that they share one saved bf16 input.
    return normed.to(autocast_dtype(hidden.device.type) or normed.dtype)


def _fuse_rotary(model) -> None:
    """Point the model family's module-level `apply_rotary_pos_emb` at `fused_rotary`.

    This changes the transformers module for the whole process; the result is the same to
    rounding, so other users of the family (evaluation, parity checks) are unaffected."""
    import sys

    for module in model.modules():
        family = sys.modules.get(type(module).__module__)
        if type(module).__name__ in ROTARY_ATTENTIONS and hasattr(family,
                                                                  "apply_rotary_pos_emb"):
            family.apply_rotary_pos_emb = fused_rotary


def fuse(model) -> int:
    """Swap in the fused forwards on `model`'s LoRA projections, norms and MLPs (and its
    family's rotary embedding); returns how many modules were swapped."""
    from peft.tuners.lora import Linear as LoraLinear

    _fuse_rotary(model)
    count = 0
    for module in model.modules():
        if isinstance(module, LoraLinear) and isinstance(module.base_layer, torch.nn.Linear):
            if not hasattr(module, "_peft_forward"):
                module._peft_forward = module.forward
                module.forward = types.MethodType(_fast_lora_forward, module)
            count += 1
        elif type(module).__name__ in PLAIN_RMS_NORMS:
            module.forward = types.MethodType(_fused_rms_norm, module)
            count += 1
        elif type(module).__name__ in GATED_MLPS and type(module.act_fn).__name__ in SILUS:
            module.forward = types.MethodType(_fused_mlp, module)
            count += 1
    return count
