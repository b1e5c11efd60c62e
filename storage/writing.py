"""The user's writing: ingestion, listing, search and forgetting, across SQLite and Chroma.

Every write that touches both keeps them consistent: vectors are written inside the
SQLite transaction and removed again if it fails to commit; a crash in between leaves
orphan vectors or tombstones that `reconcile()` settles on the next open.
"""

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from sqlalchemy import func, select, update

from oppu.storage.chunking import chunk_id, content_hash, split_passages, word_count
from oppu.storage.errors import DocumentNotFound, EmptyInput, IngestError
from oppu.storage.index import Index
from oppu.storage.models import AdapterDocument, Adapter, Chunk, Document
from oppu.storage.db import Store
from oppu.storage.readers import DEFAULT_MAX_BYTES, read_file, walk

SOURCES = ("note", "chat", "file", "mail")


@dataclass
class IngestResult:
    path: str | None
    status: str  # added | duplicate | skipped
    reason: str = ""
    document_ids: list[int] = field(default_factory=list)
    words: int = 0

    def line(self) -> str:
        what = self.path or "text"
        detail = f" ({self.reason})" if self.reason else ""
        return f"{self.status:<9} {what}{detail}"


@dataclass(frozen=True)
class DocumentSummary:
    id: int
    source: str
    title: str
    words: int
    created_at: datetime
    preview: str


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    document_id: int
    title: str
    text: str
    score: float


@dataclass(frozen=True)
class WritingStats:
    documents: int
    words: int
    words_since_adapter: int


@dataclass(frozen=True)
class ReconcileReport:
    added: int
    removed: int
    purged_documents: int


