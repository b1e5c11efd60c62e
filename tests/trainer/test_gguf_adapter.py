"""PEFT adapter -> GGUF LoRA: llama.cpp must reproduce transformers + peft, not merely load it."""

import json
import shutil

import numpy as np
import pytest

from oppu.trainer.gguf_adapter import (
    UnsupportedAdapter,
    lora_tensors,
    permute_rows,
    read_base_info,
    write_adapter_gguf,
)
from oppu.trainer.gguf_file import read_header
from oppu.trainer.peft_files import AdapterMismatch, CorruptAdapter, read_peft_dir
from tests.support.parity import (
    DIFFERS_BOUND,
    PARITY_BOUND,
    correlation,
    llama_last_logits,
    torch_last_logits,
)
from tests.support.peft_fixtures import ALL_LINEAR, STRONG_B, load_peft, make_peft_adapter


@pytest.fixture(scope="module")
def base_logits(tiny_gguf, tiny_model, prompt_ids):
    return torch_last_logits(tiny_model, prompt_ids), llama_last_logits(tiny_gguf, prompt_ids)


def test_base_models_agree_before_any_adapter(base_logits):
    torch_logits, llama_logits = base_logits
    assert correlation(torch_logits, llama_logits) >= PARITY_BOUND


@pytest.mark.parametrize("options", [
    {},
    {"use_rslora": True, "rank": 4, "alpha": 8},
    {"targets": ALL_LINEAR, "rank": 16, "alpha": 8},
], ids=["attention", "rslora", "all-linear"])
def test_adapter_gguf_reproduces_peft_logits(tmp_path, tiny_gguf, tiny_model, prompt_ids,
                                             base_logits, options):
    peft_model = make_peft_adapter(tiny_model, tmp_path / "peft", b_std=STRONG_B, **options)
    gguf_path = write_adapter_gguf(tmp_path / "peft", tiny_gguf, tmp_path / "adapter.gguf")

    expected = torch_last_logits(peft_model, prompt_ids)
    served = llama_last_logits(tiny_gguf, prompt_ids, lora_path=gguf_path)

    assert correlation(served, expected) >= PARITY_BOUND
    assert correlation(expected, base_logits[0]) < DIFFERS_BOUND
    assert correlation(served, base_logits[1]) < DIFFERS_BOUND


def test_leaving_out_the_qk_permutation_fails_the_bound(tmp_path, tiny_gguf, tiny_model,
                                                        prompt_ids, adapter_dir):
    expected = torch_last_logits(load_peft(tiny_model, adapter_dir), prompt_ids)
    right = write_adapter_gguf(adapter_dir, tiny_gguf, tmp_path / "right.gguf")
    wrong = write_adapter_gguf(adapter_dir, tiny_gguf, tmp_path / "wrong.gguf", permute_qk=False)

    assert correlation(llama_last_logits(tiny_gguf, prompt_ids, right), expected) >= PARITY_BOUND
    assert correlation(llama_last_logits(tiny_gguf, prompt_ids, wrong), expected) < 0.99


def test_adapter_gguf_metadata_names_and_shapes(tmp_path, tiny_gguf, adapter_dir):
    path = write_adapter_gguf(adapter_dir, tiny_gguf, tmp_path / "adapter.gguf",
                              base_sha256="ab" * 32)
    header = read_header(path)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())

    assert header.get("general.type") == "adapter"
    assert header.get("adapter.type") == "lora"
    assert header.get("general.architecture") == "llama"
    assert header.get("adapter.lora.alpha") == pytest.approx(config["lora_alpha"])
    assert header.get("oppu.base_sha256") == "ab" * 32
    shapes = {t.name: t.shape for t in header.tensors}
    base = read_base_info(tiny_gguf)
    for block in range(base.n_blocks):
        for stem in ("attn_q", "attn_k", "attn_v", "attn_output"):
            rows, columns = base.shapes[f"blk.{block}.{stem}.weight"]
            assert shapes[f"blk.{block}.{stem}.weight.lora_a"] == (config["r"], columns)
            assert shapes[f"blk.{block}.{stem}.weight.lora_b"] == (rows, config["r"])
    assert len(shapes) == 2 * 4 * base.n_blocks


def test_permutation_is_what_transformers_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    rng = np.random.default_rng(0)
    undo = LlamaTensorProcessor(config={})._reverse_permute_weights
    for heads, kv_heads in ((4, 4), (4, 2), (9, 3)):
        q = rng.standard_normal((heads * 8, 5))
        k = rng.standard_normal((kv_heads * 8, 5))
        assert np.array_equal(undo(permute_rows(q, heads), heads, heads), q)
        assert np.array_equal(undo(permute_rows(k, kv_heads), heads, kv_heads), k)
        assert not np.array_equal(permute_rows(q, heads), q)


@pytest.mark.parametrize(("options", "reason"), [
    ({"use_dora": True}, "DoRA"),
    ({"rank_pattern": {"q_proj": 4}}, "rank_pattern"),
    ({"alpha_pattern": {"q_proj": 4}}, "alpha_pattern"),
    ({"targets": ("lm_head",)}, "ties its output"),
    ({"bias": "lora_only"}, "biases"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"targets": ("embed_tokens",)}, "LoRA pairs"),
], ids=["dora", "rank-pattern", "alpha-pattern", "lm-head-tied", "bias", "modules-to-save",
        "embedding"])
def test_what_llama_cpp_cannot_load_is_refused(tmp_path, tiny_gguf, tiny_model, options, reason):
    make_peft_adapter(tiny_model, tmp_path / "peft", **options)
    with pytest.raises(UnsupportedAdapter, match=reason):
        write_adapter_gguf(tmp_path / "peft", tiny_gguf, tmp_path / "adapter.gguf")
    assert not (tmp_path / "adapter.gguf").exists()


def _rewrite_weights(folder, change):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(folder / "adapter_model.safetensors")
    save_file(change(tensors), folder / "adapter_model.safetensors")


def test_unknown_target_module_is_refused(tmp_path, tiny_gguf, adapter_dir):
    folder = shutil.copytree(adapter_dir, tmp_path / "peft")
    _rewrite_weights(folder, lambda t: {k.replace("q_proj", "qq_proj"): v for k, v in t.items()})
    config = json.loads((folder / "adapter_config.json").read_text())
    config["target_modules"] = [*config["target_modules"], "qq_proj"]  # peft would load it
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedAdapter, match="unknown target module .*qq_proj"):
        write_adapter_gguf(folder, tiny_gguf, tmp_path / "adapter.gguf")


def test_wrong_shapes_are_refused(tmp_path, tiny_gguf, adapter_dir):
    folder = shutil.copytree(adapter_dir, tmp_path / "peft")
    _rewrite_weights(folder, lambda t: {k: v[:, :48] if ".lora_A." in k else v
                                        for k, v in t.items()})
    with pytest.raises(AdapterMismatch, match="x48 but the base tensor"):
        lora_tensors(read_peft_dir(folder), read_base_info(tiny_gguf))


@pytest.mark.parametrize("damage", ["truncate", "garbage-header", "empty"])
def test_damaged_safetensors_are_refused_with_a_reason(tmp_path, adapter_dir, damage):
    folder = shutil.copytree(adapter_dir, tmp_path / "peft")
    weights = folder / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncate": data[:len(data) - 100],
                         "garbage-header": data[:8] + b"{not json" + data[17:],
                         "empty": b""}[damage])
    with pytest.raises(CorruptAdapter, match="truncated|damaged|empty"):
        read_peft_dir(folder)
