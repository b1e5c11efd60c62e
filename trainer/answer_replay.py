"""Questions with passages of the owner's writing, answered by the base model, trained on too.

Every writing item teaches the adapter to continue the owner's text. On its own, that
turns every chat message into more of that text: asked "What is the capital of France?",
an adapter trained on twenty chapters of Persuasion wrote 500 tokens of novel and never
answered. A share of items in the chat layout (a question, about a passage of the owner's
writing or an everyday one with the passage as retrieved context, answered greedily by the
base model itself before any adapter is attached) keeps the answering the base model did,
while the writing items bring the voice: replay, as continual learning calls it. They carry
loss on the answer and its end token only, come from training documents only, and are
never part of the held-out set.
"""

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from oppu.storage.atomic import write_text
from oppu.storage.prompting import system_message, user_turn

# Questions with short answers: the base model ends those on its own, and the adapter
# learns from them that a chat reply ends too (the writing items mostly run to the row's end).
# Some are about the passage, some are everyday requests with the passage as retrieved
# context, as chat lays out any message.
ABOUT_THE_PASSAGE = (
    "Summarize this passage in two sentences.",
    "Suggest a short title for this passage.",
    "In one sentence, what happens here?",
    "Who is mentioned in this passage? Answer briefly.",
    "What is the mood of this passage, in a few words?",
    "What is this passage about? Answer in one or two sentences.",
)
EVERYDAY = (
    "Give me three tips for staying focused while working.",
    "What is the capital of Italy?",
    "How do I boil an egg?",
    "Write a short thank-you note to a friend.",
    "What should I pack for a weekend trip?",
    "Explain what a metaphor is, briefly.",
    "Suggest a name for a small bakery.",
    "How many days are there in a leap year?",
    "What is a good way to start a letter?",
    "Give me an idea for a quick dinner.",
)
QUESTIONS = ABOUT_THE_PASSAGE + EVERYDAY
PASSAGE_WORDS = 120
# Every batch runs this many steps, as about half the answers never end (about Persuasion:
# 52 of 96 ended, all but 2 of those within 128 tokens). With 200 tokens and 16 rows a
# batch those 96 took 134 s on 2 cores; with 48 rows 105 s and the same answers (96 rows:
# 112 s); with 128 tokens and 48 rows 78 s, peak RSS 2.5 GB, under training's own peak.
ANSWER_TOKENS = 128
WORDS_PER_QUESTION = 500  # a small profile gets few: its writing is what it is about
ROWS_PER_BATCH = 48
ANSWER_CACHE_FILE = "base-answers.json"  # in the profile's runs folder
PAD_ID = 0  # any token: padding is masked out, and what follows a stop is cut off
# (prompts, stop ids) -> the reply to each prompt, or None where there is no answer
Answerer = Callable[[list[list[int]], Sequence[int]], list[list[int] | None]]


