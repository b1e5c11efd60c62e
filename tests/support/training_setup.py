"""Fixtures for training runs on the tiny model, made fast.

- The prepared (dequantized) base is cached under `<OPPU_HOME>/cache`, and every test has
  its own OPPU_HOME: linking that folder to one session-wide cache prepares the tiny
  model once per session instead of once per test.
- Embedding a few thousand words of notes takes tens of seconds on a busy 2-core machine:
  one profile is filled once per session and copied into each test's OPPU_HOME.

Import the fixtures into a test module under their function names (`trainee_fixture`,
`base_cache_fixture`, `writing_template_fixture`); tests ask for `trainee`, `base_cache`.
"""

import shutil
import subprocess

import pytest

from tests.support.sample_writing import add_notes

NAME = "trainee"
# Small rows, no retrieval: a step takes about a second on the tiny model. Epochs enough
# that `max_steps` alone decides how many steps a test run takes.
FAST = {"seq_len": 384, "batch_size": 2, "retrieval_k": 0, "max_steps": 3, "epochs": 4.0}


@pytest.fixture(scope="session", name="base_cache")
def base_cache_fixture(tmp_path_factory):
    return tmp_path_factory.mktemp("base-cache")


@pytest.fixture(scope="session", name="writing_template")
def writing_template_fixture(tmp_path_factory, embedder, tiny_gguf):
    from oppu.core.profile import Profile

    root = tmp_path_factory.mktemp("template")
    with Profile(NAME, root=root, embedder=embedder) as profile:
        profile.set("base_model", str(tiny_gguf))
        add_notes(profile, count=12, words_each=130)
    return root / "profiles" / NAME


@pytest.fixture(name="trainee")
def trainee_fixture(oppu_home, embedder, base_cache, writing_template):
    """A profile with about 1,600 words of notes, training on the tiny model."""
    from oppu.core.profile import Profile

    (oppu_home / "profiles").mkdir(parents=True)
    (oppu_home / "cache").symlink_to(base_cache, target_is_directory=True)
    shutil.copytree(writing_template, oppu_home / "profiles" / NAME)
    with Profile(NAME, embedder=embedder) as profile:
        yield profile


def start_run(profile, overrides: dict) -> tuple[int, subprocess.Popen]:
    """A recorded run and its child, started as the app would; stderr goes to its log."""
    from oppu.core.training import create_run, log_path, training_argv

    run_id = create_run(profile, overrides)
    with open(log_path(profile, run_id), "ab") as log:
        child = subprocess.Popen(training_argv(profile, run_id), stdout=subprocess.PIPE,
                                 stderr=log, text=True, start_new_session=True)
    return run_id, child
