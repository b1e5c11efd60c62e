"""The real bundled SmolLM2, end to end for a few steps: prepare, train in the child
process, gate, adapter version; then llama.cpp serves the base with the new adapter and
agrees with transformers + peft on what was trained."""

import numpy as np
import pytest

from oppu.core.adapters import active
from oppu.core.training import run_training
from oppu.trainer.base_models import bundled_gguf
from tests.support.parity import (
    PARITY_BOUND,
    PROMPT,
    correlation,
    llama_last_logits,
    tokenize,
    torch_last_logits,
)
from tests.support.sample_writing import add_notes

pytestmark = pytest.mark.slow


def test_bundled_smollm2_trains_and_its_adapter_serves(profile):
    add_notes(profile, count=12, words_each=130)
    seen = []
    outcome = run_training(profile, seen.append, overrides={
        "max_steps": 3, "seq_len": 512, "batch_size": 2, "learning_rate": 1e-3})
    assert outcome.status == "succeeded", outcome.error
    assert [p.done for p in seen if p.phase == "train"] == [1, 2, 3]
    metrics = outcome.metrics
    assert metrics["base"]["tokens"] == metrics["new"]["tokens"] > 0
    assert metrics["new"]["loss"] != metrics["base"]["loss"]
    assert outcome.promoted == (metrics["new"]["loss"] < metrics["base"]["loss"])
    assert (active(profile) is not None) == outcome.promoted
    folder = profile.adapters_dir / outcome.version

    from peft import PeftModel

    from oppu.trainer.prepare import prepare_base

    base = prepare_base(bundled_gguf())  # cached by the run: loads in seconds
    tokens = tokenize(base.gguf_path, PROMPT)
    served = llama_last_logits(base.gguf_path, tokens, folder / "adapter.gguf")
    bare = llama_last_logits(base.gguf_path, tokens)
    trained = PeftModel.from_pretrained(base.load_model(), str(folder / "peft")).eval()
    assert correlation(served, torch_last_logits(trained, tokens)) > PARITY_BOUND
    assert np.abs(served - bare).max() > 1e-3  # the adapter does change the output
