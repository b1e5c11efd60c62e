"""The real desktop app on the tiny model: an `AppController` per test, window shown."""

import shutil

import pytest

from tests.support.training_setup import (  # noqa: F401 - fixtures used below
    FAST,
    NAME,
    base_cache_fixture,
    writing_template_fixture,
)


@pytest.fixture(autouse=True)
def no_dialogs(monkeypatch):
    """Confirmation dialogs answer yes; nothing modal may block a test."""
    monkeypatch.setattr("oppu.app.widgets.ask", lambda *_args, **_kwargs: True)


@pytest.fixture
def open_profile(embedder, tiny_gguf):
    """How the app opens a profile in tests: the session's embedder, the tiny base model."""
    from oppu.core.profile import Profile

    def open_(name: str) -> Profile:
        profile = Profile(name, embedder=embedder)
        if profile.settings.base_model == "bundled":
            profile.set("base_model", str(tiny_gguf))
        profile.set("max_reply_tokens", 24)
        return profile

    return open_


def started_app(qtbot, oppu_home, open_profile, name: str):
    """The app's controller with its window on screen and the writing open."""
    from oppu.app.controller import AppController

    controller = AppController(oppu_home, open_profile, name)
    controller.model.training_overrides = dict(FAST)
    qtbot.addWidget(controller.window)
    with qtbot.waitSignal(controller.writingReady, timeout=60_000):
        controller.window.show()
    return controller


@pytest.fixture
def app(qtbot, oppu_home, open_profile):
    """The app on an empty profile."""
    controller = started_app(qtbot, oppu_home, open_profile, "tester")
    yield controller
    controller.shutdown()


@pytest.fixture
def trainee_app(qtbot, oppu_home, open_profile, base_cache, writing_template):
    """The app on a profile with about 1,600 words of notes, ready to train fast."""
    (oppu_home / "profiles").mkdir(parents=True)
    (oppu_home / "cache").symlink_to(base_cache, target_is_directory=True)
    shutil.copytree(writing_template, oppu_home / "profiles" / NAME)
    controller = started_app(qtbot, oppu_home, open_profile, NAME)
    yield controller
    controller.shutdown()


def wait_jobs(qtbot, app, timeout: int = 60_000) -> None:
    qtbot.waitUntil(lambda: not app.jobs.running, timeout=timeout)
