"""Fixtures of the adapter file tests (profiles on the tiny base, with and without a
version, and one version exported) and of the chat tests."""

import pytest

from oppu.core.adapter_files import export
from tests.support.adapter_profiles import install_trained_version, open_profile
from tests.support.chat_setup import chat_profile, models  # noqa: F401 - chat tests' fixtures
from tests.support.tiny_model import build_tiny_gguf


@pytest.fixture(scope="module")
def other_base(tmp_path_factory):
    """Same architecture and shapes as the tiny base, other weights, so another sha256."""
    return build_tiny_gguf(tmp_path_factory.mktemp("other") / "other-llama.gguf", seed=1)


@pytest.fixture
def alice(tiny_gguf, adapter_dir):
    with open_profile("alice", tiny_gguf) as profile:
        install_trained_version(profile, adapter_dir, tiny_gguf)
        yield profile


@pytest.fixture
def exported(alice, tmp_path):
    return export(alice, out=tmp_path / "mine.zip")


@pytest.fixture
def fresh(tiny_gguf):
    """A second profile on the same base, with no adapter yet."""
    with open_profile("fresh", tiny_gguf) as profile:
        yield profile
