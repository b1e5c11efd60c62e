"""Scores for generated text against what the user really wrote.

- ROUGE-L: the F-measure of the longest common subsequence of words (Lin, 2004), as the
  `rouge-score` package computes `rougeL` (lower-cased alphanumeric tokens, no stemming).
  It rewards saying the same things in the same order.
- Style similarity: the cosine similarity of two function-word and punctuation frequency
  profiles. Function words (the, of, which, upon, ...) and punctuation habits are the
  classic stylometric signal (Mosteller & Wallace's Federalist study; Burrows' Delta):
  every text uses them, whatever its topic, and authors differ in them consistently. So
  unlike ROUGE-L it credits writing *like* the author without copying their words, and
  unlike character n-grams it is not fooled by names (Alice, Anne, Father Brown).
"""

import math
import re
from collections import Counter
from collections.abc import Iterable

WORD = re.compile(r"[a-z0-9]+")
STYLE_TOKEN = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|--|[,.;:!?'\"()\-]")

_FUNCTION_WORD_LIST = """
a about above after again against all also although am among an and another any are as at
be because been before being below between both but by can could did do does doing down
during each either enough ever every few for from further had has have having he her here
hers herself him himself his how however i if in indeed into is it its itself just least
less may me might mine more most much must my myself neither never no nor not now of off
often on once one only or other ought our ours ourselves out over own perhaps quite rather
same shall she should since so some such than that the their theirs them themselves then
there these they this those though through thus till to too under until up upon very was
we were what when where whether which while who whom whose why will with within without
would yet you your yours yourself
"""
FUNCTION_WORDS = tuple(_FUNCTION_WORD_LIST.split())
PUNCTUATION = (",", ".", ";", ":", "!", "?", "'", '"', "(", ")", "-", "--")
STYLE_FEATURES = FUNCTION_WORDS + PUNCTUATION
_FEATURE_SET = frozenset(STYLE_FEATURES)


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, in O(len(a)·len(b)) time, O(len(b)) space."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of `candidate` against `reference`, in [0, 1]."""
    cand, ref = _words(candidate), _words(reference)
    if not cand or not ref:
        return 0.0
    common = lcs_length(cand, ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def style_profile(texts: str | Iterable[str]) -> dict[str, float]:
    """Relative frequencies of function words and punctuation among all tokens of `texts`."""
    if isinstance(texts, str):
        texts = [texts]
    counts: Counter[str] = Counter()
    total = 0
    for text in texts:
        tokens = [t.lower() for t in STYLE_TOKEN.findall(text)]
        total += len(tokens)
        counts.update(t for t in tokens if t in _FEATURE_SET)
    return {f: counts[f] / total for f in STYLE_FEATURES if counts[f]} if total else {}


def style_similarity(a: str | Iterable[str] | dict, b: str | Iterable[str] | dict) -> float:
    """Cosine similarity of two style profiles (texts or profiles), in [0, 1]."""
    pa = a if isinstance(a, dict) else style_profile(a)
    pb = b if isinstance(b, dict) else style_profile(b)
    dot = sum(v * pb.get(k, 0.0) for k, v in pa.items())
    norm = math.sqrt(sum(v * v for v in pa.values())) * math.sqrt(sum(v * v for v in pb.values()))
    return dot / norm if norm else 0.0
