"""Replay items' answers come from the base model itself, through llama.cpp."""

from oppu.trainer.answer_replay import QUESTIONS, base_answerer, pick_passages
from tests.support.tiny_model import bundled_gguf

PASSAGE = ("Anne walked down to the harbour at Lyme with Captain Wentworth and the Musgroves. "
           "The wind was high, the sea was grey, and Louisa insisted on being jumped down the "
           "steps of the Cobb once more, though everyone begged her not to.")


def test_passages_are_stretches_of_the_given_documents_picked_by_seed():
    texts = {7: " ".join(f"w{i}" for i in range(500)), 9: "short text"}
    picked = pick_passages(texts, 5, seed=1)
    assert picked == pick_passages(texts, 5, seed=1) != pick_passages(texts, 5, seed=2)
    for document_id, passage in picked:
        assert passage in texts[document_id] and len(passage.split()) <= 120


def test_the_bundled_base_model_answers_questions_about_a_passage():
    progress = []
    answers = base_answerer(bundled_gguf(), seed=0,
                            report=lambda done, total: progress.append((done, total)))(
        [PASSAGE, PASSAGE])
    assert progress[-1] == (2, 2)
    answered = [a for a in answers if a is not None]
    assert answered  # the base model ends its answers on its own
    for question, answer in answered:
        assert question in QUESTIONS and answer.strip() == answer and answer
