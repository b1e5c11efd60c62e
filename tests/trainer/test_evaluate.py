"""Held-out metrics on loss-bearing tokens, and loading saved adapters (safetensors only)."""

import json
import math
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from oppu.trainer.config import TrainConfig
from oppu.trainer.dataset import IGNORE, PackedSequences, build_dataset
from oppu.trainer.evaluate import AdapterLoadError, heldout_metrics, load_adapter
from oppu.trainer.lora import wrap_lora
from tests.support.sample_writing import add_notes

CONFIG = TrainConfig(seq_len=192, retrieval_k=0, min_words=200, heldout_fraction=0.3)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory, embedder, tiny_tokenizer) -> PackedSequences:
    from oppu.core.profile import Profile

    root = tmp_path_factory.mktemp("evaluated")
    with Profile("evaluated", root=root, embedder=embedder) as profile:
        add_notes(profile, count=6, words_each=100, seed=11)
        return build_dataset(profile.writing, tiny_tokenizer, CONFIG).heldout


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_base):
    """A saved adapter with non-zero B, so that it changes the model's predictions."""
    model = wrap_lora(tiny_base.load_model(), CONFIG)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.2, generator=torch.Generator().manual_seed(9))
    folder = tmp_path_factory.mktemp("adapter") / "peft"
    model.save_pretrained(folder)
    return folder


def _reference_loss(model, sequences: PackedSequences) -> tuple[float, int]:
    """Every item on its own through the plain transformers forward: summed loss, tokens."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for row, bounds in enumerate(sequences.bounds):
            for start, end in pairwise(bounds):
                ids = sequences.input_ids[row:row + 1, start:end]
                labels = sequences.labels[row, start:end]
                logits = model(input_ids=ids).logits[0]
                keep = labels[1:] != IGNORE
                total += float(F.cross_entropy(logits[:-1][keep], labels[1:][keep],
                                               reduction="sum"))
                tokens += int(keep.sum())
    return total, tokens


def test_heldout_metrics_cover_exactly_the_loss_bearing_tokens(tiny_base, heldout):
    reference = tiny_base.load_model().eval()
    total, tokens = _reference_loss(reference, heldout)
    metrics = heldout_metrics(tiny_base.load_model(), heldout, batch_size=2)
    assert metrics["tokens"] == tokens == heldout.loss_tokens > 0
    assert metrics["loss"] == pytest.approx(total / tokens, rel=1e-4)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert heldout_metrics(tiny_base.load_model(), heldout, batch_size=1) == pytest.approx(
        metrics, rel=1e-5)


def test_an_empty_heldout_set_gives_no_number(tiny_base, heldout):
    empty = PackedSequences(heldout.input_ids[:0], heldout.labels[:0],
                            heldout.position_ids[:0], [], [])
    metrics = heldout_metrics(tiny_base.load_model(), empty)
    assert metrics["tokens"] == 0 and math.isnan(metrics["loss"])


def test_a_saved_adapter_loads_back_and_is_measured_on_the_same_tokens(
        tiny_base, heldout, adapter_dir):
    from peft import PeftModel

    model = tiny_base.load_model()
    base = heldout_metrics(model, heldout)
    with_adapter = load_adapter(model, adapter_dir)
    assert isinstance(with_adapter, PeftModel)
    measured = heldout_metrics(with_adapter, heldout)
    reference = PeftModel.from_pretrained(tiny_base.load_model(), str(adapter_dir)).eval()
    total, tokens = _reference_loss(reference, heldout)
    assert measured["tokens"] == base["tokens"] == tokens
    assert measured["loss"] == pytest.approx(total / tokens, rel=1e-4)
    assert abs(measured["loss"] - base["loss"]) > 0.01

    # a second adapter on the same wrapper, as when comparing the active one with a new one
    same = load_adapter(with_adapter, adapter_dir, adapter_name="active")
    assert same is with_adapter and same.active_adapter == "active"
    assert heldout_metrics(same, heldout)["loss"] == pytest.approx(measured["loss"], rel=1e-5)
    bare = same.unload()
    assert heldout_metrics(bare, heldout)["loss"] == pytest.approx(base["loss"], rel=1e-5)


def test_adapters_are_never_unpickled(tiny_base, tmp_path, adapter_dir):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text((adapter_dir / "adapter_config.json")
                                                 .read_text())
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04 not to be unpickled")
    with pytest.raises(AdapterLoadError, match="pickled .bin adapters are never loaded"):
        load_adapter(tiny_base.load_model(), pickled)
    with pytest.raises(AdapterLoadError, match="adapter_config.json is missing"):
        load_adapter(tiny_base.load_model(), tmp_path / "nowhere")

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    (wrong / "adapter_config.json").write_text(json.dumps({**config, "r": 3}))
    (wrong / "adapter_model.safetensors").write_bytes(
        (adapter_dir / "adapter_model.safetensors").read_bytes())
    with pytest.raises(AdapterLoadError, match="cannot load the adapter"):
        load_adapter(tiny_base.load_model(), wrong)
