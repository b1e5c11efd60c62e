"""The user's writing: ingestion, listing, search and forgetting, across SQLite and Chroma.

Every write that touches both keeps them consistent: vectors are written inside the
SQLite transaction and removed again if it fails to commit; a crash in between leaves
orphan vectors or tombstones that `reconcile()` settles on the next open.
"""

from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import String, case, delete, func, select, update
from sqlalchemy.orm import selectinload

from oppu.storage.chunking import content_hash, word_count
from oppu.storage.db import Store
from oppu.storage.drafts import Draft, make_draft, printable
from oppu.storage.errors import DocumentNotFound, IngestError
from oppu.storage.file_types import MAIL_SUFFIXES
from oppu.storage.index import Index
from oppu.storage.models import Adapter, AdapterDocument, Chunk, Document, utcnow
from oppu.storage.readers import (
    DEFAULT_MAX_BYTES,
    FileContents,
    folder_problem,
    path_text,
    read_file,
    walk,
)

# add_paths embeds the passages of several files in one call once this many are waiting:
# small files then cost one model call per group instead of one each.
EMBED_GROUP = 256
EMBED_SLICE = 1024  # passages embedded between two progress reports (about 10 s on 2 cores)


@dataclass
class IngestResult:
    path: str | None
    status: str  # added | duplicate | skipped
    reason: str = ""
    document_ids: list[int] = field(default_factory=list)
    words: int = 0

    def line(self) -> str:
        what = printable(self.path or "text", name=True)
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
    score: float | None  # cosine similarity to the query; None where it was not kept
    source: str = ""  # its document's: chat, note, file or mail


@dataclass(frozen=True)
class WritingStats:
    documents: int
    words: int
    words_since_adapter: int
    adapter_trained: bool  # a trained adapter exists: "since" counts from the newest one


@dataclass(frozen=True)
class ReconcileReport:
    added: int
    removed: int
    purged_documents: int


@dataclass(frozen=True)
class _ReadFile:
    path: Path
    contents: FileContents
    drafts: list[Draft]


