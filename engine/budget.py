"""Fitting a chat prompt into the context window, so a reply never overflows it.

Priority, highest first: the new user message (its middle cut out down to half the window
if it is huge),
the instruction, the retrieved passages (best first), then the conversation's most
recent turns. The oldest turns go first, whole user+assistant exchanges at a time; then
the weakest passages; a message that still does not fit is cut further.

Old exchanges leave in blocks of `DROP_EXCHANGES`, counted from the start of the
conversation, not one at a time: a full window then keeps starting at the same turn for
several messages in a row, so the prompt keeps its start and llama.cpp reuses what it
evaluated instead of reading the whole window again for every message.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from oppu.engine.errors import ContextTooSmall
from oppu.storage.prompting import system_message, user_turn

DROP_EXCHANGES = 4
OMITTED = "\n\n[…]\n\n"  # where the middle of a message too long to fit was left out


class Tokenizer(Protocol):
    n_ctx: int

    def prompt_tokens(self, messages: list[dict]) -> list[int]: ...

    def tokenize(self, text: str, special: bool = False) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str: ...


@dataclass(frozen=True)
class FittedPrompt:
    messages: list[dict]
    tokens: list[int]
    passages_used: int  # how many of the passages, from the best, made it in
    turns_dropped: int  # messages of the history left out, oldest first
    notices: tuple[str, ...] = ()


def reply_room(n_ctx: int, max_reply_tokens: int) -> int:
    """Tokens kept free for the reply: the requested length, at most a quarter of the window."""
    return max(1, min(max_reply_tokens, n_ctx // 4))


def fit_prompt(tokenizer: Tokenizer, passages: Sequence[str], history: Sequence[dict],
               user_text: str, reply_tokens: int) -> FittedPrompt:
    limit = tokenizer.n_ctx - reply_tokens
    notices = []
    user_tokens = tokenizer.tokenize(user_text)
    if len(user_tokens) > limit // 2:
        # Its start and its end: a question comes before a pasted text or after it.
        tail = limit // 8
        head = limit // 2 - tail
        user_text = (tokenizer.detokenize(user_tokens[:head]) + OMITTED
                     + tokenizer.detokenize(user_tokens[-tail:]))
        notices.append(f"Your message was too long ({len(user_tokens)} tokens): only its "
                       f"first {head} and last {tail} tokens were used.")

    def build(n_passages: int, start: int, text: str) -> tuple[list[dict], list[int]]:
        messages = [system_message(), *history[start:], user_turn(text, passages[:n_passages])]
        return messages, tokenizer.prompt_tokens(messages)

    def fits(n_passages: int, start: int) -> bool:
        return len(build(n_passages, start, user_text)[1]) <= limit

    # Keep whole exchanges: a kept history starts at a user turn (every DROP_EXCHANGES-th),
    # or is empty.
    exchanges = [i for i, m in enumerate(history) if m["role"] == "user"]
    starts = exchanges[::DROP_EXCHANGES] + [len(history)]
    n_passages = len(passages)
    if fits(n_passages, starts[-1]):
        start = starts[_first_true(len(starts), lambda i: fits(n_passages, starts[i]))]
    else:
        start = len(history)
        n_passages = _last_true(len(passages) + 1, lambda n: fits(n, start))
        if n_passages < 0:
            n_passages = 0
            user_text = _cut_to_fit(tokenizer, user_text, limit,
                                    lambda text: len(build(0, start, text)[1]))
            notices.append("Your message was cut to fit the context window.")
    messages, tokens = build(n_passages, start, user_text)
    return FittedPrompt(messages, tokens, n_passages, start, tuple(notices))


def _first_true(n: int, predicate) -> int:
    """Smallest i in [0, n) with predicate(i), for a predicate false then true; n-1 is true."""
    low, high = 0, n - 1
    while low < high:
        middle = (low + high) // 2
        if predicate(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _last_true(n: int, predicate) -> int:
    """Largest i in [0, n) with predicate(i), for a predicate true then false; -1 if none."""
    if not predicate(0):
        return -1
    return n - 1 - _first_true(n, lambda i: predicate(n - 1 - i))


def _cut_to_fit(tokenizer: Tokenizer, text: str, limit: int, measure) -> str:
    tokens = tokenizer.tokenize(text)
    room = limit - measure("")
    if room < 1:
        raise ContextTooSmall(
            f"a context window of {tokenizer.n_ctx} tokens cannot hold the instruction "
            "and a reply; choose a larger one")
    keep = min(room, len(tokens))
    while keep > 0:
        cut = tokenizer.detokenize(tokens[:keep])
        if measure(cut) <= limit:
            return cut
        keep -= max(1, (measure(cut) - limit))
    raise ContextTooSmall(f"a context window of {tokenizer.n_ctx} tokens is too small")
