"""Replay items' answers come from the base model itself, generated greedily in batches."""

import json

import pytest
import torch

from oppu.trainer.answer_replay import (
    QUESTIONS,
    WORDS_PER_QUESTION,
    AnswerCache,
    base_answerer,
    greedy_continuations,
    pick_questions,
    question_messages,
    reply_until_stop,
)

PASSAGE = ("Anne walked down to the harbour at Lyme with Captain Wentworth and the Musgroves. "
           "The wind was high, the sea was grey, and Louisa insisted on being jumped down the "
           "steps of the Cobb once more, though everyone begged her not to.")


def test_passages_are_stretches_of_the_given_documents_picked_by_seed():
    texts = {7: " ".join(f"w{i}" for i in range(500)), 9: "short text"}
    picked = pick_questions(texts, 5, seed=1)
    assert picked == pick_questions(texts, 5, seed=1) != pick_questions(texts, 5, seed=2)
    for document_id, passage, question in picked:
        assert passage in texts[document_id] and len(passage.split()) <= 120
        assert question in QUESTIONS


def words(count: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(count))


def test_a_growing_profile_keeps_its_questions_and_long_documents_get_more():
    texts = {d: words(300 + 200 * d, f"d{d}w") for d in range(10)}
    before = pick_questions(texts, 8, seed=3)
    grown = texts | {d: words(900, f"d{d}w") for d in (10, 11)}
    after = pick_questions(grown, 8, seed=3)
    # a question of the old documents is asked now only if it was asked before, the same way
    assert all(pick in before for pick in after if pick[0] < 10)
    assert len([pick for pick in after if pick[0] < 10]) >= 5
    slots = pick_questions({1: words(10 * WORDS_PER_QUESTION, "a"), 2: words(50, "b")}, 11, 0)
    assert [document for document, *_ in slots].count(1) == 10  # one per 500 words


def counting(answers: dict):
    """A fake answerer that replies with the prompt reversed and counts what it is asked."""
    def answer(prompts, _stop_ids):
        answers["asked"] += len(prompts)
        return [prompt[::-1] if prompt[0] else None for prompt in prompts]

    return answer


def test_the_answer_cache_asks_only_new_prompts_and_keeps_the_last_run(tmp_path):
    path, seen = tmp_path / "answers.json", {"asked": 0}
    first = AnswerCache(path, "base-a").around(counting(seen))
    assert first([[1, 2], [0, 5], [3, 4]], [2]) == [[2, 1], None, [4, 3]]
    second = AnswerCache(path, "base-a").around(counting(seen))  # the next run, from the file
    assert second([[3, 4], [0, 5], [6, 7]], [2]) == [[4, 3], None, [7, 6]]
    assert seen["asked"] == 3 + 1  # a None answer is remembered too
    assert len(AnswerCache(path, "base-a").saved) == 3  # the latest run's prompts only
    AnswerCache(path, "base-b").around(counting(seen))([[3, 4]], [2])  # another base model
    assert seen["asked"] == 5
    path.write_bytes(b"\x00 not json")
    assert AnswerCache(path, "base-a").around(counting(seen))([[8, 9]], [2]) == [[9, 8]]
    cache = AnswerCache(path, "base-a")
    path.write_text(json.dumps({cache.key([8, 9], [2]): "text", cache.key([1], [2]): [1.5]}))
    assert AnswerCache(path, "base-a").saved == {}  # valid JSON, but no answers in it


def test_a_reply_is_what_comes_before_the_first_stop_token():
    assert reply_until_stop([5, 6, 2, 7, 2], stop_ids=[2]) == [5, 6]
    assert reply_until_stop([5, 6, 7], stop_ids=[2]) is None  # never ended: no answer
    assert reply_until_stop([2, 5], stop_ids=[2]) is None  # ended without a word


def test_batched_generation_gives_what_each_prompt_gets_alone(tiny_base, tiny_tokenizer):
    """Left padding must not change a greedy continuation: prompts of different lengths,
    batched, continue as each does on its own."""
    model = tiny_base.load_model().eval()
    prompts = [tiny_tokenizer.apply_chat_template(
        question_messages(question, PASSAGE[:length]), add_generation_prompt=True,
        return_dict=False) for question, length in zip(QUESTIONS, (40, 120, 200))]
    assert len({len(prompt) for prompt in prompts}) == 3
    never = [len(tiny_tokenizer) + 7]  # a stop id no model output can be
    progress = []
    batched = greedy_continuations(model, prompts, never, 8,
                                   lambda done, total: progress.append((done, total)))
    alone = [model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=8,
                            do_sample=False, pad_token_id=0)[0, len(prompt):].tolist()
             for prompt in prompts]
    assert batched == alone and progress == [(0, 3), (3, 3)]
    assert base_answerer(model)(prompts, never) == [None] * 3  # none ended: no answers


@pytest.mark.slow
def test_the_bundled_base_model_answers_questions_about_a_passage(bundled_base):
    tokenizer = bundled_base.load_tokenizer()
    prompts = [tokenizer.apply_chat_template(question_messages(question, PASSAGE),
                                             add_generation_prompt=True, return_dict=False)
               for question in QUESTIONS]
    progress = []
    answers = base_answerer(bundled_base.load_model(), lambda done, total: progress.append(
        (done, total)))(prompts, [tokenizer.convert_tokens_to_ids("<|im_end|>")])
    assert progress[0] == (0, len(QUESTIONS)) and progress[-1] == (len(QUESTIONS),) * 2
    answered = {question: tokenizer.decode(reply) for question, reply in zip(QUESTIONS, answers)
                if reply is not None}
    assert len(answered) >= len(QUESTIONS) // 3  # the base model ends many answers itself
    assert "Anne" in answered[QUESTIONS[0]]  # "Summarize this passage in two sentences."