class Writing:
    def __init__(self, store: Store, index: Index, max_file_bytes: int = DEFAULT_MAX_BYTES,
                 mail_addresses: frozenset[str] = frozenset()):
        self.store = store
        self.index = index
        self.max_file_bytes = max_file_bytes
        self.mail_addresses = mail_addresses

    # -- adding -------------------------------------------------------------------------

    def add_text(self, source: str, text: str, title: str = "", origin: str | None = None
                 ) -> tuple[int, bool]:
        """Store one text as a document. Returns its id and whether it is new."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        if not text or not text.strip():
            raise EmptyInput(origin, "nothing to store: the text is empty")
        digest = content_hash(text)
        with self.store.read() as session:
            existing = session.scalar(select(Document).where(Document.content_hash == digest))
        if existing is not None and existing.deleted:
            self._purge(existing.id)
        elif existing is not None:
            return existing.id, False
        passages = split_passages(text)
        ids = [chunk_id(digest, i) for i in range(len(passages))]
        vectors = self.index.embedder.embed(passages)  # the slow part, outside the lock
        wrote_vectors = False
        try:
            with self.store.write() as session:
                document = Document(source=source, title=title[:500], text=text,
                                    content_hash=digest, origin=origin, words=word_count(text))
                document.chunks = [Chunk(id=cid, ordinal=i, text=p)
                                   for i, (cid, p) in enumerate(zip(ids, passages))]
                session.add(document)
                session.flush()
                wrote_vectors = True
                self.index.add(ids, passages, [document.id] * len(ids), vectors)
            return document.id, True
        except BaseException:
            if wrote_vectors:
                self.index.delete(ids)  # compensate: the SQLite side did not commit
            raise

    def add_note(self, text: str, title: str = "") -> int:
        return self.add_text("note", text, title or _title_from(text))[0]

    def add_chat_message(self, text: str) -> int:
        return self.add_text("chat", text, _title_from(text))[0]

    def add_file(self, path: Path) -> IngestResult:
        """Ingest one file. Raises an `IngestError` subclass for input that cannot be used."""
        contents = read_file(Path(path), self.max_file_bytes, self.mail_addresses)
        source = "mail" if Path(path).suffix.lower() in {".eml", ".mbox"} else "file"
        result = IngestResult(str(path), "duplicate", "; ".join(contents.warnings))
        for item in contents.texts:
            document_id, new = self.add_text(source, item.text, item.title, item.origin)
            if new:
                result.status = "added"
                result.words += word_count(item.text)
            result.document_ids.append(document_id)
        return result

    def add_paths(self, paths: list[Path], report: Callable[[int, int, IngestResult], None]
                  | None = None, should_stop: Callable[[], bool] = lambda: False
                  ) -> list[IngestResult]:
        """Ingest files and folders (recursively); one result per file, never raising for one."""
        files = walk(paths)
        results = []
        for done, path in enumerate(files, 1):
            if should_stop():
                break
            try:
                result = self.add_file(path)
            except IngestError as error:
                result = IngestResult(str(path), "skipped", error.reason)
            except OSError as error:
                result = IngestResult(str(path), "skipped", f"cannot read: {error}")
            results.append(result)
            if report:
                report(done, len(files), result)
        return results

    # -- reading ------------------------------------------------------------------------

    def documents(self, query: str = "", source: str | None = None) -> list[DocumentSummary]:
        statement = select(Document).where(Document.deleted.is_(False))
        if query:
            pattern = f"%{query}%"
            statement = statement.where(Document.title.ilike(pattern) | Document.text.ilike(pattern))
        if source:
            statement = statement.where(Document.source == source)
        with self.store.read() as session:
            rows = session.scalars(statement.order_by(Document.created_at.desc(),
                                                      Document.id.desc())).all()
            return [DocumentSummary(d.id, d.source, d.title, d.words, d.created_at,
                                    " ".join(d.text.split())[:200]) for d in rows]

    def get(self, document_id: int) -> Document:
        with self.store.read() as session:
            document = session.get(Document, document_id)
            if document is None or document.deleted:
                raise DocumentNotFound(f"no document with id {document_id}")
            return document

    def search(self, query: str, k: int = 4, min_score: float = 0.0,
               before_document: int | None = None) -> list[Passage]:
        hits = self.index.search(query, k, min_score, before_document)
        if not hits:
            return []
        with self.store.read() as session:
            titles = dict(session.execute(
                select(Document.id, Document.title).where(
                    Document.id.in_({h.document_id for h in hits}), Document.deleted.is_(False))
            ).all())
        return [Passage(h.chunk_id, h.document_id, titles[h.document_id], h.text, h.score)
                for h in hits if h.document_id in titles]

    def stats(self) -> WritingStats:
        live = Document.deleted.is_(False)
        with self.store.read() as session:
            count, words = session.execute(
                select(func.count(Document.id), func.coalesce(func.sum(Document.words), 0))
                .where(live)).one()
            latest = session.scalar(select(Adapter.id).where(Adapter.origin == "trained")
                                    .order_by(Adapter.id.desc()).limit(1))
            trained_on = select(AdapterDocument.document_id).where(
                AdapterDocument.adapter_id == latest)
            since = session.scalar(select(func.coalesce(func.sum(Document.words), 0))
                                   .where(live, Document.id.not_in(trained_on)))
        return WritingStats(count, words, since)

    # -- forgetting ---------------------------------------------------------------------

    def forget(self, document_id: int) -> None:
        """Delete a document, its chunks and its vectors; flag adapters trained on it."""
        with self.store.write() as session:
            document = session.get(Document, document_id)
            if document is None:
                raise DocumentNotFound(f"no document with id {document_id}")
            document.deleted = True
            trained_on_it = select(AdapterDocument.adapter_id).where(
                AdapterDocument.document_id == document_id)
            session.execute(update(Adapter).where(Adapter.id.in_(trained_on_it))
                            .values(trained_on_deleted=True))
        self._purge(document_id)

    def _purge(self, document_id: int) -> None:
        """Finish deleting a tombstoned document: vectors first, then the rows."""
        with self.store.read() as session:
            ids = list(session.scalars(select(Chunk.id).where(Chunk.document_id == document_id)))
        self.index.delete(ids)
        with self.store.write() as session:
            document = session.get(Document, document_id)
            if document is not None:
                session.delete(document)

    # -- consistency --------------------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """Make Chroma match SQLite after a crash, or after the index was lost or rebuilt."""
        with self.store.read() as session:
            tombstones = list(session.scalars(select(Document.id).where(Document.deleted)))
        for document_id in tombstones:
            self._purge(document_id)
        with self.store.read() as session:
            expected = dict(session.execute(select(Chunk.id, Chunk.document_id)).all())
        present = self.index.ids()
        orphans = present - expected.keys()
        missing = sorted(expected.keys() - present)
        self.index.delete(list(orphans))
        for start in range(0, len(missing), 256):
            batch = missing[start:start + 256]
            with self.store.read() as session:
                texts = dict(session.execute(select(Chunk.id, Chunk.text)
                                             .where(Chunk.id.in_(batch))).all())
            self.index.add(batch, [texts[i] for i in batch], [expected[i] for i in batch])
        return ReconcileReport(len(missing), len(orphans), len(tombstones))


def _title_from(text: str, limit: int = 60) -> str:
    first = " ".join(text.strip().split("\n", 1)[0].split())
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"
