"""Streaming replies: piece by piece, stoppable within one token, bounded by the window."""

import pytest

from oppu.engine.chat import ReplyStream, Sampling
from oppu.engine.errors import ContextTooSmall

MESSAGES = [{"role": "user", "content": "Write me a long letter about the sea."}]


def test_pieces_arrive_while_the_reply_is_being_generated(open_engine):
    engine = open_engine()
    stream = ReplyStream(engine, engine.prompt_tokens(MESSAGES), Sampling.greedy(16))
    tokens_when_yielded = [stream.stats.tokens for _piece in stream]
    # Each piece is handed over as soon as its token exists, not after the whole reply.
    assert tokens_when_yielded[0] == 1
    assert tokens_when_yielded == sorted(tokens_when_yielded)
    assert len(tokens_when_yielded) >= 8
    assert stream.stats.stop_reason == "length" and stream.stats.tokens == 16
    assert stream.stats.first_token_s is not None and stream.stats.first_token_s > 0


def test_a_character_cut_short_by_the_length_limit_is_dropped_not_replaced(open_engine,
                                                                         monkeypatch):
    engine = open_engine()
    spelled = iter([b"ok ", "\u5143".encode()[:1], "\u5143".encode()[1:], "\u5143".encode()[:2]])
    monkeypatch.setattr(engine, "detokenize_bytes", lambda _tokens: next(spelled))
    stream = ReplyStream(engine, engine.prompt_tokens(MESSAGES), Sampling.greedy(4))
    assert stream.text() == "ok \u5143" and stream.stats.stop_reason == "length"


def test_a_stop_request_ends_the_reply_within_one_token(open_engine):
    engine = open_engine()
    stream = ReplyStream(engine, engine.prompt_tokens(MESSAGES), Sampling.greedy(200))
    stream.should_stop = lambda: stream.stats.tokens >= 3
    pieces = list(stream)
    assert stream.stats.stop_reason == "stopped"
    assert stream.stats.tokens == 3 == len(stream.tokens) and pieces


def test_a_stop_request_while_a_long_prompt_is_read_ends_it_between_batches(open_engine):
    """Reading a long prompt took seconds (20 s on a busy machine) before a stop was seen."""
    long_messages = [{"role": "user", "content": "the sea and the sky " * 400}]
    engine = open_engine(n_ctx=4096)
    prompt = engine.prompt_tokens(long_messages)
    assert len(prompt) > 3 * 512
    asked = []
    stream = ReplyStream(engine, prompt, Sampling.greedy(8),
                         should_stop=lambda: asked.append(1) or len(asked) > 1)
    assert list(stream) == [] and stream.stats.stop_reason == "stopped"
    assert len(asked) == 2  # one batch read, then the stop
    # What was read half-way is reused, and the reply is the one a fresh engine gives.
    again = ReplyStream(engine, prompt, Sampling.greedy(8)).text()
    assert again == ReplyStream(open_engine(n_ctx=4096), prompt, Sampling.greedy(8)).text()


def test_sampling_with_a_seed_is_repeatable_and_seeds_differ(open_engine):
    engine = open_engine()
    prompt = engine.prompt_tokens(MESSAGES)

    def sample(seed):
        stream = ReplyStream(engine, prompt, Sampling(temperature=1.5, top_p=1.0, min_p=0.0,
                                                      max_tokens=24, seed=seed))
        stream.text()
        return stream.tokens

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_the_reply_never_runs_past_the_window(open_engine):
    engine = open_engine(n_ctx=256)
    prompt = engine.prompt_tokens(MESSAGES)
    stream = ReplyStream(engine, prompt, Sampling.greedy(500))
    stream.text()
    assert stream.stats.stop_reason == "length"
    assert len(prompt) + stream.stats.tokens == engine.n_ctx == 256


def test_a_prompt_larger_than_the_window_is_refused_clearly(open_engine):
    engine = open_engine(n_ctx=256)
    prompt = engine.prompt_tokens([{"role": "user", "content": "word " * 300}])
    with pytest.raises(ContextTooSmall, match="the context holds 256"):
        ReplyStream(engine, prompt, Sampling.greedy(10))


def test_invalid_sampling_is_refused():
    with pytest.raises(ValueError, match="invalid sampling"):
        Sampling(temperature=-1)
    with pytest.raises(ValueError, match="invalid sampling"):
        Sampling(max_tokens=0)
