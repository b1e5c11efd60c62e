"""Splitting text into passages sized for retrieval and for the base model's context.

A passage is at most `max_words` words (about 1.4 tokens per word for English BPE), cut
at paragraph, then sentence, then word boundaries.
"""

import hashlib
import re

MAX_WORDS = 160
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def content_hash(text: str) -> str:
    """Identity of a text for de-duplication: whitespace differences do not count."""
    normalized = " ".join(text.split())
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def word_count(text: str) -> int:
    return len(text.split())


def _pieces(paragraph: str, max_words: int) -> list[str]:
    """A paragraph cut into pieces of at most `max_words` words."""
    if word_count(paragraph) <= max_words:
        return [paragraph]
    pieces = []
    for sentence in SENTENCE_END.split(paragraph):
        words = sentence.split()
        pieces += [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]
    return pieces


def split_passages(text: str, max_words: int = MAX_WORDS) -> list[str]:
    passages: list[str] = []
    current: list[str] = []
    current_words = 0
    for paragraph in PARAGRAPH_BREAK.split(text):
        paragraph = paragraph.strip()
        for piece in _pieces(paragraph, max_words) if paragraph else []:
            n = word_count(piece)
            if current and current_words + n > max_words:
                passages.append("\n\n".join(current))
                current, current_words = [], 0
            current.append(piece)
            current_words += n
    if current:
        passages.append("\n\n".join(current))
    return passages


def chunk_id(document_hash: str, ordinal: int) -> str:
    return f"{document_hash[:32]}-{ordinal}"
