"""Books as a user's writing: split at chapter or story headings into documents.

Benchmarks stand a book in for one person's writing: each chapter or story becomes one
document, and the last ones are held out. Gutenberg texts as NLTK distributes them are
tokenized (``Anne ' s hands , and``); `untokenize` restores ordinary prose so the model
is measured on text as a person would have typed it, not on a tokenizer's spacing.
"""

import math
import re
from dataclasses import dataclass
from pathlib import Path

ROMAN = r"[IVXLC]+"
# "Chapter 1", "CHAPTER IV .", "CHAPTER V . Advice from a Caterpillar", "XII .", "V . Title"
HEADING = re.compile(
    rf"^\s*(?:(?:chapter|story|part)\s+(?:\d+|{ROMAN})\b\s*\.?|{ROMAN}\s*\.)\s*(?P<rest>.*)$",
    re.IGNORECASE)
BARE_ROMAN = re.compile(rf"^{ROMAN}$")
CONTRACTION_ENDS = {"s", "t", "m", "d", "ll", "re", "ve"}
QUOTES = "\"'`"
CLOSERS = ",.;:!?)]}"
OPENERS = "([{"


@dataclass(frozen=True)
class Section:
    title: str
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


def _is_heading(line: str) -> re.Match | None:
    match = HEADING.match(line)
    if match is None:
        return None
    head = line.strip().split()[0]
    # A bare numeral line needs capitals ("IV ."), so a sentence such as "I . . ." is not one.
    if head.lower() not in {"chapter", "story", "part"} and not BARE_ROMAN.match(head):
        return None
    return match


def _looks_like_title(line: str) -> bool:
    """A short, mostly capitalized line right after a heading is the chapter's title."""
    words = [w for w in line.split() if any(c.isalpha() for c in w)]
    if not words or len(words) > 10:
        return False
    capitalized = sum(w[0].isupper() for w in words)
    return capitalized / len(words) >= 0.6


def split_sections(text: str) -> list[Section]:
    """Chapters or stories of a book, in order; text before the first heading is dropped."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _is_heading(line)]
    sections = []
    for number, (start, end) in enumerate(zip(starts, starts[1:] + [len(lines)]), 1):
        heading = lines[start].strip()
        body = lines[start + 1:end]
        title = _is_heading(heading).group("rest").strip()
        if not title and body and _looks_like_title(body[0]):
            title, body = body[0].strip(), body[1:]
        title = f"{' '.join(heading.split()[:2]).rstrip(' .')}: {title}" if title else heading
        body_text = "\n".join(line for line in body if line.strip())
        if body_text.strip():
            sections.append(Section(title.rstrip(" ."), body_text))
    if not sections:
        raise ValueError("no chapter or story headings found (expected lines such as "
                         "'Chapter 1', 'CHAPTER IV.' or 'XII.')")
    return sections


def untokenize(text: str) -> str:
    """NLTK-tokenized prose back to ordinary spacing; lines (sentences) become one paragraph."""
    open_quotes: set[str] = set()
    pieces: list[tuple[str, bool, bool]] = []  # token, glue to previous, glue to next
    for line in text.splitlines():
        tokens = line.split()
        i = 0
        while i < len(tokens):
            token = tokens[i]
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            if (token == "'" and pieces and pieces[-1][0][-1:].isalpha()
                    and following.lower() in CONTRACTION_ENDS):
                pieces.append(("'" + following, True, False))
                i += 2
                continue
            if any(c.isalnum() for c in token):
                pieces.append((token, False, False))
            else:
                pieces.append(_punctuation(token, open_quotes, i == 0, i == len(tokens) - 1))
            i += 1
    out: list[str] = []
    glue_next = True
    for token, glue_left, glue_right in pieces:
        if out and not (glue_left or glue_next):
            out.append(" ")
        out.append(token)
        glue_next = glue_right
    return "".join(out)


def _punctuation(token: str, open_quotes: set[str], line_start: bool, line_end: bool
                 ) -> tuple[str, bool, bool]:
    """How a punctuation-only token attaches to its neighbours, tracking open quotes."""
    if "-" in token and token.strip("-,;:.!?") == "":
        return token, True, True  # hyphens and dashes join words: "still-born", "so--"
    glue_left = token[0] in CLOSERS or token.startswith("--")
    glue_right = token[-1] in OPENERS or token.endswith("--")
    for position, char in enumerate(token):
        if char not in QUOTES:
            continue
        kind = '"' if char == "`" else char
        if position > 0 and token[position - 1] in CLOSERS + "-":
            opening = False  # ,' ?" --" close a quotation
        elif len(token) == 1 and line_start != line_end:
            opening = line_start  # a lone quote opens a line or closes it
        else:
            opening = kind not in open_quotes
        if opening:
            open_quotes.add(kind)
            if position == len(token) - 1:
                glue_right = True
        else:
            open_quotes.discard(kind)
            if position == 0:
                glue_left = True
    return token, glue_left, glue_right


def read_book(path: Path, tokenized: bool = True) -> list[Section]:
    """A book file as sections, each untokenized when the file is NLTK-tokenized."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    sections = split_sections(text)
    if tokenized:
        sections = [Section(untokenize(s.title), untokenize(s.text)) for s in sections]
    return sections


def hold_out_last(sections: list, fraction: float = 0.15) -> tuple[list, list]:
    """(training, held-out): the last `fraction` of documents, at least one, is held out."""
    if len(sections) < 2:
        raise ValueError("need at least two documents to hold one out")
    held = min(len(sections) - 1, max(1, math.floor(len(sections) * fraction + 0.5)))
    return sections[:-held], sections[-held:]
