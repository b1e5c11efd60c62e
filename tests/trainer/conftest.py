"""Fixtures of the trainer tests (the tiny base in transformers and a strong adapter on it,
`tiny_model` and `adapter_dir`, come from tests/conftest.py)."""

import pytest

from tests.support.parity import PROMPT, tokenize


@pytest.fixture(scope="module")
def prompt_ids(tiny_gguf):
    return tokenize(tiny_gguf, PROMPT)


def prepared_once(tmp_path_factory, gguf):
    """`gguf` prepared (dequantized, cached) in a data root of its own."""
    from oppu.trainer.prepare import prepare_base

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPPU_HOME", str(tmp_path_factory.mktemp("prepared-home")))
        return prepare_base(gguf)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tiny_gguf):
    return prepared_once(tmp_path_factory, tiny_gguf)


@pytest.fixture(scope="session")
def bundled_base(tmp_path_factory):
    """The bundled SmolLM2 prepared once per session (about 50 s): for slow tests."""
    from tests.support.tiny_model import bundled_gguf

    return prepared_once(tmp_path_factory, bundled_gguf())


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_base):
    return tiny_base.load_tokenizer()