class Writing:
    def __init__(self, store: Store, index: Index, max_file_bytes: int = DEFAULT_MAX_BYTES,
                 mail_addresses: frozenset[str] = frozenset()):
        self.store = store
        self.index = index
        self.max_file_bytes = max_file_bytes
        self.mail_addresses = mail_addresses

    # -- adding -------------------------------------------------------------------------

    def add_text(self, source: str, text: str, title: str = "", origin: str | None = None,
                 embedding: Callable[[int, int], None] | None = None) -> tuple[int, bool]:
        """Store one text as a document (untitled: titled by its first line). Returns its id
        and whether it is new. `embedding(done, total)` follows as in `add_paths`."""
        draft = make_draft(source, text, title, origin)
        return self._store([draft], self._embed(self._unstored([draft]), embedding))[0]

    def add_note(self, text: str, title: str = "") -> int:
        return self.add_text("note", text, title)[0]

    def add_chat_message(self, text: str) -> int:
        return self.add_text("chat", text)[0]

    def add_file(self, path: Path) -> IngestResult:
        """Ingest one file. Raises an `IngestError` subclass for input that cannot be used."""
        contents, drafts = self._read(Path(path))
        return self._store_file(Path(path), contents, drafts,
                                self._embed(self._unstored(drafts)))

    def add_paths(self, paths: list[Path], report: Callable[[int, int, IngestResult], None]
                  | None = None, should_stop: Callable[[], bool] = lambda: False,
                  embedding: Callable[[int, int], None] | None = None) -> list[IngestResult]:
        """Ingest files and folders (recursively); one result per file, never raising for one.

        Files are read ahead and their passages embedded together, but each is stored in a
        transaction of its own and reported in order. Files read but not yet stored when
        `should_stop()` turns true are left out of the results. `embedding(done, total)`
        follows the embedding of passages, which takes minutes for a large file.
        """
        files = walk(paths)
        results: list[IngestResult] = []
        waiting: list[_ReadFile | IngestResult] = []  # read, not yet embedded and stored
        waiting_passages = 0

        def store_waiting() -> None:
            read = [w for w in waiting if isinstance(w, _ReadFile)]
            vectors = self._embed(self._unstored([d for r in read for d in r.drafts]),
                                  embedding, should_stop)
            if vectors is None:  # stopped: minutes of embedding a large file may be left
                waiting.clear()
                return
            for item in waiting:
                results.append(item if isinstance(item, IngestResult) else self._store_file(
                    item.path, item.contents, item.drafts, vectors))
                if report:
                    report(len(results), len(files), results[-1])
            waiting.clear()

        for path in files:
            if should_stop():
                return results
            try:
                if problem := folder_problem(path):
                    raise problem
                waiting.append(_ReadFile(path, *self._read(path)))
                waiting_passages += sum(len(d.passages) for d in waiting[-1].drafts)
            except IngestError as error:
                waiting.append(IngestResult(path_text(path), "skipped", error.reason))
            except Exception as error:  # noqa: BLE001 - a parser's own bug on odd input (the
                # email package's on some spam headers) skips that file, not the whole import
                waiting.append(IngestResult(path_text(path), "skipped",
                                            f"could not be read ({type(error).__name__}: {error})"))
            if waiting_passages >= EMBED_GROUP:
                store_waiting()
                waiting_passages = 0
        store_waiting()
        return results

    def _read(self, path: Path) -> tuple[FileContents, list[Draft]]:
        contents = read_file(path, self.max_file_bytes, self.mail_addresses)
        source = "mail" if path.suffix.lower() in MAIL_SUFFIXES else "file"
        return contents, [make_draft(source, t.text, t.title, t.origin) for t in contents.texts]

    def _store_file(self, path: Path, contents: FileContents, drafts: list[Draft],
                    vectors: dict[str, np.ndarray]) -> IngestResult:
        result = IngestResult(path_text(path), "duplicate", "; ".join(contents.warnings))
        earlier: list[int] = []
        for draft, (document_id, new) in zip(drafts, self._store(drafts, vectors)):
            if new:
                result.status = "added"
                result.words += word_count(draft.text)
                earlier += self._earlier_versions(draft, document_id)
            result.document_ids.append(document_id)
        if earlier:  # replacing could lose writing (a daily file rewritten): the user decides
            ids = [str(i) for i in earlier]
            which = (f"document {ids[0]}; forget it" if len(ids) == 1 else
                     f"documents {', '.join(ids[:-1])} and {ids[-1]}; forget them")
            note = f"an earlier version of this file is stored too: {which} to keep only this one"
            result.reason = "; ".join(filter(None, [result.reason, note]))
        if result.status == "duplicate":
            result.reason = "; ".join(filter(None, ["its text is already stored", result.reason]))
        return result

    def _earlier_versions(self, draft: Draft, document_id: int) -> list[int]:
        """Live documents an earlier import of the same file stored with other text."""
        if draft.source != "file":
            return []
        with self.store.read() as session:
            return list(session.scalars(select(Document.id).where(
                Document.origin == draft.origin, Document.source == "file",
                Document.deleted.is_(False), Document.id != document_id)))

    def _unstored(self, drafts: list[Draft]) -> list[Draft]:
        """The drafts whose text is not stored yet, each text once: those that need vectors."""
        with self.store.read() as session:
            stored = set(session.scalars(select(Document.content_hash).where(
                Document.content_hash.in_({d.digest for d in drafts}),
                Document.deleted.is_(False))))
        unique = {d.digest: d for d in reversed(drafts) if d.digest not in stored}
        return [d for d in drafts if unique.get(d.digest) is d]

    def _embed(self, drafts: list[Draft], progress: Callable[[int, int], None] | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> dict[str, np.ndarray] | None:
        """Vectors of each draft's passages, by content hash; `progress(done, total)` after
        each slice of passages, where there are several. None if `should_stop()` turned
        true before the last slice."""
        passages = [p for d in drafts for p in d.passages]
        if not passages:
            return {}
        slices = []
        for first in range(0, len(passages), EMBED_SLICE):
            if should_stop():
                return None
            slices.append(self.index.embedder.embed(passages[first:first + EMBED_SLICE]))
            if progress and len(passages) > EMBED_SLICE:
                progress(first + len(slices[-1]), len(passages))
        vectors = np.concatenate(slices)
        by_digest, start = {}, 0
        for draft in drafts:
            by_digest[draft.digest] = vectors[start:start + len(draft.passages)]
            start += len(draft.passages)
        return by_digest

    def _store(self, drafts: list[Draft], vectors: dict[str, np.ndarray]
               ) -> list[tuple[int, bool]]:
        """Store drafts in one transaction, with their vectors; (id, is new) for each.

        Duplicates are decided under the write lock, so two processes adding the same text
        cannot both store it. The vectors go to Chroma just before the commit; if the commit
        does not happen they are deleted again.
        """
        outcome: list[tuple[int, bool]] = []
        written: list[str] = []
        stale: list[str] = []
        try:
            with self.store.write() as session:
                added: list[tuple[Draft, Document]] = []
                for draft in drafts:
                    existing = session.execute(select(Document.id, Document.deleted).where(
                        Document.content_hash == draft.digest)).one_or_none()
                    if existing is not None and not existing.deleted:
                        outcome.append((existing.id, False))
                        continue
                    if existing is not None:  # forgotten, but not yet purged: finish that now
                        stale += session.scalars(select(Chunk.id).where(
                            Chunk.document_id == existing.id))
                        session.execute(delete(Document).where(Document.id == existing.id))
                    document = Document(source=draft.source, title=draft.title,
                                        text=draft.text, content_hash=draft.digest,
                                        origin=draft.origin, words=word_count(draft.text))
                    document.chunks = [Chunk(id=cid, ordinal=i, text=p) for i, (cid, p)
                                       in enumerate(zip(draft.chunk_ids, draft.passages))]
                    session.add(document)
                    session.flush()
                    added.append((draft, document))
                    outcome.append((document.id, True))
                if added:
                    ids = [cid for draft, _ in added for cid in draft.chunk_ids]
                    written = ids
                    self.index.add(
                        ids, [p for draft, _ in added for p in draft.passages],
                        [doc.id for draft, doc in added for _ in draft.passages],
                        np.concatenate([self._vectors(draft, vectors) for draft, _ in added]))
        except BaseException:
            # Compensate: the SQLite side did not commit. Should Chroma fail here too, the
            # orphans go at the next reconcile; the first error is the one to report.
            with suppress(Exception):
                self.index.delete(written)
            raise
        self.index.delete(set(stale) - set(written))
        return outcome

    def _vectors(self, draft: Draft, vectors: dict[str, np.ndarray]) -> np.ndarray:
        found = vectors.get(draft.digest)
        # Absent only if the text was forgotten by another process since it was checked.
        return found if found is not None else self.index.embedder.embed(draft.passages)

    # -- reading ------------------------------------------------------------------------

    def documents(self, query: str = "", source: str | None = None) -> list[DocumentSummary]:
        """Live documents, newest first; with `query` (the text as typed: % and _ are no
        wildcards), those whose title, text or file name holds it, in any case."""
        statement = select(Document).where(Document.deleted.is_(False))
        if query:
            statement = statement.where(
                _holds(Document.title, query) | _holds(Document.text, query)
                | ((Document.source == "file") & _holds(_file_name(Document.origin), query))
                | ((Document.source == "mail")
                   & _holds(_file_name(_mail_file(Document.origin)), query)))
        if source:
            statement = statement.where(Document.source == source)
        with self.store.read() as session:
            rows = session.scalars(statement.order_by(Document.created_at.desc(),
                                                      Document.id.desc())).all()
            return [DocumentSummary(d.id, d.source, d.title, d.words, d.created_at,
                                    " ".join(d.text.split())[:200]) for d in rows]

    def get(self, document_id: int) -> Document:
        """A document with its chunks loaded (usable after the session closes)."""
        with self.store.read() as session:
            document = session.scalar(select(Document).options(selectinload(Document.chunks))
                                      .where(Document.id == document_id))
            if document is None or document.deleted:
                raise DocumentNotFound(f"no document with id {document_id}")
            return document

    def search(self, query: str, k: int = 4, min_score: float = 0.0,
               before_document: int | None = None) -> list[Passage]:
        """The `k` passages most like `query`; a passage that several documents share (a
        question asked twice, a paragraph in two files) comes once, with its best score."""
        hits = self.index.search(query, 2 * k, min_score, before_document)
        if not hits:
            return []
        with self.store.read() as session:  # only stored passages: an orphan never shows
            stored = {chunk_id: (title, text, source) for chunk_id, title, text, source
                      in session.execute(select(Chunk.id, Document.title, Chunk.text,
                                                Document.source).join(Document).where(
                          Chunk.id.in_({h.chunk_id for h in hits}), Document.deleted.is_(False)))}
        unique = {}
        for h in hits:  # best first
            if h.chunk_id in stored:
                unique.setdefault(content_hash(stored[h.chunk_id][1]), h)
        return [Passage(h.chunk_id, h.document_id, title, text, h.score, source)
                for h in list(unique.values())[:k]
                for title, text, source in [stored[h.chunk_id]]]

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
        return WritingStats(count, words, since, latest is not None)

    # -- forgetting ---------------------------------------------------------------------

    def forget(self, *document_ids: int) -> None:
        """Delete documents, their chunks and their vectors, leaving nothing of them in the
        index's files (`Index.compact`, once for all of them); flag adapters trained on
        them. Nothing is deleted if one of them is not stored."""
        with self.store.write() as session:
            mark_forgotten(session, document_ids)
        for document_id in document_ids:
            self._purge(document_id)
        if document_ids:
            self._leave_no_trace()

    def purge_tombstones(self) -> int:
        """Finish deleting the documents marked deleted (`mark_forgotten`); how many."""
        with self.store.read() as session:
            tombstones = list(session.scalars(select(Document.id).where(Document.deleted)))
        for document_id in tombstones:
            self._purge(document_id)
        if tombstones:
            self._leave_no_trace()
        return len(tombstones)

    def _leave_no_trace(self) -> None:
        """After deleting: nothing of the deleted writing stays in either database's files."""
        self.index.compact()
        self.store.checkpoint()

    def _purge(self, document_id: int) -> None:
        """Finish deleting a tombstoned document: vectors first, then the rows, under one
        write lock. Chunk ids come from the text, so the same text added again meanwhile
        (by another process) would otherwise lose its new vectors to this delete."""
        with self.store.write() as session:
            ids = list(session.scalars(select(Chunk.id).join(Document).where(
                Document.id == document_id, Document.deleted.is_(True))))
            self.index.delete(ids)
            session.execute(delete(Document).where(Document.id == document_id,
                                                   Document.deleted.is_(True)))

    # -- consistency --------------------------------------------------------------------

    def reconcile(self, report: Callable[[int, int], None] | None = None) -> ReconcileReport:
        """Make Chroma match SQLite after a crash, or after the index was lost or rebuilt;
        `report(done, total)` follows the passages embedded again, if any are."""
        tombstones = self.purge_tombstones()  # a forget that was cut short
        with self.store.writers_held_off() as no_write_in_progress:
            with self.store.read() as session:
                expected = dict(session.execute(select(Chunk.id, Chunk.document_id)).all())
            present = self.index.ids()
            # A write has its vectors in Chroma before its rows commit, under the write
            # lock: with the lock held here, vectors without rows are a crashed write's.
            # (While another process writes, they wait for a later open.)
            orphans = present - expected.keys() if no_write_in_progress else set()
            self.index.delete(orphans)
        missing = sorted(expected.keys() - present)
        for start in range(0, len(missing), EMBED_GROUP):
            batch = missing[start:start + EMBED_GROUP]
            with self.store.read() as session:
                texts = dict(session.execute(select(Chunk.id, Chunk.text)
                                             .where(Chunk.id.in_(batch))).all())
            self.index.add(batch, [texts[i] for i in batch], [expected[i] for i in batch])
            if report is not None:
                report(start + len(batch), len(missing))
        return ReconcileReport(len(missing), len(orphans), tombstones)


def mark_forgotten(session, document_ids: Sequence[int]) -> None:
    """Tombstone documents in `session`'s transaction, and flag adapters trained on them;
    `Writing.forget`, or the next `reconcile` after a kill, removes the rest."""
    for document_id in document_ids:
        document = session.get(Document, document_id)
        if document is None:
            raise DocumentNotFound(f"no document with id {document_id}")
        document.deleted = True
    trained_on_them = select(AdapterDocument.adapter_id).where(
        AdapterDocument.document_id.in_(document_ids), AdapterDocument.held_out.is_(False))
    session.execute(update(Adapter).where(Adapter.id.in_(trained_on_them))
                    .values(trained_on_deleted=True, deleted_writing_at=utcnow()))


def _holds(column, text: str):
    """SQL: `column` holds `text`, in any (ASCII) case. Not LIKE, which has wildcards to
    escape and refuses a pattern over 50,000 bytes ("pattern too complex")."""
    return func.instr(func.lower(column), func.lower(text)) > 0


def _file_name(origin):
    """SQL for the last component of a stored path, "/" or "\\" separated (a store can hold
    paths written on Windows): rtrim strips the characters that are not separators."""
    not_separators = func.replace(func.replace(origin, "/", ""), "\\", "")
    return func.substr(origin, func.length(func.rtrim(origin, not_separators)) + 1,
                       type_=String)


def _mail_file(origin):
    """SQL for the file part of a message's origin, "PATH#<message-id>" or "PATH#N" (the
    message's place in its mailbox, where it has no id)."""
    at_id = func.instr(origin, "#<")
    return case((at_id > 0, func.substr(origin, 1, at_id - 1)),
                else_=func.rtrim(func.rtrim(origin, "0123456789"), "#"))
