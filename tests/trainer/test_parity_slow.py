"""Parity on the real bundled SmolLM2-135M (Q4_1, 9 heads, 3 KV heads): adapter and merged GGUF."""

import pytest

from oppu.trainer.gguf_adapter import write_adapter_gguf
from oppu.trainer.merge import write_merged_gguf
from tests.support.parity import (
    DIFFERS_BOUND,
    PARITY_BOUND,
    PROMPT,
    correlation,
    llama_last_logits,
    open_llama,
    tokenize,
    torch_last_logits,
)
from tests.support.peft_fixtures import (
    load_gguf_model,
    load_peft,
    make_peft_adapter,
    merged_model,
)
from tests.support.tiny_model import bundled_gguf

pytestmark = pytest.mark.slow

# Changes the bundled model's logits clearly (correlation with the base about 0.94), and
# without the q/k permutation llama.cpp's correlation drops to about 0.97.
B_STD = 0.1


@pytest.fixture(scope="module")
def bundled():
    return bundled_gguf()


@pytest.fixture(scope="module")
def base_model(bundled):
    return load_gguf_model(bundled)  # about 50 s: transformers dequantizes the whole GGUF


@pytest.fixture(scope="module")
def prompt_ids(bundled):
    return tokenize(bundled, PROMPT)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, base_model):
    folder = tmp_path_factory.mktemp("bundled-peft") / "peft"
    make_peft_adapter(base_model, folder, b_std=B_STD)
    return folder


@pytest.fixture(scope="module")
def base_logits(bundled, base_model, prompt_ids):
    return torch_last_logits(base_model, prompt_ids), llama_last_logits(bundled, prompt_ids)


def test_adapter_gguf_parity_on_the_bundled_model(tmp_path, bundled, base_model, prompt_ids,
                                                  adapter_dir, base_logits):
    expected = torch_last_logits(load_peft(base_model, adapter_dir), prompt_ids)
    right = write_adapter_gguf(adapter_dir, bundled, tmp_path / "adapter.gguf")
    wrong = write_adapter_gguf(adapter_dir, bundled, tmp_path / "wrong.gguf", permute_qk=False)

    served = llama_last_logits(bundled, prompt_ids, right)
    assert correlation(served, expected) >= PARITY_BOUND
    assert correlation(expected, base_logits[0]) < DIFFERS_BOUND
    assert correlation(served, base_logits[1]) < DIFFERS_BOUND
    assert correlation(llama_last_logits(bundled, prompt_ids, wrong), expected) < PARITY_BOUND


@pytest.mark.parametrize("tensor_type", ["q8_0", "f16"])
def test_merged_gguf_parity_on_the_bundled_model(tmp_path, bundled, base_model, prompt_ids,
                                                 adapter_dir, base_logits, tensor_type):
    merged = write_merged_gguf(adapter_dir, bundled, tmp_path / "merged.gguf", tensor_type)
    served = llama_last_logits(merged, prompt_ids)

    assert correlation(served, torch_last_logits(merged_model(base_model, adapter_dir),
                                                 prompt_ids)) >= PARITY_BOUND
    assert correlation(served, base_logits[1]) < DIFFERS_BOUND


def test_merged_bundled_model_still_chats_and_stops_at_the_end_token(tmp_path, bundled,
                                                                     base_model):
    gentle = tmp_path / "peft"
    make_peft_adapter(base_model, gentle, b_std=0.02)  # a trained adapter nudges, not rewrites
    merged = write_merged_gguf(gentle, bundled, tmp_path / "merged.gguf")
    llm = open_llama(merged, n_ctx=1024)
    try:
        reply = llm.create_chat_completion(
            [{"role": "user", "content": "Say hello in one short sentence."}],
            max_tokens=200, temperature=0.0)
    finally:
        llm.close()
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["choices"][0]["message"]["content"].strip()
    assert "<|im_end|>" not in reply["choices"][0]["message"]["content"]
