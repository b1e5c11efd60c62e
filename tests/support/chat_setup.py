"""A profile with two notes on the tiny base, and chat sessions on it, for the chat tests."""

import pytest

from oppu.core.chat import ChatOptions, ChatSession, Models
from oppu.engine.chat import Sampling

NOTES = {
    "Beekeeping diary": "The bees on my roof swarmed twice in May; I caught both swarms.",
    "Sourdough notes": "My sourdough starter is called Gerald and lives in the fridge.",
}
QUESTION = "What happened with the bees on the roof?"


@pytest.fixture
def models():
    shared = Models(n_threads=1)
    yield shared
    shared.close()


@pytest.fixture
def chat_profile(profile, tiny_gguf):
    profile.set("base_model", str(tiny_gguf))
    profile.set("context_tokens", 512)
    for title, text in NOTES.items():
        profile.writing.add_note(text, title)
    return profile


def session(profile, models, **options) -> ChatSession:
    options.setdefault("sampling", Sampling.greedy(16))
    return ChatSession(profile, models, ChatOptions(**options))
