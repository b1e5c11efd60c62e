"""Book splitting, untokenizing and the generation scores, on small inline texts."""

import pytest

from oppu.trainer.corpus import hold_out_last, split_sections, untokenize
from oppu.trainer.scoring import lcs_length, rouge_l, style_profile, style_similarity

BOOK = """[ A Book by Somebody 1900 ]
CHAPTER I .
Down the Rabbit - Hole
Alice was tired .
She said , ' I don ' t know !'
CHAPTER II . The Pool of Tears
' Curiouser and curiouser !' cried Alice .
III .
The Third
It was the best butter -- the best .
Chapter 4
Sir Walter Elliot , of Kellynch Hall , was vain ; " very vain ," said Anne .
"""


def test_split_sections_finds_every_heading_style_and_titles():
    sections = split_sections(BOOK)
    assert [s.title for s in sections] == [
        "CHAPTER I: Down the Rabbit - Hole", "CHAPTER II: The Pool of Tears",
        "III: The Third", "Chapter 4"]
    assert sections[0].text.startswith("Alice was tired")
    assert "Sir Walter" in sections[3].text
    assert "A Book by Somebody" not in " ".join(s.text for s in sections)


def test_split_sections_without_headings_is_a_clear_error():
    with pytest.raises(ValueError, match="no chapter or story headings"):
        split_sections("just some text\nwith lines\n")


def test_untokenize_restores_prose_spacing():
    assert untokenize("She said , ' I don ' t know !'") == "She said, 'I don't know!'"
    assert untokenize("It was the best butter -- the best .") == "It was the best butter--the best."
    assert untokenize('was vain ; " very vain ," said Anne .') == 'was vain; "very vain," said Anne.'
    assert untokenize("Down the Rabbit - Hole\n( as well )") == "Down the Rabbit-Hole (as well)"


def test_hold_out_last_keeps_order_and_at_least_one():
    train, held = hold_out_last(list(range(24)))
    assert held == [20, 21, 22, 23] and train == list(range(20))
    assert hold_out_last([1, 2]) == ([1], [2])
    with pytest.raises(ValueError):
        hold_out_last([1])


def test_lcs_and_rouge_l():
    assert lcs_length(["a", "b", "c", "d"], ["a", "c", "d", "e"]) == 3
    assert rouge_l("The cat sat on the mat.", "the cat sat on the mat") == pytest.approx(1.0)
    # LCS "the cat on the mat" = 5 of 6 words each way
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("x y z", "a b c") == 0.0


def test_style_similarity_prefers_the_same_habits():
    austen = "It was, indeed, a very fine thing; but she could not, upon the whole, be sure of it."
    alike = "He was, however, quite certain; and she would not, upon reflection, be easy about it."
    other = "Oh! Oh! What fun! 'Off with her head!' 'Curiouser!' Fun! Fun!"
    assert style_similarity(austen, austen) == pytest.approx(1.0)
    assert style_similarity(austen, alike) > style_similarity(austen, other)
    assert style_similarity("", austen) == 0.0
    profile = style_profile([austen, alike])
    assert profile[","] > profile["the"] > 0
    assert style_similarity(profile, alike) == pytest.approx(style_similarity(alike, profile))
