"""Adapter versions: listing, activation, rollback through the history, deletion.

The versions here are rows and folders laid out as a training run leaves them; the
files' contents do not matter to these operations (test_job covers real ones).
"""

import math
import shutil

import pytest

from oppu.core.adapters import (
    AdapterError,
    activate,
    active,
    deactivate,
    delete,
    list_adapters,
    rollback,
)
from oppu.storage.models import Adapter, AdapterDocument
from oppu.trainer.versions import GGUF_FILE, MERGED_FILE, next_version, recorded_path


def add_version(profile, version: str, loss: float, documents=(1, 2)) -> None:
    folder = profile.adapters_dir / version
    (folder / "peft").mkdir(parents=True)
    (folder / GGUF_FILE).write_bytes(b"GGUF")
    with profile.store.write() as session:
        adapter = Adapter(version=version, path=recorded_path(profile.folder, folder),
                          base_name="tiny.gguf",
                          base_sha256="0" * 64, metrics={"new": {"loss": loss}})
        session.add(adapter)
        session.flush()
        session.add_all(AdapterDocument(adapter_id=adapter.id, document_id=d) for d in documents)


@pytest.fixture
def three(profile):
    for number, loss in enumerate((3.0, 2.5, 2.2), 1):
        add_version(profile, f"v{number}", loss)
    return profile


def test_versions_are_listed_newest_first_with_metrics(three):
    versions = list_adapters(three)
    assert [v.version for v in versions] == ["v3", "v2", "v1"]
    assert [v.perplexity() for v in versions] == [pytest.approx(math.exp(loss))
                                                  for loss in (2.2, 2.5, 3.0)]
    assert versions[0].perplexity("base") is None
    assert active(three) is None
    with three.store.read() as session:
        assert next_version(session, three.adapters_dir) == "v4"


def test_rollback_walks_back_through_activations(three):
    for version in ("v1", "v3", "v2"):
        activate(three, version)
    assert active(three).version == "v2"
    assert [v.version for v in list_adapters(three) if v.is_active] == ["v2"]
    assert rollback(three).version == "v3"
    assert rollback(three).version == "v1"
    assert active(three).version == "v1"
    with pytest.raises(AdapterError, match="nothing earlier than v1 to roll back to"):
        rollback(three)
    assert active(three).version == "v1"


def test_activating_again_moves_a_version_to_the_top_of_the_history(three):
    for version in ("v1", "v2", "v1", "v3"):
        activate(three, version)
    assert rollback(three).version == "v1"
    assert rollback(three).version == "v2"


def test_unknown_or_broken_versions_cannot_be_activated(three):
    with pytest.raises(AdapterError, match=r"no adapter version 'v9' \(versions: v1, v2, v3\)"):
        activate(three, "v9")
    (three.adapters_dir / "v2" / GGUF_FILE).unlink()
    with pytest.raises(AdapterError, match="v2 has no adapter.gguf"):
        activate(three, "v2")
    assert active(three) is None


def test_a_rollback_to_a_version_whose_files_are_gone_is_refused(three):
    """It said "rolled back: v1 is active again", and chat then went without it."""
    activate(three, "v1")
    activate(three, "v2")
    shutil.rmtree(three.adapters_dir / "v1")
    with pytest.raises(AdapterError, match="v1 has no adapter.gguf"):
        rollback(three)
    assert active(three).version == "v2"


def test_nothing_to_roll_back_without_an_active_adapter(three):
    with pytest.raises(AdapterError, match="no adapter is active"):
        rollback(three)
    activate(three, "v2")
    deactivate(three)
    assert active(three) is None


def test_delete_removes_an_inactive_version_entirely(three):
    activate(three, "v3")
    with pytest.raises(AdapterError, match="v3 is active"):
        delete(three, "v3")
    delete(three, "v1")
    assert [v.version for v in list_adapters(three)] == ["v3", "v2"]
    assert not (three.adapters_dir / "v1").exists()
    with three.store.read() as session:
        assert session.query(AdapterDocument).count() == 4
    with three.store.read() as session:
        assert next_version(session, three.adapters_dir) == "v4"


def test_a_delete_killed_midway_leaves_a_temporary_that_the_next_open_clears(three,
                                                                           monkeypatch):
    """It used to leave v1/ without its meta.json, which no cleanup recognised (139 MB)."""
    from oppu.core.training import recover_interrupted
    from oppu.storage import atomic

    monkeypatch.setattr(atomic.shutil, "rmtree", lambda *a, **k: None)  # killed before it
    monkeypatch.setattr(atomic, "temp_prefix", lambda: f"{atomic.TEMP_PREFIX}999999999-")
    delete(three, "v1")
    [left] = [p.name for p in three.adapters_dir.iterdir() if p.name.startswith(".")]
    assert left == f"{atomic.TEMP_PREFIX}999999999-removed-v1"
    monkeypatch.undo()
    recover_interrupted(three)  # what opening the profile does; process 999999999 is gone
    assert sorted(p.name for p in three.adapters_dir.iterdir()) == ["v2", "v3"]


