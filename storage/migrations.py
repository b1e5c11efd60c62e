"""Numbered, forward-only schema migrations. Never edit one that has shipped: add the next."""

from oppu.storage.errors import StoreUnavailable

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema",
        [
            """CREATE TABLE documents (
                id INTEGER PRIMARY KEY,
                source VARCHAR(16) NOT NULL,
                title VARCHAR(500) NOT NULL DEFAULT '',
                text TEXT NOT NULL,
                content_hash VARCHAR(64) NOT NULL UNIQUE,
                origin TEXT,
                words INTEGER NOT NULL DEFAULT 0,
                created_at DATETIME NOT NULL,
                deleted BOOLEAN NOT NULL DEFAULT 0)""",
            "CREATE INDEX ix_documents_created ON documents (created_at)",
            """CREATE TABLE chunks (
                id VARCHAR(80) PRIMARY KEY,
                document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
                ordinal INTEGER NOT NULL,
                text TEXT NOT NULL)""",
            "CREATE INDEX ix_chunks_document ON chunks (document_id)",
            """CREATE TABLE conversations (
                id INTEGER PRIMARY KEY,
                title VARCHAR(200) NOT NULL,
                created_at DATETIME NOT NULL,
                updated_at DATETIME NOT NULL)""",
            """CREATE TABLE messages (
                id INTEGER PRIMARY KEY,
                conversation_id INTEGER NOT NULL
                    REFERENCES conversations (id) ON DELETE CASCADE,
                role VARCHAR(16) NOT NULL,
                text TEXT NOT NULL,
                adapter_version VARCHAR(32),
                adapter_scale FLOAT,
                retrieved_chunk_ids JSON NOT NULL,
                created_at DATETIME NOT NULL)""",
            "CREATE INDEX ix_messages_conversation ON messages (conversation_id)",
            """CREATE TABLE training_runs (
                id INTEGER PRIMARY KEY,
                status VARCHAR(16) NOT NULL,
                config JSON NOT NULL,
                metrics JSON NOT NULL,
                loss_curve JSON NOT NULL,
                error TEXT,
                pid INTEGER,
                adapter_version VARCHAR(32),
                promoted BOOLEAN NOT NULL DEFAULT 0,
                decision TEXT,
                started_at DATETIME NOT NULL,
                finished_at DATETIME)""",
            """CREATE TABLE adapters (
                id INTEGER PRIMARY KEY,
                version VARCHAR(32) NOT NULL UNIQUE,
                path TEXT NOT NULL,
                base_name VARCHAR(200) NOT NULL,
                base_sha256 VARCHAR(64) NOT NULL,
                origin VARCHAR(16) NOT NULL,
                metrics JSON NOT NULL,
                words_trained INTEGER NOT NULL DEFAULT 0,
                is_active BOOLEAN NOT NULL DEFAULT 0,
                trained_on_deleted BOOLEAN NOT NULL DEFAULT 0,
                run_id INTEGER,
                created_at DATETIME NOT NULL)""",
            """CREATE TABLE adapter_documents (
                adapter_id INTEGER NOT NULL REFERENCES adapters (id) ON DELETE CASCADE,
                document_id INTEGER NOT NULL,
                PRIMARY KEY (adapter_id, document_id))""",
            "CREATE INDEX ix_adapter_documents_doc ON adapter_documents (document_id)",
            "CREATE TABLE settings (key VARCHAR(100) PRIMARY KEY, value JSON)",
        ],
    ),
    (
        2,
        "never reuse the id of a forgotten document",
        # Without AUTOINCREMENT SQLite hands the largest freed id out again, and the new
        # document would inherit the old one's adapter_documents rows. Table rebuild as in
        # https://sqlite.org/lang_altertable.html (foreign keys are off while migrating).
        [
            """CREATE TABLE documents_new (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                source VARCHAR(16) NOT NULL,
                title VARCHAR(500) NOT NULL DEFAULT '',
                text TEXT NOT NULL,
                content_hash VARCHAR(64) NOT NULL UNIQUE,
                origin TEXT,
                words INTEGER NOT NULL DEFAULT 0,
                created_at DATETIME NOT NULL,
                deleted BOOLEAN NOT NULL DEFAULT 0)""",
            # Ids of forgotten documents that an adapter was trained on stay used.
            """INSERT INTO sqlite_sequence (name, seq)
               SELECT 'documents_new', MAX(document_id) FROM adapter_documents
               HAVING MAX(document_id) IS NOT NULL""",
            """INSERT INTO documents_new (id, source, title, text, content_hash, origin, words,
                                          created_at, deleted)
               SELECT id, source, title, text, content_hash, origin, words, created_at, deleted
               FROM documents""",
            "DROP TABLE documents",
            "ALTER TABLE documents_new RENAME TO documents",
            "CREATE INDEX ix_documents_created ON documents (created_at)",
        ],
    ),
    (
        3,
        "when each adapter was last made active, so a rollback knows the previous one",
        ["ALTER TABLE adapters ADD COLUMN activated_at DATETIME"],
    ),
    (
        4,
        "which of a run's documents were held out, so forgetting one flags no adapter",
        ["ALTER TABLE adapter_documents ADD COLUMN held_out BOOLEAN NOT NULL DEFAULT 0"],
    ),
    (
        5,
        "adapter folders recorded relative to the profile, so a moved data folder keeps them",
        ["UPDATE adapters SET path = 'adapters/' || version"],
    ),
    (
        6,
        "why each reply ended, so that a stopped one still shows as stopped when reopened",
        ["ALTER TABLE messages ADD COLUMN stop_reason VARCHAR(16)"],
    ),
    (
        7,
        "each conversation's own choice of personal model and retrieval",
        ["ALTER TABLE conversations ADD COLUMN use_adapter BOOLEAN NOT NULL DEFAULT 1",
         "ALTER TABLE conversations ADD COLUMN use_retrieval BOOLEAN NOT NULL DEFAULT 1"],
    ),
    (
        8,
        "the stretches of each message that were pasted, which are not the user's writing",
        ["ALTER TABLE messages ADD COLUMN pasted JSON NOT NULL DEFAULT '[]'"],
    ),
    (
        9,
        "when writing an adapter was trained on was last deleted, which a retrain answers",
        ["ALTER TABLE adapters ADD COLUMN deleted_writing_at DATETIME"],
    ),
]

