"""Questions with passages of the owner's writing, answered by the base model, trained on too.

Every writing item teaches the adapter to continue the owner's text. On its own, that
turns every chat message into more of that text: asked "What is the capital of France?",
an adapter trained on twenty chapters of Persuasion wrote 500 tokens of novel and never
answered. A share of items in the chat layout (a question, about a passage of the owner's
writing or an everyday one with the passage as retrieved context, answered by the base
model itself, greedily, through llama.cpp as chat serves it) keeps the answering the base
model did, while the writing items bring the voice: replay, as continual learning calls
it. They carry loss on the answer and its end token only, come from training documents
only, and are never part of the held-out set.
"""

import random
from collections.abc import Callable
from pathlib import Path

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


def question_count(train_words: int, most: int) -> int:
    return min(most, train_words // WORDS_PER_QUESTION) if most else 0


def pick_passages(texts: dict[int, str], count: int, seed: int) -> list[tuple[int, str]]:
    """`count` stretches of about PASSAGE_WORDS words from the documents `texts` (by id)."""
    rng = random.Random(f"answer-replay:{seed}")
    ids = sorted(texts)
    picked = []
    for _ in range(count if ids else 0):
        document_id = rng.choice(ids)
        words = texts[document_id].split()
        start = rng.randrange(max(1, len(words) - PASSAGE_WORDS))
        picked.append((document_id, " ".join(words[start:start + PASSAGE_WORDS])))
    return picked


def question_messages(question: str, passage: str) -> list[dict]:
    return [system_message(), user_turn(question, [passage])]


def base_answerer(base_gguf: Path, seed: int,
                  report: Callable[[int, int], None] = lambda done, total: None):
    """A function from passages to (question, answer) pairs, the answers the base model
    gives through llama.cpp; None for a passage whose answer did not end in time."""
    def answer(passages: list[str]) -> list[tuple[str, str] | None]:
        from oppu.engine.chat import ReplyStream, Sampling
        from oppu.engine.llm import Engine

        rng = random.Random(f"answer-replay-questions:{seed}")
        answers = []
        with Engine(base_gguf, n_ctx=2048, seed=seed) as engine:
            for done, passage in enumerate(passages):
                report(done, len(passages))
                question = rng.choice(QUESTIONS)
                prompt = engine.prompt_tokens(question_messages(question, passage))
                reply = ReplyStream(engine, prompt, Sampling.greedy(ANSWER_TOKENS))
                text = reply.text().strip()
                answers.append((question, text) if reply.stats.stop_reason == "end" and text
                               else None)
        report(len(passages), len(passages))
        return answers

    return answer