def test_merged_copies_are_kept_for_the_new_version_and_the_two_latest_activated(three):
    from oppu.trainer.versions import MERGED_FILE, drop_old_merged_copies

    add_version(three, "v4", 2.0)
    for version in ("v1", "v2", "v3", "v4"):
        (three.adapters_dir / version / MERGED_FILE).write_bytes(b"GGUF")
    for version in ("v1", "v2", "v3"):
        activate(three, version)
    with three.store.read() as session:
        drop_old_merged_copies(session, three.adapters_dir, "v4")
    kept = {v.version for v in list_adapters(three) if v.merged_path is not None}
    assert kept == {"v4", "v3", "v2"}  # the new one, the active one, the rollback target
    rollback(three)  # back to v2; v3, rolled back from, loses its copy at the next drop
    with three.store.read() as session:
        drop_old_merged_copies(session, three.adapters_dir, "v4")
    assert {v.version for v in list_adapters(three) if v.merged_path} == {"v4", "v2"}
    # v1, the next rollback target, lost its copy earlier: it is served attached
    assert all((three.adapters_dir / v / GGUF_FILE).is_file() for v in ("v1", "v2", "v3"))


def test_a_moved_data_folder_keeps_every_version(three, oppu_home, monkeypatch, embedder):
    """A restored backup or a new machine puts the data folder elsewhere."""

    from oppu.core.profile import Profile

    activate(three, "v2")
    three.close()
    moved = oppu_home.with_name("restored-home")
    shutil.move(oppu_home, moved)
    monkeypatch.setenv("OPPU_HOME", str(moved))
    with Profile(three.name, embedder=embedder) as reopened:
        versions = list_adapters(reopened)
        assert {v.path for v in versions} == {reopened.adapters_dir / f"v{n}" for n in (1, 2, 3)}
        assert all(v.gguf_path.is_file() for v in versions)
        assert active(reopened).version == "v2"
        assert activate(reopened, "v3").version == "v3" and rollback(reopened).version == "v2"
        delete(reopened, "v1")
        assert not (moved / "profiles" / three.name / "adapters" / "v1").exists()


def test_a_deleted_versions_number_is_never_handed_out_again(three):
    """A reply stored as written by v3 keeps meaning that adapter after v3 is deleted."""
    from oppu.core.conversations import Conversations

    conversations = Conversations(three.store)
    chat = conversations.create("Hello")
    conversations.add_message(chat, "assistant", "Hi there.", "v3", 1.0, [])
    activate(three, "v2")
    delete(three, "v3")
    shutil.rmtree(three.adapters_dir / "v3", ignore_errors=True)
    with three.store.read() as session:
        assert next_version(session, three.adapters_dir) == "v4"


def test_two_versions_stored_at_the_same_moment_get_two_numbers(three):
    """Two processes storing a version at once (two imports, an import during a run's
    commit) once both picked v4 and the second failed with "directory not empty"."""
    import threading

    from oppu.storage.atomic import staged_dir
    from oppu.storage.db import Store
    from oppu.trainer.versions import claimed_version

    holding, release = threading.Event(), threading.Event()
    stored: dict[str, str] = {}

    def store_one(name: str, hold: bool) -> None:
        store = Store(three.store.path)  # its own connections, as another process has
        with staged_dir(three.adapters_dir) as staged:
            (staged / "who.txt").write_text(name)
            with claimed_version(store, three.adapters_dir, staged) as (session, version):
                if hold:
                    holding.set()
                    release.wait(10)
                session.add(Adapter(version=version, base_name="tiny.gguf",
                                    base_sha256="0" * 64,
                                    path=recorded_path(three.folder,
                                                       three.adapters_dir / version)))
        stored[name] = version

    first = threading.Thread(target=store_one, args=("first", True))
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=store_one, args=("second", False))
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waits for the first to commit instead of taking v4 too
    release.set()
    first.join(10)
    second.join(10)
    assert stored == {"first": "v4", "second": "v5"}
    for name, version in stored.items():
        assert (three.adapters_dir / version / "who.txt").read_text() == name
    assert [v.version for v in list_adapters(three)] == ["v5", "v4", "v3", "v2", "v1"]


def test_a_version_whose_row_fails_is_taken_back(three):
    from oppu.storage.atomic import staged_dir
    from oppu.trainer.versions import claimed_version

    with pytest.raises(RuntimeError, match="disk full"), \
            staged_dir(three.adapters_dir) as staged:
        (staged / "who.txt").write_text("doomed")
        with claimed_version(three.store, three.adapters_dir, staged) as (_session, version):
            assert version == "v4"
            raise RuntimeError("disk full")
    assert sorted(p.name for p in three.adapters_dir.iterdir()) == ["v1", "v2", "v3"]


def test_activating_a_version_made_for_another_base_says_chat_goes_without_it(three, capsys):
    from oppu.core.cli import main

    assert main(["--profile", three.name, "activate", "v2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("v2 is now active\nnote: v2 was trained on another base model "
                          "(tiny.gguf)")
    assert not (three.adapters_dir / "v2" / MERGED_FILE).exists()


def test_the_command_line_can_go_back_to_the_base_model_only(three, capsys):
    from oppu.core.cli import main

    activate(three, "v2")
    assert main(["--profile", three.name, "deactivate"]) == 0
    assert capsys.readouterr().out == "no adapter is active: chat uses the base model only\n"
    assert active(three) is None and len(list_adapters(three)) == 3
    assert main(["--profile", three.name, "activate", "v2"]) == 0
    assert active(three).version == "v2"
