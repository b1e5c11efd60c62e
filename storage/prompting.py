"""The one prompt layout shared by training and inference, as OPPU requires.

The trainer lays out every training item with these functions and the engine prompts
with them at chat time, so the adapter sees at inference exactly what it learned on:
a system message that asks for the user's own voice and carries retrieved passages of
their earlier writing, then a user turn. Messages are plain dicts for any chat template.
"""

from collections.abc import Sequence

VOICE_INSTRUCTION = (
    "You are a private assistant that writes as its owner: in their own voice, "
    "vocabulary and style."
)
PASSAGES_HEADER = "Passages from the owner's earlier writing:"
PASSAGE_SEPARATOR = "\n---\n"


def system_message(passages: Sequence[str]) -> dict:
    content = VOICE_INSTRUCTION
    if passages:
        content += "\n\n" + PASSAGES_HEADER + "\n" + PASSAGE_SEPARATOR.join(
            " ".join(p.split()) for p in passages)
    return {"role": "system", "content": content}


def continuation_request(title: str, opening: str) -> dict:
    """The user turn of a writing item: continue `opening` (may be empty) of `title`."""
    request = f'Continue my writing "{title}".' if title else "Continue my writing."
    if opening:
        request += "\n\n" + opening
    return {"role": "user", "content": request}


def writing_messages(passages: Sequence[str], title: str, opening: str) -> list[dict]:
    """System + user turns of one writing item; the user's own text is the reply."""
    return [system_message(passages), continuation_request(title, opening)]
