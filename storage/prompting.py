"""The one prompt layout shared by training and inference, as OPPU requires.

The trainer lays out every training item with these functions and the engine prompts
with them at chat time, so the adapter sees at inference exactly what it learned on:
a system message that asks for the user's own voice, then a user turn that carries the
retrieved passages of their earlier writing ahead of its request. Messages are plain
dicts for any chat template.

The passages ride in the latest user turn, not in the system message, so that the start of
a chat prompt (system message and earlier turns, which hold no passages) stays the same
from one message to the next, and llama.cpp reuses its evaluated tokens instead of
re-reading the whole conversation for every reply.
"""

import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import TypeVar

VOICE_INSTRUCTION = (
    "You are a private assistant that writes as its owner: in their own voice, "
    "vocabulary and style."
)
PASSAGES_HEADER = "Passages from my earlier writing:"
PASSAGE_SEPARATOR = "\n---\n"


def system_message() -> dict:
    return {"role": "system", "content": VOICE_INSTRUCTION}


def user_turn(request: str, passages: Sequence[str] = ()) -> dict:
    """A user turn: `passages` (one line each), then the request itself."""
    if not passages:
        return {"role": "user", "content": request}
    quoted = PASSAGE_SEPARATOR.join(" ".join(p.split()) for p in passages)
    return {"role": "user", "content": f"{PASSAGES_HEADER}\n{quoted}\n\n{request}"}


def continuation_request(title: str, opening: str) -> str:
    """The request of a writing item: continue `opening` (may be empty) of `title`."""
    request = f'Continue my writing "{title}".' if title else "Continue my writing."
    if opening:
        request += "\n\n" + opening
    return request


def writing_messages(passages: Sequence[str], title: str, opening: str) -> list[dict]:
    """System + user turns of one writing item; the user's own text is the reply."""
    return [system_message(), user_turn(continuation_request(title, opening), passages)]


@lru_cache(maxsize=8)
def _spelled(specials: frozenset[str]) -> re.Pattern | None:
    longest_first = sorted((s for s in specials if len(s) > 1), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, longest_first))) if longest_first else None


def inert(text: str, specials: Iterable[str]) -> str:
    """`text` with every spelling of one of the tokenizer's special tokens (`<|im_end|>` in
    a note about chat templates, or in a mail written to hijack the prompt) broken by a
    zero-width space after its first character, so that the tokenizer reads it as plain
    text: only the template's own markers are control tokens. Training and chat both pass
    the user's text through here, so they still see the same tokens."""
    pattern = _spelled(frozenset(specials))
    if pattern is None:
        return text
    return pattern.sub(lambda match: match.group()[0] + "\u200b" + match.group()[1:], text)


Rendered = TypeVar("Rendered")


def rendered(render: Callable[[list[dict]], Rendered], messages: list[dict],
             specials: Iterable[str] = ()) -> Rendered:
    """`render(messages)` through a chat template, the messages' text made `inert` to
    `specials`. A template that refuses a system turn (Mistral's and Gemma's raise an error
    for one) gets the system instruction at the head of the first user turn instead:
    training and chat both render through here."""
    messages = [{**m, "content": inert(m["content"], specials)} for m in messages]
    try:
        return render(messages)
    except Exception:  # the template's own raise_exception, as Jinja raises it
        if not messages or messages[0]["role"] != "system":
            raise
    system, *rest = messages
    if rest and rest[0]["role"] == "user":
        rest[0] = {**rest[0], "content": f"{system['content']}\n\n{rest[0]['content']}"}
        return render(rest)
    return render([{"role": "user", "content": system["content"]}, *rest])
