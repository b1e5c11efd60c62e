"""Engines on the tiny fixture GGUF and real LoRA adapters for it."""

import pytest

from tests.engine.adapters import lora_gguf


@pytest.fixture(scope="session")
def adapters_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-adapters")


@pytest.fixture(scope="session")
def tiny_adapter(tiny_gguf, adapters_folder):
    return lora_gguf(tiny_gguf, adapters_folder, seed=0)


@pytest.fixture(scope="session")
def other_tiny_adapter(tiny_gguf, adapters_folder):
    return lora_gguf(tiny_gguf, adapters_folder, seed=1)


@pytest.fixture
def open_engine(tiny_gguf):
    """Engine(s) on the tiny model, closed after the test: open_engine(n_ctx=...)."""
    from oppu.engine.llm import Engine

    engines = []

    def make(n_ctx: int = 512, path=None, n_threads: int | None = 1):
        # One thread by default: with other work on the cores, ggml's spinning thread
        # barrier makes two threads far slower than one.
        engines.append(Engine(path or tiny_gguf, n_ctx=n_ctx, n_threads=n_threads))
        return engines[-1]

    yield make
    for engine in engines:
        engine.close()
