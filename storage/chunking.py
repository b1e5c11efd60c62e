"""Splitting text into passages sized for retrieval and for the base model's context.

A passage is at most `max_words` words (about 1.4 tokens per word for English BPE), cut
at paragraph, then sentence, then word boundaries.
"""

import hashlib
import re
import unicodedata
from itertools import pairwise

MAX_WORDS = 160
# Also at most this many characters: text with few spaces (a long URL list, base64, minified
# code) would otherwise make a passage of megabytes out of a few "words".
MAX_CHARS = 2000
# Chinese and Japanese are written without spaces: each of their characters counts as a
# word (a word there is one or two characters, each about a token), so that such writing
# is counted fairly against the retraining threshold and cut into passages at all.
UNSPACED = "\u3005-\u3007\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_PUNCTUATION = "\u3000-\u3004\u3008-\u303f\uff01\uff0c\uff1a\uff1b\uff1f"  # not 々〆〇
WORD = re.compile(rf"[{UNSPACED}]|[^\s{UNSPACED}{CJK_PUNCTUATION}]+")
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
LAST_SPACE = re.compile(r".*\s", re.DOTALL)
# Characters that belong to the one before: a cut never goes just before them (or just
# after a zero-width joiner, or between two flag letters), so an accent, a Hangul syllable
# spelled in jamo or an emoji sequence (keycaps, skin tones, tags) stays whole.
JOINERS = ("\u200c\u200d\ufe0e\ufe0f\u1160-\u11ff\ud7b0-\ud7ff"
           "\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f")
ATTACHED = re.compile(f"[{JOINERS}]")
FLAG_LETTER = re.compile("[\U0001f1e6-\U0001f1ff]")
MARKS = ("Mn", "Me", "Mc")


def content_hash(text: str) -> str:
    """Identity of a text for de-duplication: whitespace differences do not count."""
    normalized = " ".join(text.split())
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def word_count(text: str) -> int:
    return len(WORD.findall(text))


def _pieces(paragraph: str, max_words: int) -> list[str]:
    """A paragraph cut into pieces of at most `max_words` words and `MAX_CHARS` characters."""
    pieces = [paragraph]
    if word_count(paragraph) > max_words:
        pieces = []
        for sentence in SENTENCE_END.split(paragraph):
            starts = [m.start() for m in WORD.finditer(sentence)][::max_words]
            cuts = [0, *starts[1:], len(sentence)]  # punctuation stays with the words before it
            pieces += [piece for a, b in pairwise(cuts) if (piece := sentence[a:b].strip())]
    return [part for piece in pieces for part in _within_max_chars(piece)]


def _within_max_chars(text: str) -> list[str]:
    """`text` in parts of at most MAX_CHARS characters, cut at the last space in the second
    half of each part, else between two characters that do not belong together."""
    parts, start = [], 0
    while len(text) - start > MAX_CHARS:
        space = LAST_SPACE.match(text, start, start + MAX_CHARS + 1)
        cut = (space.end() if space and space.end() > start + MAX_CHARS // 2
               else _character_cut(text, start))
        parts.append(text[start:cut].rstrip())
        start = cut + len(text[cut:cut + MAX_CHARS]) - len(text[cut:cut + MAX_CHARS].lstrip())
    return [*parts, text[start:]] if start < len(text) else parts


def _character_cut(text: str, start: int) -> int:
    cut = start + MAX_CHARS
    while cut > start + MAX_CHARS // 2 and _holds_together(text[cut - 1], text[cut]):
        cut -= 1
    return cut


def _holds_together(before: str, after: str) -> bool:
    return bool(ATTACHED.match(after) or before == "\u200d"
                or unicodedata.category(after) in MARKS
                or FLAG_LETTER.match(before) and FLAG_LETTER.match(after))


def split_passages(text: str, max_words: int = MAX_WORDS) -> list[str]:
    passages: list[str] = []
    current: list[str] = []
    current_words = current_chars = 0
    for paragraph in PARAGRAPH_BREAK.split(text):
        paragraph = paragraph.strip()
        for piece in _pieces(paragraph, max_words) if paragraph else []:
            n = word_count(piece)
            if current and (current_words + n > max_words
                            or current_chars + len(piece) > MAX_CHARS):
                passages.append("\n\n".join(current))
                current, current_words, current_chars = [], 0, 0
            current.append(piece)
            current_words += n
            current_chars += len(piece) + 2
    if current:
        passages.append("\n\n".join(current))
    return passages


def chunk_id(document_hash: str, ordinal: int) -> str:
    return f"{document_hash[:32]}-{ordinal}"
