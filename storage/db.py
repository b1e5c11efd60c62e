"""The SQLite store: WAL mode, migrations on open, short read and write transactions.

Write transactions start with BEGIN IMMEDIATE. A deferred transaction that later wants
to write cannot wait for another process's lock (SQLite answers "database is locked" at
once); an immediate one waits up to the busy timeout instead.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from oppu.storage.errors import StoreDamaged, StoreUnavailable
from oppu.storage.migrations import migrate

BUSY_TIMEOUT_MS = 30_000
# Less free space than this, and a failing open is put down to a full disk.
DISK_FULL_BYTES = 1 << 20


def _engine(path: Path, begin: str):
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")
        # Deleted rows are overwritten, not left in free pages: a forget leaves no text.
        # (Debian's SQLite does this by default; python.org's builds do not.)
        dbapi_connection.execute("PRAGMA secure_delete = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql(begin)

    return engine


def _disk_full(folder: Path) -> bool:
    import shutil

    try:
        return shutil.disk_usage(folder).free < DISK_FULL_BYTES
    except OSError:
        return False


class Store:
    """One profile's SQLite database."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            raw = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                  isolation_level=None)
            try:
                raw.execute("PRAGMA journal_mode = WAL")
                self.applied_migrations = migrate(raw)
            finally:
                raw.close()
        except StoreUnavailable as error:  # from a newer OPPU
            raise StoreUnavailable(f"{self.path} cannot be opened: {error}") from None
        except sqlite3.OperationalError as error:  # locked past the timeout, unreadable, …
            if _disk_full(self.path.parent):  # SQLite says only "disk I/O error" then
                raise StoreUnavailable(
                    f"{self.path} cannot be opened: the disk it is on is full. Free some "
                    "space (an old adapter version, exports you no longer need), then "
                    "try again") from error
            raise StoreUnavailable(f"{self.path} cannot be opened: {error}") from error
        except sqlite3.DatabaseError as error:  # "file is not a database", "malformed"
            raise StoreDamaged(
                f"{self.path} is damaged ({error}): OPPU cannot read this profile. Restore "
                "the file from a backup, or move it away to start the profile afresh "
                "(its writing is lost then)") from error
        self._read_engine = _engine(self.path, "BEGIN")
        self._write_engine = _engine(self.path, "BEGIN IMMEDIATE")
        self._reader = sessionmaker(self._read_engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def writers_held_off(self) -> Iterator[bool]:
        """Take the write lock without waiting, so that no other writer is mid-transaction
        while the block runs: True if it was free (and is held until the block ends),
        False if a writer holds it now."""
        raw = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            try:
                raw.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # "database is locked"
                yield False
                return
            try:
                yield True
            finally:
                raw.execute("ROLLBACK")
        finally:
            raw.close()

    def checkpoint(self) -> None:
        """Move the write-ahead log into the database and empty it: the pages a delete
        replaced (a forgotten document's text) live on in the log until then."""
        raw = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()

    def schema_version(self) -> int:
        with self._read_engine.connect() as conn:
            return conn.exec_driver_sql("SELECT MAX(version) FROM schema_version").scalar() or 0

    def close(self) -> None:
        self._read_engine.dispose()
        self._write_engine.dispose()
