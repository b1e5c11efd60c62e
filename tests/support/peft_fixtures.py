"""Helpers to make PEFT LoRA adapters that really change a model's output.

A freshly initialised LoRA has B = 0, so it changes nothing and any conversion "passes".
These adapters get random non-zero A and B of a chosen size instead.
"""

import copy
import functools
from pathlib import Path

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = ATTENTION + ("gate_proj", "up_proj", "down_proj")
# B's spread on the tiny test model: large enough that a missing q/k permutation falls far
# outside the parity bound (correlation about 0.6 instead of 0.99999).
STRONG_B = 0.2


@functools.cache
def load_gguf_model(path: Path):
    """transformers' dequantized copy of a GGUF, loaded once per process. Do not modify it."""
    import torch
    from transformers import AutoModelForCausalLM

    from oppu.storage.privacy import go_offline

    go_offline()
    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32)
    return model.eval()


def make_lora_model(base_model, *, rank: int = 8, alpha: float = 16,
                    targets: tuple[str, ...] = ATTENTION, b_std: float = 0.05, seed: int = 0,
                    **config):
    """A peft model around a copy of `base_model`, with seeded random, non-zero A and B."""
    import torch
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                             lora_dropout=0.0, **config)
    model = get_peft_model(copy.deepcopy(base_model), lora_config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_A." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator)
                                / parameter.shape[1] ** 0.5)
            elif ".lora_B." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * b_std)
    return model.eval()


def make_peft_adapter(base_model, folder: Path, **options):
    """Save a random non-zero LoRA (see `make_lora_model`) to `folder`; return the peft model."""
    model = make_lora_model(base_model, **options)
    model.save_pretrained(folder)
    return model


def merged_model(base_model, peft_dir: Path):
    """transformers' own merge of the adapter in `peft_dir` into a copy of `base_model`."""
    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(base_model), str(peft_dir)) \
        .merge_and_unload().eval()


def load_peft(base_model, peft_dir: Path):
    """The adapter in `peft_dir` on a copy of `base_model`, loaded the plain peft way."""
    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(base_model), str(peft_dir)).eval()
