"""Fixtures of the trainer tests (the tiny base in transformers and a strong adapter on it,
`tiny_model` and `adapter_dir`, come from tests/conftest.py)."""

import pytest

from tests.support.parity import PROMPT, tokenize


@pytest.fixture(scope="module")
def prompt_ids(tiny_gguf):
    return tokenize(tiny_gguf, PROMPT)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tiny_gguf):
    """The tiny GGUF prepared (dequantized, cached) once per session, in a data root of its own."""
    from oppu.trainer.prepare import prepare_base

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPPU_HOME", str(tmp_path_factory.mktemp("prepared-home")))
        return prepare_base(tiny_gguf)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_base):
    return tiny_base.load_tokenizer()
