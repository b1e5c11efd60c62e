"""The training set: the user's documents laid out as the engine prompts, packed into rows.

Each item is one stretch of a document, rendered through the base's chat template with
`oppu.storage.prompting.writing_messages`: a system turn that asks for the owner's voice,
a user turn with up to k passages retrieved from OLDER documents only (as in OPPU) and then
"Continue my writing" with the text just before the stretch as its opening, and the
stretch itself as the assistant's reply. Only the reply carries loss, plus the template's
end token where the reply reaches the end of the document.

A few items in the chat layout follow the writing: questions about passages of the training
documents with the base model's own answers (`oppu.trainer.answer_replay`), so that the
adapter keeps answering in chat. Only the answer carries loss.

Items are packed back to back into rows of exactly `seq_len` tokens: the last item of a row
is cut where the row ends and the document goes on in the next item, with a fresh prompt.
Positions restart at 0 for every item and the item boundaries travel with the rows, so the
packed attention keeps items apart. Only a row's tail shorter than the smallest possible
item is padding, and padding is never computed (micro-batches are laid end to end, pads
dropped). Documents are held out whole, by a seeded hash of their id, so a document stays
on the same side of the split as the profile grows.
"""

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import torch

from oppu.storage.errors import DocumentNotFound
from oppu.storage.prompting import inert, rendered, writing_messages
from oppu.trainer.answer_replay import (
    Answerer,
    pick_questions,
    question_count,
    question_messages,
)
from oppu.trainer.config import NotEnoughWriting

IGNORE = -100
OPENING_TOKENS = 48  # the text before a stretch, shown as the user's opening
MIN_REPLY_TOKENS = 16  # an item shorter than prompt + this is not worth its prompt
MIN_PASSAGE_WORDS = 12
TITLE_CHARS = 120


@dataclass(frozen=True)
class ItemSource:
    """Where a packed item comes from: its document, its stretch of it, its passages."""
    document_id: int
    reply_start: int  # token offsets of the reply in the document's text
    reply_end: int
    ends_document: bool  # the reply reaches the end and carries the end-of-turn token
    passage_document_ids: tuple[int, ...]
    kind: str = "writing"  # or "answer": a question about the document, the base's answer


@dataclass(frozen=True)
class Answer:
    """A question with a passage of a training document, and the base model's answer."""
    document_id: int
    prompt: list[int]
    reply: list[int]  # without the end-of-turn token


@dataclass
class MicroBatch:
    """Rows laid end to end as one row: the input of one forward pass."""
    input_ids: torch.Tensor  # (1, T)
    labels: torch.Tensor  # (1, T), IGNORE where no loss
    position_ids: torch.Tensor  # (1, T), 0 at each item start
    cu_seq_lens: list[int]  # item boundaries in T, from 0 to T
    loss_tokens: int

    @property
    def tokens(self) -> int:
        return self.input_ids.shape[1]


@dataclass
class PackedSequences:
    """Rows of `seq_len` tokens; a row's items end at `bounds[r]`, padding after the last."""
    input_ids: torch.Tensor  # (rows, seq_len)
    labels: torch.Tensor  # (rows, seq_len), IGNORE on prompts and padding
    position_ids: torch.Tensor  # (rows, seq_len), restart at 0 for each item
    bounds: list[list[int]]  # per row: 0, end of item 1, end of item 2, ..., used length
    sources: list[list[ItemSource]]  # per row, per item

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def tokens(self) -> int:
        """Tokens that are computed: everything but padding."""
        return sum(b[-1] for b in self.bounds)

    @property
    def loss_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())

    @property
    def padding(self) -> int:
        return len(self) * self.input_ids.shape[1] - self.tokens

    def batch(self, rows: list[int]) -> MicroBatch:
        """The given rows, pads dropped, laid end to end."""
        ids, labels, positions, cuts = [], [], [], [0]
        for r in rows:
            used = self.bounds[r][-1]
            ids.append(self.input_ids[r, :used])
            labels.append(self.labels[r, :used])
            positions.append(self.position_ids[r, :used])
            cuts += [cuts[-1] + b for b in self.bounds[r][1:]]
        label_row = torch.cat(labels)[None]
        return MicroBatch(torch.cat(ids)[None], label_row, torch.cat(positions)[None], cuts,
                          int((label_row != IGNORE).sum()))

    def batches(self, rows_per_batch: int, order: list[int] | None = None):
        order = list(range(len(self))) if order is None else order
        for start in range(0, len(order), rows_per_batch):
            yield self.batch(order[start:start + rows_per_batch])


