"""Loading a GGUF, attaching adapters, and reusing one loaded model safely."""

import llama_cpp
import pytest

from oppu.engine.chat import ReplyStream, Sampling
from oppu.engine.llm import cpu_threads
from oppu.storage.prompting import system_message, user_turn

MESSAGES = [system_message(),
            user_turn("Tell me about the bees.", ["I keep bees on the roof of my flat."])]


def greedy_tokens(engine, n: int = 12) -> list[int]:
    """The greedy continuation of MESSAGES, as token ids."""
    prompt = engine.prompt_tokens(MESSAGES)
    stream = ReplyStream(engine, prompt, Sampling.greedy(n))
    assert stream.text() and stream.stats.tokens == n
    return stream.tokens


def test_defaults_use_every_core_and_the_gpu_when_llama_cpp_has_one(open_engine):
    engine = open_engine(n_threads=None)
    assert engine.n_threads == cpu_threads()
    assert engine.n_gpu_layers == (-1 if llama_cpp.llama_supports_gpu_offload() else 0)


def test_context_window_is_capped_at_the_training_length(open_engine, monkeypatch):
    from oppu.engine import llm

    opened = []
    real_open = llm._open_llama
    monkeypatch.setattr(llm, "_open_llama", lambda path, n_ctx, *rest: opened.append(n_ctx)
                        or real_open(path, n_ctx, *rest))
    assert open_engine(n_ctx=4096).n_ctx == 2048  # the tiny model's context_length
    assert open_engine(n_ctx=256).n_ctx == 256
    assert open_engine(n_ctx=1 << 20).n_ctx == 2048
    assert opened == [2048, 256, 2048]  # a window beyond it is never allocated, even briefly


def test_chat_template_comes_from_the_gguf(open_engine):
    engine = open_engine()
    assert engine.template.from_model
    prompt = engine.template.render(MESSAGES)
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith("flat.\n\nTell me about the bees.<|im_end|>\n"
                           "<|im_start|>assistant\n")
    start_of_turn = engine.tokenize("<|im_start|>", special=True)
    assert len(start_of_turn) == 1  # a special token, not its spelling
    assert engine.prompt_tokens(MESSAGES).count(start_of_turn[0]) == 3
    end_of_turn = engine.tokenize("<|im_end|>", special=True)
    assert len(end_of_turn) == 1 and engine.is_end(end_of_turn[0])
    assert not engine.is_end(engine.tokenize("bees")[0])


def test_adapter_changes_greedy_output_and_off_restores_it(open_engine, tiny_adapter):
    engine = open_engine()
    base = greedy_tokens(engine)
    info = engine.set_adapter(tiny_adapter, 1.0)
    assert info.rank == 8 and any("attn_q" in t for t in info.targets)
    personal = greedy_tokens(engine)
    assert personal != base
    engine.set_adapter(None)
    assert greedy_tokens(engine) == base
    engine.set_adapter(tiny_adapter, 0.0)  # scale 0 is the same as no adapter
    assert engine.adapter is None and greedy_tokens(engine) == base


def test_reused_engine_matches_fresh_engines_after_every_switch(
        open_engine, tiny_adapter, other_tiny_adapter):
    """The proof that one loaded model can serve every adapter: no stale KV cache or
    cached logits survive a switch. Same prompt each time, so prefix reuse is tempted."""
    def fresh(adapter, scale=1.0):
        engine = open_engine()
        engine.set_adapter(adapter, scale)
        return greedy_tokens(engine)

    expected = {None: fresh(None), "a": fresh(tiny_adapter), "b": fresh(other_tiny_adapter),
                "a/2": fresh(tiny_adapter, 0.5)}
    assert len({tuple(expected[k]) for k in (None, "a", "b")}) == 3
    reused = open_engine()
    for key, adapter, scale in [(None, None, 1.0), ("a", tiny_adapter, 1.0),
                                ("b", other_tiny_adapter, 1.0), ("a/2", tiny_adapter, 0.5),
                                ("a", tiny_adapter, 1.0), (None, None, 1.0),
                                ("b", other_tiny_adapter, 1.0)]:
        reused.set_adapter(adapter, scale)
        assert greedy_tokens(reused) == expected[key], key


def test_same_adapter_twice_keeps_the_cached_prompt(open_engine, tiny_adapter):
    engine = open_engine()
    engine.set_adapter(tiny_adapter, 1.0)
    first = greedy_tokens(engine)
    engine.set_adapter(tiny_adapter, 1.0)  # no change: nothing is thrown away
    assert engine._llm.n_tokens > 0
    assert greedy_tokens(engine) == first


def test_matches_llama_cpp_python_loading_the_adapter_itself(open_engine, tiny_gguf, tiny_adapter):
    """Our attach-after-load path gives what Llama(lora_path=...) gives."""
    from oppu.engine.llm import _without_amx_buffers

    engine = open_engine()
    engine.set_adapter(tiny_adapter, 1.0)
    ours = greedy_tokens(engine)
    with _without_amx_buffers():
        llm = llama_cpp.Llama(str(tiny_gguf), lora_path=str(tiny_adapter), n_ctx=512,
                              n_threads=engine.n_threads, verbose=False)
    try:
        prompt = engine.prompt_tokens(MESSAGES)
        theirs = []
        for token in llm.generate(prompt, temp=0.0, repeat_penalty=1.0):
            theirs.append(token)
            if len(theirs) == 12:
                break
    finally:
        llm.close()
    assert theirs == ours


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_adapter_scale_matters(open_engine, tiny_adapter, scale):
    engine = open_engine()
    engine.set_adapter(tiny_adapter, 1.0)
    full = greedy_tokens(engine)
    engine.set_adapter(tiny_adapter, scale)
    assert engine.adapter[1] == scale
    assert greedy_tokens(engine) != full


@pytest.mark.parametrize("policy, spin, expected", [
    (None, None, "- 3000"), ("PASSIVE", None, "PASSIVE -"), (None, "50", "- 50")])
def test_the_chat_bounds_openmp_spinning_unless_told_otherwise(policy, spin, expected):
    """Long-spinning OpenMP threads collapse decoding when other work shares the cores, and
    no spinning at all costs most of the speed on idle ones: importing the chat sets a
    short spin count, before libgomp loads, unless the user's environment chose already."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update({k: v for k, v in (("OMP_WAIT_POLICY", policy), ("GOMP_SPINCOUNT", spin)) if v})
    script = ("import os, sys, oppu.core.chat; "
              "print(os.environ.get('OMP_WAIT_POLICY', '-'), os.environ.get('GOMP_SPINCOUNT', '-'),"
              " 'llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [*expected.split(), "False"]


def test_a_template_without_a_system_turn_gets_the_instruction_in_the_first_user_turn():
    """Mistral's template raised "Conversation roles must alternate" for every message."""
    from oppu.engine.template import ChatTemplate
    from oppu.storage.prompting import VOICE_INSTRUCTION
    from tests.support.templates import MISTRAL

    template = ChatTemplate(MISTRAL, "<s>", "</s>", from_model=True)
    prompt = template.render([system_message(), user_turn("Tell me about the bees."),
                              {"role": "assistant", "content": "They hum."},
                              user_turn("And the hive?")])
    assert prompt == (f"<s>[INST] {VOICE_INSTRUCTION}\n\nTell me about the bees. [/INST]"
                      "They hum.</s>[INST] And the hive? [/INST]")
