"""`Profile`: one user's world: their store, index, adapters, runs and settings."""

import shutil
from functools import cached_property
from pathlib import Path
from typing import Self

from oppu.core.progress import Progress, Report, ignore
from oppu.core.settings import Settings, load_settings, save_setting
from oppu.core.training import recover_interrupted
from oppu.storage.atomic import TEMP_PREFIX
from oppu.storage.db import Store
from oppu.storage.index import Embedder, Index
from oppu.storage.paths import (
    DEFAULT_PROFILE,
    InvalidProfileName,
    check_new_profile_name,
    private_dir,
    profile_dir,
    profile_path,
)
from oppu.storage.writing import ReconcileReport, Writing


class Profile:
    def __init__(self, name: str = DEFAULT_PROFILE, root: Path | None = None,
                 embedder: Embedder | None = None):
        self.name = name
        self.folder = profile_dir(name, root)
        self.store = Store(self.folder / "oppu.db")
        try:
            (self.folder / "oppu.db").chmod(0o600)
            recover_interrupted(self)  # runs killed mid-way are marked failed, files cleared
        except BaseException:
            self.store.close()
            raise
        self._embedder = embedder
        self.last_reconcile: ReconcileReport | None = None
        # Told how opening the writing goes when the search index is built again there
        # (after a crash mid-forget, or a lost index): minutes for a large store.
        self.on_reindex: Report = ignore

    @property
    def adapters_dir(self) -> Path:
        return private_dir(self.folder / "adapters")

    @property
    def runs_dir(self) -> Path:
        return private_dir(self.folder / "runs")

    @cached_property
    def index(self) -> Index:
        return Index(private_dir(self.folder / "chroma"), self._embedder)

    @cached_property
    def writing(self) -> Writing:
        """The user's writing; opening it first makes the index match the store."""
        writing = Writing(self.store, self.index, **_reading_limits(self.settings))
        self.last_reconcile = writing.reconcile(lambda done, total: self.on_reindex(
            Progress("reindex", done, total, "rebuilding the search index")))
        if self.last_reconcile.purged_documents:  # a forget cut short: finish all of it
            self._forget_answers()
        return writing

    def forget(self, *document_ids: int) -> None:
        """Delete documents and what was made from them, model versions aside: their
        chunks, their vectors (`Writing.forget`, which flags adapters trained on them) and
        the base model's cached answers about the writing, which may quote them (the next
        retrain asks again)."""
        self.writing.forget(*document_ids)
        self._forget_answers()

    def finish_forgetting(self) -> None:
        """`forget` the documents already marked deleted (`storage.writing.mark_forgotten`)."""
        if self.writing.purge_tombstones():
            self._forget_answers()

    def _forget_answers(self) -> None:
        from oppu.trainer.answer_replay import ANSWER_CACHE_FILE

        (self.runs_dir / ANSWER_CACHE_FILE).unlink(missing_ok=True)

    @property
    def settings(self) -> Settings:
        """The settings as stored now: another process (`oppu config` beside the open app
        or chat) may have changed them since the last look. Reading costs about 0.3 ms."""
        return load_settings(self.store)

    def set(self, key: str, value) -> Settings:
        """Change one setting, validated and saved; the others stay as stored."""
        settings = self.settings.with_value(key, value)
        save_setting(self.store, settings, key)
        if "writing" in self.__dict__:
            for name, limit in _reading_limits(settings).items():
                setattr(self.writing, name, limit)
        return settings

    def close(self) -> None:
        """Close the store, and Chroma if it was opened: its client shares one system per
        folder with any later one in this process, which a client left open keeps stale."""
        if "index" in self.__dict__:
            self.index.close()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _reading_limits(settings: Settings) -> dict:
    """The settings `Writing` reads files with."""
    return {"max_file_bytes": int(settings.max_file_mb * 2**20),
            "mail_addresses": frozenset(a.lower() for a in settings.mail_addresses)}


class ProfileInUse(Exception):
    pass


class ProfileExists(ValueError):
    pass


def refuse_while_training(profile: Profile, action: str) -> None:
    """ProfileInUse while one of the profile's training runs is live: the trainer writes
    into the profile's folder, by its name, until it ends."""
    from oppu.core.training import live_run

    if (run := live_run(profile)) is not None:
        raise ProfileInUse(f"training run {run} of {profile.name!r} is still running: stop it "
                           f"or let it finish, then {action}")


def rename_profile(profile: Profile, new_name: str) -> str:
    """Give `profile` another name, with everything it holds; return the new name.

    Its folder is renamed in one step: the profile moves whole or not at all (where files
    in use cannot be renamed, on Windows, it keeps its name). Refused while one of its
    training runs is live: the trainer writes into the folder by its name. `profile` is
    closed whatever happens: open the new name, or the old one after an error, to go on.
    """
    try:
        root = profile.folder.parent.parent
        target = profile_path(new_name, root)
        if new_name == profile.name:
            raise ProfileExists(f"the profile is already called {new_name!r}")
        if target.exists() and not target.samefile(profile.folder):  # not just another case
            raise ProfileExists(f"a profile named {new_name!r} already exists: pick another "
                                "name")
        check_new_profile_name(new_name, root, renaming=profile.name)
        refuse_while_training(profile, "rename")
    finally:
        profile.close()
    try:
        profile.folder.rename(target)
    except PermissionError:
        raise ProfileInUse(f"profile {profile.name!r} is in use by another program (an OPPU "
                           "window, chat or training): close it, then rename; nothing was "
                           "renamed") from None
    return new_name


def delete_profile_data(profile: Profile) -> None:
    """Delete everything `profile` holds: writing, chats, vectors, adapters, runs, settings.

    Refused while one of its training runs is live. The profile is closed whatever happens
    (Chroma too, or its cache would outlive the files). Its folder is renamed away before
    anything is removed, so the profile disappears whole or not at all: where files in use
    cannot be renamed (Windows), nothing is deleted. Opening the same name afterwards makes
    a fresh, empty profile.
    """
    try:
        refuse_while_training(profile, "delete")
    finally:
        profile.close()
    _remove_whole(profile.folder)


def delete_damaged_profile(name: str, root: Path | None = None) -> None:
    """Delete profile `name` whose database cannot be read (`StoreDamaged`): it cannot be
    opened, and nothing can be training on it."""
    _remove_whole(profile_path(name, root))


def _remove_whole(folder: Path) -> None:
    doomed = folder.with_name(f"{TEMP_PREFIX}deleted-{folder.name}")
    shutil.rmtree(doomed, ignore_errors=True)  # an earlier deletion cut short
    try:
        folder.rename(doomed)
    except PermissionError:
        raise ProfileInUse(f"profile {folder.name!r} is in use by another program (an OPPU "
                           "window, chat or training): close it, then delete; nothing was "
                           "deleted") from None
    shutil.rmtree(doomed)


def profile_name_problem(name: str, root: Path | None = None) -> str | None:
    """Why `name` cannot be a profile's (a new one must also suit every OS); None if it can."""
    try:
        if not profile_path(name, root).is_dir():
            check_new_profile_name(name, root)
    except InvalidProfileName as error:
        return str(error)
    return None
