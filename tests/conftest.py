"""Shared fixtures: a private OPPU_HOME per test, one embedder and one tiny model per session."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from oppu.storage.privacy import go_offline

go_offline()


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA (tests marked gpu run only where it is)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def oppu_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own data root, so no test can touch real user data."""
    home = tmp_path / "oppu-home"
    monkeypatch.setenv("OPPU_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def embedder():
    from oppu.storage.index import default_embedder

    return default_embedder()


@pytest.fixture
def profile(oppu_home, embedder):
    from oppu.core.profile import Profile

    with Profile("tester", embedder=embedder) as opened:
        yield opened


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A 2-layer, width-64 llama GGUF with the bundled model's tokenizer, random weights."""
    from tests.support.tiny_model import build_tiny_gguf

    return build_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf")


@pytest.fixture(scope="module")
def tiny_model(tiny_gguf):
    """The tiny base loaded in transformers (cached per process)."""
    from tests.support.peft_fixtures import load_gguf_model

    return load_gguf_model(tiny_gguf)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_model):
    """A PEFT folder: a rank-8 LoRA on the attention projections of the tiny base, with
    random non-zero A and B, so it clearly changes the output."""
    from tests.support.peft_fixtures import STRONG_B, make_peft_adapter

    folder = tmp_path_factory.mktemp("peft") / "peft"
    make_peft_adapter(tiny_model, folder, b_std=STRONG_B)
    return folder
