"""The context budget: prompts always fit, the oldest turns go first, huge messages are cut."""

import pytest

from oppu.engine.budget import DROP_EXCHANGES, OMITTED, fit_prompt, reply_room
from oppu.engine.chat import ReplyStream, Sampling
from oppu.engine.errors import ContextTooSmall
from oppu.storage.prompting import PASSAGES_HEADER, system_message, user_turn

PASSAGES = ["My grandmother taught me to bake rye bread on Sundays.",
            "I cycle to work along the canal, even in the rain."]


def conversation(turns: int) -> list[dict]:
    history = []
    for i in range(turns):
        history.append({"role": "user", "content": f"Question {i}: what did we say about "
                                                   f"topic {i} and its {i} details?"})
        history.append({"role": "assistant", "content": f"Answer {i}: " + "blah " * 12})
    return history


def test_a_200_turn_conversation_fits_and_keeps_the_newest_turns(open_engine):
    engine = open_engine(n_ctx=512)
    room = reply_room(engine.n_ctx, 200)
    history = conversation(200)
    fitted = fit_prompt(engine, PASSAGES, history, "And what now?", room)
    assert len(fitted.tokens) <= engine.n_ctx - room
    assert fitted.passages_used == 2  # passages outrank old turns
    kept = fitted.messages[1:-1]
    assert kept and kept == history[fitted.turns_dropped:]
    assert kept[0]["role"] == "user"  # whole exchanges only
    assert kept[-1] == history[-1]
    assert fitted.messages[-1] == user_turn("And what now?", PASSAGES[:2])
    # Old exchanges leave a block at a time, and one block fewer would not have fitted.
    assert fitted.turns_dropped % (2 * DROP_EXCHANGES) == 0
    block = 2 * DROP_EXCHANGES
    longer = fit_prompt(engine, PASSAGES, history[fitted.turns_dropped - block:],
                        "And what now?", room)
    assert longer.turns_dropped == block
    # The reply really runs to the end of the window without an overflow.
    stream = ReplyStream(engine, fitted.tokens, Sampling.greedy(10_000))
    stream.text()
    assert stream.stats.stop_reason == "length"
    assert len(fitted.tokens) + stream.stats.tokens == engine.n_ctx


def test_every_length_of_conversation_fits(open_engine):
    engine = open_engine(n_ctx=512)
    room = reply_room(engine.n_ctx, 128)
    history = conversation(40)
    for turns in range(0, 81, 7):
        fitted = fit_prompt(engine, PASSAGES, history[:turns], "Next?", room)
        assert len(fitted.tokens) <= engine.n_ctx - room
        assert engine.prompt_tokens(fitted.messages) == fitted.tokens


def test_short_conversations_are_kept_whole(open_engine):
    engine = open_engine(n_ctx=2048)
    history = conversation(3)
    fitted = fit_prompt(engine, PASSAGES, history, "Next?", 256)
    assert fitted.turns_dropped == 0 and fitted.messages[1:-1] == history
    assert fitted.notices == ()
    assert fitted.messages[0] == system_message()
    assert fitted.messages[-1]["content"].startswith(PASSAGES_HEADER)
    assert PASSAGES[0] in fitted.messages[-1]["content"]


def test_a_very_long_message_is_cut_with_a_notice(open_engine):
    engine = open_engine(n_ctx=512)
    room = reply_room(engine.n_ctx, 128)
    message = " ".join(f"sentence{i} goes on." for i in range(3000))
    fitted = fit_prompt(engine, PASSAGES, conversation(5), message, room)
    assert len(fitted.tokens) <= engine.n_ctx - room
    assert len(fitted.notices) == 1 and "too long" in fitted.notices[0]
    assert "its first 144 and last 48 tokens were used" in fitted.notices[0]
    user = fitted.messages[-1]["content"]
    start, end = user.split(OMITTED)  # the question may come first or last: both stay
    assert message.endswith(end) and start.rsplit("\n\n", 1)[-1] in message
    assert "sentence0 goes on." in start and "sentence2999 goes on." in end
    assert len(start) + len(end) < len(message)


def test_oversized_passages_give_way_weakest_first(open_engine):
    engine = open_engine(n_ctx=512)
    room = reply_room(engine.n_ctx, 128)
    passages = [f"passage {i}: " + "many words here " * 40 for i in range(4)]
    fitted = fit_prompt(engine, passages, conversation(3), "Hello?", room)
    assert len(fitted.tokens) <= engine.n_ctx - room
    assert 0 < fitted.passages_used < 4
    assert fitted.turns_dropped == 6  # the turns went before any passage did
    user = fitted.messages[-1]["content"]
    assert "passage 0:" in user and f"passage {fitted.passages_used}:" not in user


def test_a_window_too_small_for_the_instruction_is_a_clear_error(open_engine):
    engine = open_engine(n_ctx=256)
    with pytest.raises(ContextTooSmall, match="cannot hold the instruction"):
        fit_prompt(engine, [], [], "Hello?", 240)


def test_the_next_prompt_starts_with_the_conversation_so_far(open_engine):
    """Passages ride only in the newest user turn, so everything before the previous user
    turn is the same tokens as last time, and llama.cpp can reuse what it evaluated."""
    engine = open_engine(n_ctx=2048)
    history = conversation(3)
    before = fit_prompt(engine, PASSAGES, history, "First?", 256)
    after = fit_prompt(engine, PASSAGES[::-1], [*history, {"role": "user", "content": "First?"},
                                                {"role": "assistant", "content": "A reply."}],
                       "Second?", 256)
    same = next(i for i, (a, b) in enumerate(zip(before.tokens, after.tokens)) if a != b)
    shared_text = engine.detokenize(before.tokens[:same])
    assert history[-1]["content"] in shared_text and "First?" not in shared_text
    assert after.messages[-3] == {"role": "user", "content": "First?"}  # no passages kept


def test_a_full_window_keeps_its_start_for_several_messages(open_engine):
    """Once old turns must go, they go a block at a time, so the next messages' prompts
    still start with the same tokens (and llama.cpp reuses them)."""
    engine = open_engine(n_ctx=512)
    room = reply_room(engine.n_ctx, 128)
    history = conversation(60)
    starts = []
    for length in range(30, 61, 2):  # one exchange more each time
        fitted = fit_prompt(engine, PASSAGES, history[:length], "Next?", room)
        assert len(fitted.tokens) <= engine.n_ctx - room
        starts.append(fitted.turns_dropped)
    assert starts[-1] > 0 and starts == sorted(starts)
    assert len(starts) - len(set(starts)) >= len(starts) // 2  # most messages keep the start
