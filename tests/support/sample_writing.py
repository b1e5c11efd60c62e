"""Varied, deterministic notes to stand in for a user's writing in tests (no external data)."""

import random

SUBJECTS = ("my sister", "the old neighbour", "our team", "the baker on Elm Street", "I",
            "the new intern", "my grandfather", "the cat", "a stranger at the station",
            "the hiking club", "my landlord", "the choir")
VERBS = ("noticed", "complained about", "laughed at", "wrote about", "fixed", "forgot",
         "painted", "argued over", "celebrated", "measured", "photographed", "repaired")
OBJECTS = ("the leaking tap", "a pile of unread letters", "the autumn garden",
           "yesterday's meeting", "the broken bicycle", "a recipe for plum cake",
           "the train timetable", "the quarterly budget", "an old map of the harbour",
           "the noisy radiator", "a jar of honey", "the chess tournament")
TAILS = ("before breakfast", "without saying a word", "in the pouring rain",
         "for the third time this week", "while the kettle boiled", "with great care",
         "as if nothing had happened", "just after midnight", "to everyone's surprise",
         "in a notebook with a red cover")
OPENERS = ("Honestly,", "Later,", "Of course", "Somehow", "Again,", "Then", "Frankly,",
           "In the end", "Meanwhile", "As usual")
TOPICS = ("Garden diary", "Work notes", "Family", "Travel plans", "Kitchen experiments",
          "Repairs", "Music", "Weekend", "Letters", "Neighbourhood")


def sentence(rng: random.Random) -> str:
    text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}"
    if rng.random() < 0.4:
        text = f"{rng.choice(OPENERS)} {text}"
    return text[0].upper() + text[1:] + rng.choice(".!.?.")


def varied_notes(count: int = 24, words_each: int = 150, seed: int = 0) -> list[tuple[str, str]]:
    """`count` notes of about `words_each` words: (title, text), paragraphs of sentences."""
    rng = random.Random(seed)
    notes = []
    for number in range(count):
        paragraphs, words = [], 0
        while words < words_each:
            paragraph = " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))
            paragraphs.append(paragraph)
            words += len(paragraph.split())
        notes.append((f"{rng.choice(TOPICS)} {number + 1}", "\n\n".join(paragraphs)))
    return notes


def add_notes(profile, count: int = 24, words_each: int = 150, seed: int = 0) -> list[int]:
    """Store varied notes in `profile`; their document ids."""
    return [profile.writing.add_note(text, title)
            for title, text in varied_notes(count, words_each, seed)]