@dataclass
class WritingDataset:
    train: PackedSequences
    heldout: PackedSequences
    train_document_ids: list[int]
    heldout_document_ids: list[int]
    train_words: int
    heldout_words: int = 0
    stats: dict = field(default_factory=dict)


def split_documents(words: dict[int, int], fraction: float, seed: int
                    ) -> tuple[list[int], list[int]]:
    """(train, held-out) ids of the documents in `words` (id: word count).

    A document is held out when its seeded hash falls under `fraction`, so its side stays
    put as writing is added. Where that holds out under half the intended share of the
    words (a few short documents drawn, say 35 words of 34,000), the next documents in hash
    order are added, skipping any that would take over twice the share: a promotion gate
    measured on a few dozen tokens is noise.
    """
    def rank(doc_id: int) -> float:
        digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64

    ids = list(words)
    held = [d for d in ids if rank(d) < fraction]
    if not held and fraction > 0 and len(ids) >= 2:
        held = [min(ids, key=rank)]
    share = fraction * sum(words.values())
    for candidate in sorted(set(ids) - set(held), key=rank):
        held_words = sum(words[d] for d in held)
        if held_words >= share / 2 or len(held) >= len(ids) - 1:
            break
        if held_words + words[candidate] <= 2 * share:
            held.append(candidate)
    if len(held) == len(ids):
        held = held[:-1]
    return [d for d in ids if d not in held], [d for d in ids if d in held]


def special_texts(tokenizer) -> frozenset[str]:
    """The text of the tokenizer's special tokens: those its chat template writes and its
    tokenizing reads as one token wherever they are spelled (the GGUF's control tokens)."""
    return frozenset(token.content for token in tokenizer.added_tokens_decoder.values()
                     if token.special)


