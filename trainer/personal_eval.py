"""Does the adapter learn its user? OPPU's four configurations on held-out writing.

1. base: the base model;
2. base + retrieval: with passages of the user's other writing in the prompt;
3. adapter: base + the personal LoRA;
4. adapter + retrieval.

Perplexity is measured with transformers on the user's held-out documents laid out
exactly as training lays them out (`oppu.trainer.dataset`), with and without retrieved
passages; every token of the held-out text is scored once under each configuration, so
the four numbers are comparable. Generation items (the opening of a held-out stretch and what the user really wrote
next) and their scoring live here too; the greedy continuations themselves come from
llama.cpp, the product's path, in `oppu.core.evaluation`.
The benchmark (`bench/personalization.py`) and `oppu eval` both use this module.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from oppu.trainer.scoring import rouge_l, style_similarity

CONFIGURATIONS = ("base", "base+retrieval", "adapter", "adapter+retrieval")
OPENING_WORDS = 60
CONTINUATION_WORDS = 60

Report = Callable[[str, int, int], None]  # (what, done, total)


def _quiet(_what: str, _done: int, _total: int) -> None:
    pass


@dataclass
class HeldoutLayout:
    """The same held-out documents packed without and with retrieved passages."""
    plain: object  # PackedSequences
    retrieval: object  # PackedSequences
    document_ids: list[int]
    retrieved_passages: int


def heldout_layout(writing, tokenizer, config, document_ids: list[int],
                   retrieve_from_heldout: bool = True) -> HeldoutLayout:
    """Pack `document_ids` as the trainer does, once with `config.retrieval_k` passages and
    once with none. With `retrieve_from_heldout` False an item retrieves only from documents
    outside `document_ids` (a benchmark's training documents); otherwise from every older
    document, as the engine would."""
    if config.retrieval_k <= 0:
        raise ValueError("retrieval_k must be at least 1 to compare with and without retrieval")
    from oppu.trainer.dataset import read_documents

    exclude = set() if retrieve_from_heldout else set(document_ids)
    documents = read_documents(writing, document_ids)
    plain = _builder(writing, tokenizer, replace(config, retrieval_k=0), exclude)
    with_passages = _builder(writing, tokenizer, config, exclude)
    return HeldoutLayout(plain.pack(documents), with_passages.pack(documents),
                         [d.id for d in documents], with_passages.retrieved)


def _builder(writing, tokenizer, config, exclude: set[int]):
    """The trainer's own item layout and retrieval (one implementation for both)."""
    from oppu.trainer.dataset import _Builder

    return _Builder(writing, tokenizer, config, exclude_from_retrieval=set(exclude))


def perplexity(model, sequences, peft_dir: Path | None = None) -> dict:
    """Held-out metrics of `model`, with the adapter in `peft_dir` if given (taken out again
    afterwards, so `model` is the bare base model when this returns)."""
    from oppu.trainer.evaluate import heldout_metrics, load_adapter

    if peft_dir is None:
        return heldout_metrics(model, sequences)
    wrapped = load_adapter(model, peft_dir)
    try:
        return heldout_metrics(wrapped, sequences)
    finally:
        wrapped.unload()


def perplexities(model, layout: HeldoutLayout, peft_dir: Path, report: Report = _quiet) -> dict:
    """Held-out metrics of the four configurations, keyed as in `CONFIGURATIONS`."""
    results = {}
    for done, name in enumerate(CONFIGURATIONS):
        report(name, done, len(CONFIGURATIONS))
        sequences = layout.retrieval if name.endswith("retrieval") else layout.plain
        results[name] = perplexity(model, sequences,
                                   peft_dir if name.startswith("adapter") else None)
    report("done", len(CONFIGURATIONS), len(CONFIGURATIONS))
    return results


def reduction(new: float, old: float) -> float:
    """Relative perplexity cut of `new` against `old` (0.4: 40% lower)."""
    return 1.0 - new / old if old and math.isfinite(old) and math.isfinite(new) else math.nan


# -- generation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationItem:
    document_id: int
    title: str
    opening: str
    continuation: str
    passages: tuple[str, ...]


def generation_items(writing, tokenizer, config, document_ids: list[int], count: int,
                     exclude: set[int] = frozenset(), opening_words: int = OPENING_WORDS,
                     continuation_words: int = CONTINUATION_WORDS) -> list[GenerationItem]:
    """`count` (opening, real continuation) pairs spread evenly over the documents' text,
    each with the `config.retrieval_k` passages the trainer's retrieval gives its opening
    (never from `exclude`)."""
    from oppu.trainer.dataset import read_documents

    retrieval = _builder(writing, tokenizer, config, set(exclude))
    spans = []
    for document in read_documents(writing, document_ids):
        words = document.text.split()
        span = opening_words + continuation_words
        spans += [(document.id, document.title, words, start)
                  for start in range(0, len(words) - span + 1, span)]
    if not spans or count <= 0:
        return []
    step = len(spans) / min(count, len(spans))
    items = []
    for document_id, title, words, start in (spans[int(i * step)]
                                             for i in range(min(count, len(spans)))):
        opening = " ".join(words[start:start + opening_words])
        passages = [hit.text for hit in retrieval.passages(opening, document_id)]
        items.append(GenerationItem(document_id, title, opening, " ".join(
            words[start + opening_words:start + opening_words + continuation_words]),
            tuple(passages)))
    return items


def score_continuations(items: list[GenerationItem], texts: list[str]) -> dict:
    """Mean ROUGE-L and style similarity of generated continuations against the real ones,
    and the style similarity of everything generated against everything real (a profile
    needs a few hundred words to be stable)."""
    if not items:
        return {"rouge_l": math.nan, "style": math.nan, "style_pooled": math.nan, "items": 0}
    real = [item.continuation for item in items]
    return {
        "rouge_l": sum(rouge_l(t, r) for t, r in zip(texts, real)) / len(items),
        "style": sum(style_similarity(t, r) for t, r in zip(texts, real)) / len(items),
        "style_pooled": style_similarity(texts, real),
        "items": len(items),
        "words": sum(len(t.split()) for t in texts),
    }
