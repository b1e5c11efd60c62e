"""A text made ready to store: checked, titled, hashed and cut into passages; and text
shown safely on one line."""

import re
from dataclasses import dataclass

from oppu.storage.chunking import chunk_id, content_hash, split_passages
from oppu.storage.encoding import is_blank
from oppu.storage.errors import EmptyInput

SOURCES = ("note", "chat", "file", "mail")
# C0 and C1 controls: a newline breaks a line, \x1b and \x9b start terminal escapes.
CONTROLS = "\x00-\x1f\x7f-\x9f"
CONTROL_CHARACTERS = re.compile(f"[{CONTROLS}]")
# In a name, the bidirectional embeddings, overrides and isolates too, which would show its
# letters in another order ("rtl\u202etxt.md" as "rtldm.txt"). Text keeps them (and its
# marks): right-to-left writing uses them.
NAME_CONTROLS = re.compile(f"[{CONTROLS}\u061c\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str, keep_lines: bool = False, name: bool = False) -> str:
    """`text` on one line: control characters (a newline in a file name, a terminal
    escape) shown escaped. `keep_lines` keeps newlines and tabs (a message's own lines);
    a `name` (a path, a title) has its bidirectional controls escaped too."""
    def escaped(match: re.Match) -> str:
        character = match.group()
        return character if keep_lines and character in "\n\t" else repr(character)[1:-1]

    return (NAME_CONTROLS if name else CONTROL_CHARACTERS).sub(escaped, text)


@dataclass(frozen=True)
class Draft:
    """A text ready to store: checked, hashed and cut into passages, not yet embedded."""

    source: str
    title: str
    text: str
    origin: str | None
    digest: str
    passages: list[str]

    @property
    def chunk_ids(self) -> list[str]:
        return [chunk_id(self.digest, i) for i in range(len(self.passages))]


def make_draft(source: str, text: str, title: str = "", origin: str | None = None) -> Draft:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    if is_blank(text):
        raise EmptyInput(origin, "nothing to store: the text is empty")
    return Draft(source, (title.strip() or title_from(text))[:500], text, origin,
                 content_hash(text), split_passages(text))


def title_from(text: str, limit: int = 60) -> str:
    """A title for untitled writing: its first line, shortened with an ellipsis."""
    first = " ".join(text.strip().split("\n", 1)[0].split())
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"