class _Layout:
    """Renders items through the chat template and fits their prompts into a budget."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.specials = special_texts(tokenizer)
        probe = "\ue000"  # a private-use character no text contains
        prompt = self.render(writing_messages([], "", ""), tokenize=False,
                             add_generation_prompt=True)
        full = self.render(writing_messages([], "", "")
                           + [{"role": "assistant", "content": probe}], tokenize=False)
        if not full.startswith(prompt) or probe not in full:
            raise ValueError("the base model's chat template cannot lay out a reply")
        suffix = full[full.index(probe) + len(probe):].rstrip()
        self.end_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
        if not self.end_ids:
            raise ValueError("the base model's chat template has no end-of-turn token")

    def render(self, messages: list[dict], **options):
        return rendered(lambda fitted: self.tokenizer.apply_chat_template(fitted, **options),
                        messages, self.specials)

    def encode(self, text: str) -> list[int]:
        """The tokens of the user's text (special tokens spelled in it are `inert`)."""
        return self.tokenizer(inert(text, self.specials), add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def prompt(self, passages: list[str], title: str, opening: str) -> list[int]:
        return self.messages_prompt(writing_messages(passages, title, opening))

    def messages_prompt(self, messages: list[dict]) -> list[int]:
        return list(self.render(messages, tokenize=True, add_generation_prompt=True,
                                return_dict=False))

    def fit(self, passages: list[str], title: str, opening: str, budget: int
            ) -> tuple[list[int] | None, int]:
        """The prompt with as many passages (the last one cut by words) as fit `budget`,
        and how many passages it holds; (None, 0) if not even the bare prompt fits."""
        ids = self.prompt(passages, title, opening)
        if len(ids) <= budget:
            return ids, len(passages)
        kept = list(passages)
        while kept:
            words = kept.pop().split()
            if len(self.prompt(kept, title, opening)) > budget:
                continue
            low, high = 0, len(words)
            while low < high:
                middle = (low + high + 1) // 2
                if len(self.prompt(kept + [" ".join(words[:middle])], title, opening)) <= budget:
                    low = middle
                else:
                    high = middle - 1
            if low >= MIN_PASSAGE_WORDS:
                kept.append(" ".join(words[:low]))
            return self.prompt(kept, title, opening), len(kept)
        return None, 0


class _Packer:
    def __init__(self, seq_len: int):
        self.seq_len = seq_len
        self.rows: list[tuple[list[int], list[int], list[int], list[ItemSource]]] = []
        self._open()

    def _open(self) -> None:
        self.ids, self.labels, self.bounds, self.sources = [], [], [0], []

    @property
    def space(self) -> int:
        return self.seq_len - len(self.ids)

    def add(self, ids: list[int], labels: list[int], source: ItemSource) -> None:
        self.ids += ids
        self.labels += labels
        self.bounds.append(len(self.ids))
        self.sources.append(source)
        if self.space == 0:
            self.close()

    def close(self) -> None:
        if len(self.bounds) > 1:
            self.rows.append((self.ids, self.labels, self.bounds, self.sources))
        self._open()

    def sequences(self, pad_id: int) -> PackedSequences:
        self.close()
        shape = (len(self.rows), self.seq_len)
        ids = torch.full(shape, pad_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE, dtype=torch.long)
        positions = torch.zeros(shape, dtype=torch.long)
        for r, (row_ids, row_labels, bounds, _) in enumerate(self.rows):
            ids[r, :len(row_ids)] = torch.tensor(row_ids)
            labels[r, :len(row_labels)] = torch.tensor(row_labels)
            for a, b in pairwise(bounds):
                positions[r, a:b] = torch.arange(b - a)
        return PackedSequences(ids, labels, positions, [row[2] for row in self.rows],
                               [row[3] for row in self.rows])


class _Builder:
    def __init__(self, writing, tokenizer, config, exclude_from_retrieval: set[int]):
        self.writing = writing
        self.layout = _Layout(tokenizer)
        self.config = config
        self.exclude = exclude_from_retrieval
        self.retrieved = 0
        self.items = 0
        self.answers = 0

    def passages(self, query: str, document_id: int) -> list:
        k = self.config.retrieval_k
        if k <= 0 or not query.strip():
            return []
        hits = self.writing.search(query, k + len(self.exclude), self.config.retrieval_min_score,
                                   before_document=document_id)
        return [h for h in hits if h.document_id not in self.exclude][:k]

    def pack(self, documents: Sequence, answers: Sequence[Answer] = ()) -> PackedSequences:
        packer = _Packer(self.config.seq_len)
        for document in documents:
            self._pack_document(packer, document.id, document.title[:TITLE_CHARS],
                                self.layout.encode(document.text))
        for answer in answers:
            self._pack_answer(packer, answer)
        pad_id = self.layout.tokenizer.pad_token_id
        return packer.sequences(self.layout.end_ids[0] if pad_id is None else pad_id)

    def _fit_prompt(self, packer: _Packer, passages: list[str], title: str, opening: str
                    ) -> tuple[list[int] | None, int]:
        """The item's prompt fitted into the open row, or into a fresh one if it cannot be.

        A prompt takes at most half a row, so that the user's own text always has room."""
        def fit():
            budget = min(packer.space - MIN_REPLY_TOKENS, packer.seq_len // 2)
            return self.layout.fit(passages, title, opening, budget)

        prompt, kept = fit()
        if prompt is None and packer.space < packer.seq_len:
            packer.close()  # too little room left: the rest of this row is padding
            prompt, kept = fit()
        return prompt, kept

    def _pack_document(self, packer: _Packer, document_id: int, title: str, text: list[int]
                       ) -> None:
        end = self.layout.end_ids
        start = 0
        while start < len(text):
            opening = self.layout.decode(text[max(0, start - OPENING_TOKENS):start]).strip()
            hits = self.passages(opening or title, document_id)
            prompt, kept = self._fit_prompt(packer, [h.text for h in hits], title, opening)
            if prompt is None:
                raise ValueError(f"seq_len {packer.seq_len} is too short for the prompt of "
                                 f"document {document_id}")
            room = packer.space - len(prompt)
            remaining = len(text) - start
            if remaining + len(end) <= room:  # the document ends here: close the reply
                reply, closing = text[start:], end
            else:  # the document goes on in the next row; leave the end token to it
                reply, closing = text[start:start + min(room, remaining - len(end))], []
            source = ItemSource(document_id, start, start + len(reply), bool(closing),
                                tuple(h.document_id for h in hits[:kept]))
            self.retrieved += kept
            start += len(reply)
            packer.add(prompt + reply + closing, [IGNORE] * len(prompt) + reply + closing, source)
            self.items += 1


    def _pack_answer(self, packer: _Packer, answer: Answer) -> None:
        prompt, reply = answer.prompt, answer.reply + self.layout.end_ids
        if len(prompt) + len(reply) > packer.seq_len:
            return
        if len(prompt) + len(reply) > packer.space:
            packer.close()
        packer.add(prompt + reply, [IGNORE] * len(prompt) + reply,
                   ItemSource(answer.document_id, 0, 0, True, (), kind="answer"))
        self.answers += 1


def read_documents(writing, document_ids: Sequence[int]) -> list:
    """The documents among `document_ids` that are still stored, each read once, in order.
    One forgotten while a run reads the writing is left out, not an error."""
    documents = []
    for document_id in document_ids:
        try:
            documents.append(writing.get(document_id))
        except DocumentNotFound:
            pass
    return documents


def _answers(layout: _Layout, train: list, count: int, seed: int, answerer: Answerer
             ) -> list[Answer]:
    if not count:
        return []
    picked = pick_questions({d.id: d.text for d in train}, count, seed)
    prompts = [layout.messages_prompt(question_messages(question, passage))
               for _, passage, question in picked]
    replies = answerer(prompts, layout.end_ids)
    return [Answer(document_id, prompt, reply) for (document_id, *_), prompt, reply
            in zip(picked, prompts, replies, strict=True) if reply]


def build_dataset(writing, tokenizer, config, heldout_ids: set[int] | None = None,
                  answerer: Answerer | None = None) -> WritingDataset:
    """Lay out and pack the profile's writing; `heldout_ids` overrides the seeded split.
    `answerer` answers questions about training passages (`answer_replay.base_answerer`);
    without one the training set is the writing alone."""
    documents = read_documents(writing, sorted(d.id for d in writing.documents()))
    words = sum(d.words for d in documents)
    if words < config.min_words or not documents:
        raise NotEnoughWriting(words, config.min_words)
    ids = [d.id for d in documents]
    if heldout_ids is None:
        train_ids, held_ids = split_documents({d.id: d.words for d in documents},
                                              config.heldout_fraction, config.seed)
    else:
        held_ids = [d for d in ids if d in heldout_ids]
        train_ids = [d for d in ids if d not in heldout_ids]
    if not train_ids:
        raise NotEnoughWriting(0, config.min_words)
    held = set(held_ids)
    train_documents = [d for d in documents if d.id not in held]
    heldout_documents = [d for d in documents if d.id in held]
    builder = _Builder(writing, tokenizer, config, exclude_from_retrieval=held)
    answers = [] if answerer is None else _answers(
        builder.layout, train_documents,
        question_count(sum(d.words for d in train_documents), config.answer_items),
        config.seed, answerer)
    train = builder.pack(train_documents, answers)
    builder.exclude = set()  # held-out items retrieve as the engine would: from everything older
    heldout = builder.pack(heldout_documents)
    stats = {"items": builder.items, "answer_items": builder.answers,
             "retrieved_passages": builder.retrieved,
             "train_rows": len(train), "heldout_rows": len(heldout),
             "train_tokens": train.tokens, "train_loss_tokens": train.loss_tokens,
             "padding_tokens": train.padding + heldout.padding}
    return WritingDataset(train, heldout, train_ids, held_ids,
                          sum(d.words for d in train_documents),
                          sum(d.words for d in heldout_documents), stats)


def shuffled_rows(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order