def question_count(train_words: int, most: int) -> int:
    return min(most, train_words // WORDS_PER_QUESTION) if most else 0


def pick_questions(texts: dict[int, str], count: int, seed: int) -> list[tuple[int, str, str]]:
    """`count` (document id, passage, question): stretches of about PASSAGE_WORDS words from
    the documents `texts` (by id), each with a question from QUESTIONS.

    Each document offers one slot per WORDS_PER_QUESTION words (at least one), and each slot
    its own passage and question, drawn from the seed, the document and the slot alone. The
    `count` slots that draw the lowest numbers are asked. So writing grows the share of a
    document by its length, and a profile that grows keeps most of its questions from one
    run to the next, whose answers `AnswerCache` then has already.
    """
    words_of = {document_id: text.split() for document_id, text in texts.items()}
    slots = []
    for document_id, words in words_of.items():
        for slot in range(max(1, len(words) // WORDS_PER_QUESTION)):
            rng = random.Random(f"answer-replay:{seed}:{document_id}:{slot}")
            slots.append((rng.random(), document_id, slot, rng))
    picked = []
    for _, document_id, _, rng in sorted(slots, key=lambda s: s[:3])[:count]:
        words = words_of[document_id]
        start = rng.randrange(max(1, len(words) - PASSAGE_WORDS))
        picked.append((document_id, " ".join(words[start:start + PASSAGE_WORDS]),
                       rng.choice(QUESTIONS)))
    return picked


def question_messages(question: str, passage: str) -> list[dict]:
    return [system_message(), user_turn(question, [passage])]


def reply_until_stop(generated: list[int], stop_ids: Sequence[int]) -> list[int] | None:
    """The reply before the first stop token; None if it never stopped or said nothing."""
    end = next((i for i, token in enumerate(generated) if token in stop_ids), None)
    if end is None or end == 0:
        return None
    return generated[:end]


def greedy_continuations(model, prompts: list[list[int]], stop_ids: Sequence[int],
                         max_new_tokens: int, report: Callable[[int, int], None]
                         ) -> list[list[int]]:
    """What `model` generates greedily after each prompt, ROWS_PER_BATCH prompts of similar
    length at a time, left-padded; a row that stopped early goes on with PAD_ID."""
    import torch
    from transformers import GenerationConfig

    settings = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False,
                                eos_token_id=list(stop_ids), pad_token_id=PAD_ID)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    generated: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), ROWS_PER_BATCH):
        report(start, len(prompts))
        rows = order[start:start + ROWS_PER_BATCH]
        width = max(len(prompts[row]) for row in rows)
        padding = [width - len(prompts[row]) for row in rows]
        input_ids = torch.tensor([[PAD_ID] * pad + prompts[row]
                                  for row, pad in zip(rows, padding)], device=model.device)
        attention_mask = torch.tensor([[0] * pad + [1] * (width - pad) for pad in padding],
                                      device=model.device)
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                    generation_config=settings)
        for row, tokens in zip(rows, output[:, width:].tolist()):
            generated[row] = tokens
    report(len(prompts), len(prompts))
    return generated


def base_answerer(model, report: Callable[[int, int], None] = lambda done, total: None):
    """Answers prompts (token ids) greedily with `model`, the base model without adapters:
    the reply's ids before a stop id, or None where the answer did not end within
    ANSWER_TOKENS."""
    def answer(prompts: list[list[int]], stop_ids: Sequence[int]) -> list[list[int] | None]:
        was_training = model.training
        model.eval()
        try:
            generated = greedy_continuations(model, prompts, stop_ids, ANSWER_TOKENS, report)
        finally:
            model.train(was_training)
        return [reply_until_stop(tokens, stop_ids) for tokens in generated]

    return answer


class AnswerCache:
    """The base model's answers of the last run, by prompt, in one small JSON file.

    A retrain asks mostly the questions of the run before (`pick_questions` keeps them as
    the writing grows), and a greedy answer of the same base model to the same prompt is
    the same answer: asking again would cost a minute or more of a CPU retrain (96 questions
    about Persuasion: 78 s on 2 cores). The file holds the latest run's answers only, so it
    never grows beyond `answer_items`; it is replaced whole, and one that cannot be read is
    a cache that holds nothing.
    """

    def __init__(self, path: Path, base_sha256: str):
        self.path = Path(path)
        self.base_sha256 = base_sha256
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            saved = {}
        self.saved = {key: reply for key, reply in saved.items() if _is_reply(reply)} \
            if isinstance(saved, dict) else {}

    def key(self, prompt: list[int], stop_ids: Sequence[int]) -> str:
        made = json.dumps([self.base_sha256, ANSWER_TOKENS, sorted(stop_ids), prompt])
        return hashlib.sha256(made.encode()).hexdigest()

    def around(self, answerer: Answerer) -> Answerer:
        """`answerer`, asked only about the prompts this cache has no answer for."""
        def answer(prompts: list[list[int]], stop_ids: Sequence[int]) -> list[list[int] | None]:
            keys = [self.key(prompt, stop_ids) for prompt in prompts]
            missing = [i for i, key in enumerate(keys) if key not in self.saved]
            fresh = answerer([prompts[i] for i in missing], stop_ids) if missing else []
            known = self.saved | {keys[i]: reply for i, reply in zip(missing, fresh, strict=True)}
            replies = [known[key] for key in keys]
            self.saved = dict(zip(keys, replies))
            try:
                write_text(self.path, json.dumps(self.saved))
            except OSError:  # a full disk costs the next run time, not this run
                pass
            return replies

        return answer

    def drop(self) -> None:
        """Delete the file: its answers may quote writing that is now forgotten."""
        self.saved = {}
        self.path.unlink(missing_ok=True)


def _is_reply(value) -> bool:
    """What a cached answer can be: None, or token ids."""
    return value is None or (isinstance(value, list) and all(type(t) is int for t in value))
