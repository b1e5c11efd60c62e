import sqlite3

import pytest

from oppu.storage.db import Store
from oppu.storage.errors import StoreUnavailable
from oppu.storage.migrations import LATEST, MIGRATIONS, migrate

TABLES = {"documents", "chunks", "conversations", "messages", "training_runs", "adapters",
          "adapter_documents", "settings", "schema_version"}


def tables(path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows} - {"sqlite_sequence"}


def test_an_empty_database_gets_every_migration_once(tmp_path):
    path = tmp_path / "oppu.db"
    store = Store(path)
    assert store.applied_migrations == [v for v, _, _ in MIGRATIONS]
    assert store.schema_version() == LATEST
    store.close()
    assert tables(path) == TABLES
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        versions = connection.execute("SELECT version FROM schema_version").fetchall()
    assert [v for (v,) in versions] == [v for v, _, _ in MIGRATIONS]

    reopened = Store(path)
    assert reopened.applied_migrations == []
    assert reopened.schema_version() == LATEST
    reopened.close()


def test_version_1_data_survives_the_upgrade_and_forgotten_ids_stay_used(tmp_path):
    path = tmp_path / "oppu.db"
    connection = sqlite3.connect(path, isolation_level=None)
    assert migrate(connection, MIGRATIONS[:1]) == [1]
    connection.executescript("""
        INSERT INTO documents (id, source, text, content_hash, created_at)
            VALUES (1, 'note', 'one', 'h1', '2024-01-01'), (2, 'note', 'two', 'h2', '2024-01-02');
        INSERT INTO chunks VALUES ('h1-0', 1, 0, 'one'), ('h2-0', 2, 0, 'two');
        INSERT INTO adapters (id, version, path, base_name, base_sha256, origin, metrics,
                              created_at) VALUES (1, 'v1', 'p', 'b', 's', 'trained', '{}', 'now');
        -- document 3 was forgotten after adapter v1 was trained on it
        INSERT INTO adapter_documents VALUES (1, 1), (1, 3);
    """)
    assert migrate(connection, MIGRATIONS) == [v for v, _, _ in MIGRATIONS[1:]]
    connection.execute("PRAGMA foreign_keys = ON")
    assert connection.execute("SELECT id, text FROM documents").fetchall() == [(1, "one"),
                                                                               (2, "two")]
    connection.execute("INSERT INTO documents (source, text, content_hash, created_at) "
                        "VALUES ('note', 'four', 'h4', '2024-01-04')")
    assert connection.execute("SELECT MAX(id) FROM documents").fetchone() == (4,)
    # The chunks still cascade from their (rebuilt) parent table.
    connection.execute("DELETE FROM documents WHERE id = 2")
    assert connection.execute("SELECT id FROM chunks").fetchall() == [("h1-0",)]
    connection.close()


def test_a_forgotten_document_id_is_never_handed_out_again(writing):
    kept = writing.add_note("A note that stays.")
    forgotten = writing.add_note("A note that goes.")
    writing.forget(forgotten)
    assert writing.add_note("A note that comes later.") > forgotten > kept


def test_version_4_adapter_paths_become_relative_to_the_profile(tmp_path):
    path = tmp_path / "oppu.db"
    connection = sqlite3.connect(path, isolation_level=None)
    assert migrate(connection, MIGRATIONS[:4]) == [1, 2, 3, 4]
    connection.execute(
        "INSERT INTO adapters (id, version, path, base_name, base_sha256, origin, metrics, "
        "created_at) VALUES (1, 'v7', '/home/ann/.local/share/oppu/profiles/default/adapters/v7',"
        " 'b', 's', 'trained', '{}', 'now')")
    assert migrate(connection, MIGRATIONS[:5]) == [5]
    assert connection.execute("SELECT path FROM adapters").fetchall() == [("adapters/v7",)]
    connection.close()


def test_a_damaged_database_is_one_line_naming_it(tmp_path):
    path = tmp_path / "oppu.db"
    path.write_bytes(b"not a database at all " * 500)
    with pytest.raises(StoreUnavailable) as refused:
        Store(path)
    assert str(refused.value).startswith(f"{path} is damaged (file is not a database)")


def test_a_database_from_a_newer_version_is_refused_untouched(tmp_path):
    path = tmp_path / "oppu.db"
    Store(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO schema_version VALUES (?, 'from the future', NULL)",
                           (LATEST + 1,))
    with pytest.raises(StoreUnavailable) as refused:
        Store(path)
    assert str(refused.value) == (
        f"{path} cannot be opened: it was last opened by a newer version of OPPU (database "
        f"schema {LATEST + 1}; this version knows up to {LATEST}): update OPPU to open this "
        "profile")
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT MAX(version) FROM schema_version").fetchone() == (
            LATEST + 1,)


def test_opening_an_up_to_date_store_does_not_wait_for_another_writer(tmp_path, monkeypatch):
    """Migrations took the write lock on every open: `oppu list` waited behind a long
    import in another process, and failed with "database is locked" after the timeout."""
    from oppu.storage import db

    path = tmp_path / "oppu.db"
    Store(path).close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    try:
        store = Store(path)
        assert store.schema_version() == LATEST
        store.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_store_that_cannot_be_opened_on_a_full_disk_says_the_disk_is_full(tmp_path,
                                                                            monkeypatch):
    """With the disk full every command said only "…/oppu.db cannot be opened: disk I/O
    error". Here the write-ahead log cannot be made (a folder holds its name), which SQLite
    reports the same way; the free space is what a full disk shows."""
    import shutil
    from collections import namedtuple

    from oppu.storage import db

    (tmp_path / "oppu.db-wal").mkdir()
    with pytest.raises(StoreUnavailable, match="disk I/O error"):
        Store(tmp_path / "oppu.db")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**9, 10**9, 4096))
    with pytest.raises(StoreUnavailable, match="the disk it is on is full. Free some space"):
        Store(tmp_path / "oppu.db")
    assert db.DISK_FULL_BYTES > 4096


def test_version_6_conversations_use_the_adapter_and_retrieval(tmp_path):
    path = tmp_path / "oppu.db"
    connection = sqlite3.connect(path, isolation_level=None)
    assert migrate(connection, MIGRATIONS[:6]) == [1, 2, 3, 4, 5, 6]
    connection.execute("INSERT INTO conversations VALUES (1, 'Bees', 'now', 'now')")
    assert migrate(connection, MIGRATIONS[:7]) == [7]
    assert connection.execute("SELECT use_adapter, use_retrieval FROM conversations"
                              ).fetchall() == [(1, 1)]
    connection.close()
