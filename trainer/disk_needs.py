"""What a training run writes to disk, estimated from the base GGUF's header, so that a
run refuses to start on a disk it would fill instead of failing minutes into it."""

from pathlib import Path

import numpy as np

from oppu.trainer.config import TrainConfig
from oppu.trainer.gguf_adapter import read_base_info
from oppu.trainer.gguf_file import read_header
from oppu.trainer.gguf_import import projection_modules

FLOAT32 = 4
SLACK = 32 << 20  # the tokenizer, logs, the answer cache, meta files


def prepared_base_bytes(base_gguf: Path) -> int:
    """The transformers copy `prepare_base` caches: every weight as float32."""
    weights = sum(int(np.prod(e.ne, dtype=np.int64)) for e in read_header(base_gguf).tensors)
    return FLOAT32 * weights + SLACK


def adapter_bytes(base_gguf: Path, config: TrainConfig) -> int:
    """A version's adapter, twice (PEFT files and a GGUF, float32 both). Its merged copy is
    not counted: it is optional, and left out where the disk has no room for it
    (`versions.write_merged_copy`)."""
    base = read_base_info(base_gguf)
    lora_weights = sum(config.rank * sum(base.shapes.get(f"{stem}.weight", ()))
                       for stem, module in projection_modules(base).items()
                       if module.rpartition(".")[2] in config.target_modules)
    return 2 * FLOAT32 * lora_weights + SLACK
