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

import random
from collections.abc import Callable, Sequence

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
ANSWER_TOKENS = 200
WORDS_PER_QUESTION = 500  # a small profile gets few: its writing is what it is about
ROWS_PER_BATCH = 16
PAD_ID = 0  # any token: padding is masked out, and what follows a stop is cut off


def question_count(train_words: int, most: int) -> int:
    return min(most, train_words // WORDS_PER_QUESTION) if most else 0


def pick_questions(texts: dict[int, str], count: int, seed: int) -> list[tuple[int, str, str]]:
    """`count` (document id, passage, question): stretches of about PASSAGE_WORDS words from
    the documents `texts` (by id), each with a question from QUESTIONS."""
    rng = random.Random(f"answer-replay:{seed}")
    ids = sorted(texts)
    picked = []
    for _ in range(count if ids else 0):
        document_id = rng.choice(ids)
        words = texts[document_id].split()
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