LATEST = MIGRATIONS[-1][0]


def _applied_versions(connection) -> set[int] | None:
    """The versions recorded as applied; None before the first migration."""
    has_table = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not has_table:
        return None
    return {row[0] for row in connection.execute("SELECT version FROM schema_version")}


def migrate(connection, migrations=MIGRATIONS) -> list[int]:
    """Apply every migration newer than the database, each in its own transaction.

    `connection` is a raw DB-API sqlite3 connection in autocommit mode. Returns the
    versions applied. Foreign keys are off meanwhile, so rebuilding a table does not
    cascade into its children; each migration must leave none dangling.
    """
    connection.execute("PRAGMA foreign_keys = OFF")
    known = _applied_versions(connection)  # read without a write lock: see below
    newest = max(version for version, _, _ in migrations)
    if known and max(known) > newest:  # an older OPPU, after a newer one opened the profile
        raise StoreUnavailable(
            f"it was last opened by a newer version of OPPU (database schema {max(known)}; "
            f"this version knows up to {newest}): update OPPU to open this profile")
    if known is None:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, description TEXT, applied_at DATETIME)"
        )
    applied = []
    for version, description, statements in migrations:
        if version in (known or ()):
            # Up to date: no write lock, which would make every opening of the profile
            # (`oppu list` too) wait behind another process's long write.
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            done = connection.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (version,)
            ).fetchone()
            if done:
                connection.execute("ROLLBACK")
                continue
            for statement in statements:
                connection.execute(statement)
            dangling = connection.execute("PRAGMA foreign_key_check").fetchall()
            if dangling:
                raise RuntimeError(f"migration {version} left dangling references: {dangling}")
            connection.execute(
                "INSERT INTO schema_version VALUES (?, ?, datetime('now'))",
                (version, description),
            )
            connection.execute("COMMIT")
            applied.append(version)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return applied
