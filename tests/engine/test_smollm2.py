"""The same checks on the real bundled SmolLM2-135M-Instruct (slow: minutes on 2 cores)."""

import pytest

from oppu.core.chat import ChatOptions, ChatSession, Models, base_sha256
from oppu.engine.chat import ReplyStream, Sampling
from oppu.engine.llm import Engine
from tests.engine.adapters import install_adapter, lora_gguf
from tests.support.tiny_model import bundled_gguf

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def smollm2():
    with Engine(bundled_gguf(), n_ctx=2048) as engine:
        yield engine


@pytest.fixture(scope="module")
def smollm2_adapter(tmp_path_factory):
    return lora_gguf(bundled_gguf(), tmp_path_factory.mktemp("smollm2-lora"), seed=0, b_std=0.05)


def greedy(engine, messages, n=24):
    stream = ReplyStream(engine, engine.prompt_tokens(messages), Sampling.greedy(n))
    pieces = list(stream)
    return stream, pieces


def test_streams_and_stops_at_the_templates_end_token(smollm2):
    smollm2.set_adapter(None)
    stream, pieces = greedy(smollm2, QUESTION, n=64)
    assert len(pieces) >= 1 and stream.stats.first_token_s is not None
    assert stream.stats.stop_reason == "end" and stream.stats.tokens < 64
    assert "Paris" in "".join(pieces)


def test_stop_request_on_the_real_model(smollm2):
    smollm2.set_adapter(None)
    stream = ReplyStream(smollm2, smollm2.prompt_tokens(
        [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]),
        Sampling(max_tokens=300, seed=3))
    stream.should_stop = lambda: stream.stats.tokens >= 5
    assert list(stream) and stream.stats.stop_reason == "stopped" and stream.stats.tokens == 5


def test_adapter_toggle_changes_greedy_output_and_switching_back_is_exact(
        smollm2, smollm2_adapter):
    prompt = [{"role": "user", "content": "Describe your favourite place in two sentences."}]
    smollm2.set_adapter(None)
    base = greedy(smollm2, prompt)[0].tokens
    smollm2.set_adapter(smollm2_adapter, 1.0)
    personal = greedy(smollm2, prompt)[0].tokens
    smollm2.set_adapter(None)
    again = greedy(smollm2, prompt)[0].tokens
    assert personal != base and again == base


def test_chat_on_the_bundled_model_with_retrieval_and_an_adapter(profile, smollm2_adapter):
    profile.writing.add_note("Every August I hike in the Dolomites with my brother Marco.",
                             "Summer plans")
    install_adapter(profile, smollm2_adapter, "v1", base_sha256(bundled_gguf()))
    models = Models()
    try:
        chat = ChatSession(profile, models, ChatOptions(sampling=Sampling.greedy(48)))
        pieces = []
        reply = chat.send("Where do I go hiking in the summer?", on_text=pieces.append)
    finally:
        models.close()
    assert len(pieces) > 1 and reply.adapter_version == "v1"
    assert reply.sources[0].title == "Summer plans"
    assert "Dolomites" in reply.prompt_messages[-1]["content"]


def test_every_token_detokenizes_to_its_whole_piece(smollm2):
    """Pieces longer than 32 bytes (a newline and 35 spaces, 60 dashes) came out empty."""
    code = "def f(x):\n" + "".join(" " * (4 * depth) + f"if x > {depth}:\n"
                                   for depth in range(1, 12)) + " " * 48 + "return x\n"
    for text in (code, "-" * 60 + "\n" + "=" * 80):
        tokens = smollm2.tokenize(text)
        assert smollm2.detokenize(tokens) == text
        assert any(len(smollm2.detokenize([t]).encode()) > 32 for t in tokens)
