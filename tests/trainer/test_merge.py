"""Merged GGUF: a complete standalone model whose llama.cpp logits match transformers' merge."""

import gguf
import numpy as np
import pytest

from oppu.trainer.gguf_file import read_header
from oppu.trainer.merge import write_merged_gguf, write_served_gguf
from tests.support.parity import (
    DIFFERS_BOUND,
    PARITY_BOUND,
    correlation,
    llama_last_logits,
    open_llama,
    torch_last_logits,
)
from tests.support.peft_fixtures import merged_model


@pytest.fixture(scope="module")
def merged_logits(tiny_model, adapter_dir, prompt_ids):
    """transformers' own merge: the reference every merged GGUF is held to."""
    return torch_last_logits(merged_model(tiny_model, adapter_dir), prompt_ids)


@pytest.mark.parametrize("tensor_type", ["q8_0", "f16"])
def test_merged_gguf_matches_transformers_merge(tmp_path, tiny_gguf, adapter_dir, prompt_ids,
                                                merged_logits, tensor_type):
    merged = write_merged_gguf(adapter_dir, tiny_gguf, tmp_path / "merged.gguf", tensor_type)

    served = llama_last_logits(merged, prompt_ids)
    assert correlation(served, merged_logits) >= PARITY_BOUND
    assert correlation(served, llama_last_logits(tiny_gguf, prompt_ids)) < DIFFERS_BOUND


def test_merging_without_the_qk_permutation_fails_the_bound(tmp_path, tiny_gguf, adapter_dir,
                                                            prompt_ids, merged_logits):
    merged = write_merged_gguf(adapter_dir, tiny_gguf, tmp_path / "merged.gguf", "f16",
                               permute_qk=False)
    assert correlation(llama_last_logits(merged, prompt_ids), merged_logits) < 0.99


def _fields(path):
    reader = gguf.GGUFReader(path)
    return reader, {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_every_base_key_and_untouched_tensor_is_carried_over(tmp_path, tiny_gguf, adapter_dir):
    merged = write_merged_gguf(adapter_dir, tiny_gguf, tmp_path / "merged.gguf", "q8_0")
    base_reader, base_fields = _fields(tiny_gguf)
    merged_reader, merged_fields = _fields(merged)

    assert merged_fields == base_fields  # tokenizer, chat template, special tokens included
    assert [t.name for t in merged_reader.tensors] == [t.name for t in base_reader.tensors]
    touched = {f"blk.{i}.{s}.weight" for i in range(2)
               for s in ("attn_q", "attn_k", "attn_v", "attn_output")}
    for old, new in zip(base_reader.tensors, merged_reader.tensors, strict=True):
        assert list(new.shape) == list(old.shape)
        if old.name in touched:
            assert new.tensor_type == gguf.GGMLQuantizationType.Q8_0
        else:
            assert new.tensor_type == old.tensor_type
            assert np.array_equal(np.asarray(new.data), np.asarray(old.data))


def test_the_served_copy_holds_every_block_matrix_as_q8_0(tmp_path, tiny_gguf, adapter_dir,
                                                         prompt_ids, merged_logits):
    """Adapted or not (this adapter is on attention only), each weight matrix of the blocks
    is q8_0, for llama.cpp's fast kernels; the rest is carried over byte for byte."""
    served = write_served_gguf(adapter_dir, tiny_gguf, tmp_path / "served.gguf")
    base_reader, served_reader = gguf.GGUFReader(tiny_gguf), gguf.GGUFReader(served)

    for old, new in zip(base_reader.tensors, served_reader.tensors, strict=True):
        if old.name.startswith("blk.") and len(old.shape) == 2:
            assert new.tensor_type == gguf.GGMLQuantizationType.Q8_0, old.name
        else:
            assert np.array_equal(np.asarray(new.data), np.asarray(old.data)), old.name
    unadapted = [t for t in base_reader.tensors if t.name.endswith("ffn_up.weight")]
    assert unadapted and all(t.tensor_type != gguf.GGMLQuantizationType.Q8_0 for t in unadapted)
    assert correlation(llama_last_logits(served, prompt_ids), merged_logits) >= PARITY_BOUND


def test_smaller_types_come_from_llama_cpps_quantizer(tmp_path, tiny_gguf, adapter_dir,
                                                      prompt_ids, merged_logits, capfd):
    q8 = write_merged_gguf(adapter_dir, tiny_gguf, tmp_path / "q8.gguf", "q8_0")
    capfd.readouterr()
    small = write_merged_gguf(adapter_dir, tiny_gguf, tmp_path / "small.gguf",
                              quantize_to="q4_k_m")
    assert capfd.readouterr().err == ""  # the quantizer's line per tensor is kept aside

    assert read_header(small).get("general.file_type") == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert small.stat().st_size < q8.stat().st_size
    assert correlation(llama_last_logits(small, prompt_ids), merged_logits) >= 0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q8.gguf", "small.gguf"]


def test_progress_is_reported_per_tensor(tmp_path, tiny_gguf, adapter_dir):
    seen = []
    write_merged_gguf(adapter_dir, tiny_gguf, tmp_path / "merged.gguf",
                      report=lambda done, total, name: seen.append((done, total, name)))
    total = len(read_header(tiny_gguf).tensors)
    assert [done for done, _, _ in seen] == list(range(1, total + 1))
    assert {t for _, t, _ in seen} == {total}


def test_a_failed_merge_leaves_no_file_behind(tmp_path, tiny_gguf, adapter_dir):
    def fail_halfway(done, total, _name):
        if done > total // 2:
            raise OSError("No space left on device")

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match="No space"):
        write_merged_gguf(adapter_dir, tiny_gguf, out / "merged.gguf", report=fail_halfway)
    assert list(out.iterdir()) == []


def test_a_version_whose_merged_copy_fails_keeps_its_adapter(tmp_path, tiny_gguf, adapter_dir):
    """The merged copy is optional: a full disk while merging leaves the adapter file,
    which chat then attaches, and no partial copy."""
    import shutil

    from oppu.trainer.versions import GGUF_FILE, PEFT_DIR, write_model_files

    def fail_halfway(done, total, _name):
        if done > total // 2:
            raise OSError("No space left on device")

    shutil.copytree(adapter_dir, tmp_path / PEFT_DIR)
    write_model_files(tmp_path, tiny_gguf, "0" * 64, report=fail_halfway)
    assert sorted(p.name for p in tmp_path.iterdir()) == [GGUF_FILE, PEFT_DIR]


def test_merged_model_keeps_its_chat_template_and_stops_at_the_end_token(tmp_path, tiny_gguf,
                                                                        adapter_dir):
    merged = write_merged_gguf(adapter_dir, tiny_gguf, tmp_path / "merged.gguf")
    llm = open_llama(merged, n_ctx=256)
    try:
        end = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
        assert len(end) == 1
        messages = [{"role": "user", "content": "Hello there"}]
        free = llm.create_chat_completion(messages, max_tokens=12, temperature=0.0)
        ended = llm.create_chat_completion(messages, max_tokens=12, temperature=0.0,
                                           logit_bias={end[0]: 100.0})
        template = llm.metadata["tokenizer.chat_template"]
    finally:
        llm.close()
    assert "<|im_start|>" in template
    # Random weights ramble to the token limit, unless the end token comes: then it stops.
    assert free["choices"][0]["finish_reason"] == "length"
    assert ended["choices"][0]["finish_reason"] == "stop"
    assert ended["usage"]["completion_tokens"] <= 1
