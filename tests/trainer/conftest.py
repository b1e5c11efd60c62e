"""Fixtures of the conversion tests: the tiny base in transformers and a strong adapter on it."""

import pytest

from tests.support.parity import PROMPT, tokenize
from tests.support.peft_fixtures import STRONG_B, load_gguf_model, make_peft_adapter


@pytest.fixture(scope="module")
def tiny_model(tiny_gguf):
    return load_gguf_model(tiny_gguf)


@pytest.fixture(scope="module")
def prompt_ids(tiny_gguf):
    return tokenize(tiny_gguf, PROMPT)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_model):
    """A rank-8 LoRA on the attention projections with random non-zero A and B."""
    folder = tmp_path_factory.mktemp("peft") / "peft"
    make_peft_adapter(tiny_model, folder, b_std=STRONG_B)
    return folder


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
