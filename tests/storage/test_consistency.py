"""Forgetting, and SQLite and Chroma staying consistent through failures and crashes."""

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from oppu.core.profile import Profile
from oppu.storage.errors import DocumentNotFound
from oppu.storage.index import Embedder, Index
from oppu.storage.models import Adapter, AdapterDocument, Chunk, Document
from oppu.storage.writing import Writing
from tests.storage.conftest import assert_consistent, chunk_ids, snapshot

ALLOTMENT = "The allotment flooded again, so I moved the seedlings into the greenhouse."
DIARY = "Spent the morning fixing the fence. The neighbour's dog watched the whole time."
LETTER = ("Dear Sam, thank you for the books. I read the one about lighthouses twice and "
          "then gave it to my niece, who loved it even more than I did.")


def adapter_trained_on(writing, version: str, document_ids: list[int]) -> int:
    with writing.store.write() as session:
        adapter = Adapter(version=version, path=f"adapters/{version}", base_sha256="0" * 64)
        session.add(adapter)
        session.flush()
        session.add_all(AdapterDocument(adapter_id=adapter.id, document_id=d)
                        for d in document_ids)
        return adapter.id


def trained_on_deleted(writing) -> dict[str, bool]:
    with writing.store.read() as session:
        return dict(session.execute(select(Adapter.version, Adapter.trained_on_deleted)).all())


def test_forgetting_removes_row_chunks_and_vectors_and_flags_adapters(writing):
    diary = writing.add_note(DIARY)
    letter = writing.add_note(LETTER)
    adapter_trained_on(writing, "v1", [diary, letter])
    adapter_trained_on(writing, "v2", [letter])
    diary_chunks = chunk_ids(writing, diary)
    assert diary_chunks <= writing.index.ids()

    writing.forget(diary)

    with writing.store.read() as session:
        assert session.get(Document, diary) is None
        assert not session.scalars(select(Chunk).where(Chunk.document_id == diary)).all()
    assert not diary_chunks & writing.index.ids()
    assert trained_on_deleted(writing) == {"v1": True, "v2": False}
    assert all(p.document_id != diary for p in writing.search("fence and dog", k=5,
                                                              min_score=-1.0))
    assert [d.id for d in writing.documents()] == [letter]
    assert writing.stats().documents == 1
    with pytest.raises(DocumentNotFound):
        writing.get(diary)
    with pytest.raises(DocumentNotFound, match=f"no document with id {diary}"):
        writing.forget(diary)
    assert_consistent(writing)


def test_nothing_of_forgotten_writing_is_left_in_the_profiles_files(profile):
    """Chroma kept each passage's text (in its write log, metadata and full-text tables),
    and a deleted vector stays in its nearest-neighbour files: the text of a forgotten
    note could still be read from chroma.sqlite3."""
    import numpy as np

    writing = profile.writing
    secret = "My sister's test result came back; she asked me to tell nobody at all."
    kept = writing.add_note(LETTER)
    doomed = writing.add_note(secret)
    [text] = [c.text for c in writing.get(doomed).chunks]
    vector = np.asarray(writing.index.embedder.embed([text])[0], dtype=np.float32).tobytes()

    def traces() -> list[str]:
        return [str(path.relative_to(profile.folder)) for path in profile.folder.rglob("*")
                if path.is_file() and (secret.encode() in path.read_bytes()
                                       or vector[:64] in path.read_bytes())]

    assert "chroma/chroma.sqlite3" in traces()
    writing.forget(doomed)
    assert traces() == []
    assert writing.search(LETTER, k=1)[0].document_id == kept  # the rest still searchable
    assert_consistent(writing)


def test_an_index_that_still_holds_passage_text_is_rewritten_without_it(profile, embedder):
    """Indexes written by earlier versions stored the text beside each vector."""
    writing = profile.writing
    kept = writing.add_note(LETTER)
    index = writing.index
    with index._lock:  # as an earlier version wrote it
        index._collection.modify(metadata={"embedder": embedder.id, "texts": "stored"})
        found = index._collection.get(include=["embeddings", "metadatas"])
        index._collection.upsert(ids=found["ids"], embeddings=found["embeddings"],
                                 metadatas=found["metadatas"], documents=[LETTER])
    profile.close()
    database = profile.folder / "chroma" / "chroma.sqlite3"
    assert b"thank you for the books" in database.read_bytes()
    with Profile(profile.name, embedder=embedder) as reopened:
        assert reopened.writing.search(LETTER, k=1)[0].document_id == kept
        assert b"thank you for the books" not in database.read_bytes()


def test_forgotten_text_can_be_added_again_as_a_new_document(writing):
    first = writing.add_note(DIARY)
    writing.forget(first)
    again, new = writing.add_text("note", DIARY)
    assert new and again != first
    assert_consistent(writing)


def test_words_since_adapter_count_only_untrained_documents(writing):
    diary = writing.add_note(DIARY)
    assert writing.stats().words_since_adapter == len(DIARY.split())
    adapter_trained_on(writing, "v1", [diary])
    writing.add_note(LETTER)
    stats = writing.stats()
    assert (stats.words, stats.words_since_adapter) == (
        len(DIARY.split()) + len(LETTER.split()), len(LETTER.split()))


@pytest.mark.parametrize("failure", [OperationalError("COMMIT", {}, Exception("disk I/O error")),
                                     KeyboardInterrupt()], ids=["disk error", "interrupt"])
def test_vectors_are_compensated_when_the_commit_fails(writing, failure):
    writing.add_note(LETTER)
    before = snapshot(writing)

    def fail(_session):
        raise failure

    event.listen(Session, "before_commit", fail)
    try:
        with pytest.raises(type(failure)):
            writing.add_note(DIARY)
    finally:
        event.remove(Session, "before_commit", fail)
    assert snapshot(writing) == before
    assert writing.add_note(DIARY)  # and the text can still be added afterwards
    assert_consistent(writing)


CRASH_AFTER_VECTORS = textwrap.dedent("""
    import os, sys
    from oppu.core.profile import Profile
    from oppu.storage.index import Index

    writing = Profile("tester").writing
    writing.add_note(sys.argv[1])
    write_vectors = Index.add

    def write_vectors_then_die(self, *args, **kwargs):
        write_vectors(self, *args, **kwargs)
        os._exit(17)  # the power goes out between the Chroma write and the SQLite commit

    Index.add = write_vectors_then_die
    writing.add_note(sys.argv[2])
""")


def test_reconcile_removes_vectors_of_a_crashed_uncommitted_write(oppu_home, embedder):
    """At the next open. Search never shows a vector without its row meanwhile."""
    # In a child process: a Chroma folder must have one client per process, and this
    # process opens it only afterwards.
    crashed = subprocess.run([sys.executable, "-c", CRASH_AFTER_VECTORS, LETTER, DIARY],
                             check=False, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == 17, crashed.stderr

    with Profile("tester", embedder=embedder) as profile:
        [letter] = profile.writing.documents()
        report = profile.last_reconcile
        assert (report.added, report.removed, report.purged_documents) == (0, 1, 0)
        assert letter.title == LETTER[:59] + "…"
        assert len(profile.index.ids()) == 1
        assert_consistent(profile.writing)


def test_vectors_of_a_write_in_progress_are_not_taken_for_a_crashed_ones(writing):
    """Another process writing holds the write lock between its vectors and its commit."""
    import sqlite3

    letter = writing.add_note(LETTER)
    writing.index.add(["in-progress"], [DIARY], [letter + 1])  # its rows not committed yet
    other_writer = sqlite3.connect(writing.store.path, timeout=0, isolation_level=None)
    other_writer.execute("BEGIN IMMEDIATE")
    try:
        assert writing.reconcile().removed == 0
        assert "in-progress" in writing.index.ids()
    finally:
        other_writer.execute("ROLLBACK")  # it died instead: the next reconcile clears up
        other_writer.close()
    assert writing.reconcile().removed == 1
    assert_consistent(writing)


def test_reconcile_adds_vectors_missing_after_a_commit(writing):
    letter = writing.add_note(LETTER)
    diary = writing.add_note(DIARY)
    writing.index.delete(chunk_ids(writing, diary))  # lost: the index crashed, not SQLite

    report = writing.reconcile()

    assert (report.added, report.removed, report.purged_documents) == (1, 0, 0)
    assert_consistent(writing)
    assert writing.search("mending a fence", k=1)[0].document_id == diary
    assert writing.reconcile() == type(report)(0, 0, 0)
    assert letter


def test_reconcile_finishes_a_forget_that_crashed_after_the_tombstone(writing):
    letter = writing.add_note(LETTER)
    diary = writing.add_note(DIARY)
    with writing.store.write() as session:  # forget() committed its tombstone, then died
        session.execute(update(Document).where(Document.id == diary).values(deleted=True))
    diary_chunks = chunk_ids(writing, diary)

    report = writing.reconcile()

    assert (report.added, report.removed, report.purged_documents) == (0, 0, 1)
    assert not diary_chunks & writing.index.ids()
    assert [d.id for d in writing.documents()] == [letter]
    assert_consistent(writing)


def test_adding_a_text_whose_forget_did_not_finish_replaces_it(writing):
    diary = writing.add_note(DIARY)
    with writing.store.write() as session:
        session.execute(update(Document).where(Document.id == diary).values(deleted=True))
    again, new = writing.add_text("note", DIARY)
    assert new and again != diary
    assert [d.id for d in writing.documents()] == [again]
    assert_consistent(writing)


def test_the_same_text_added_again_while_its_forget_finishes_keeps_its_vectors(writing,
                                                                               monkeypatch):
    """Chunk ids come from the text: a purge that read them, then deleted their vectors
    while another writer added the text again, took the new copy's vectors too."""
    import threading

    diary = writing.add_note(DIARY)
    with writing.store.write() as session:  # forget() committed its tombstone
        session.execute(update(Document).where(Document.id == diary).values(deleted=True))
    added_again = threading.Thread(target=writing.add_text, args=("note", DIARY))
    real_delete = writing.index.delete

    def delete_while_the_text_comes_back(ids):
        if not added_again.is_alive() and ids:
            added_again.start()
            added_again.join(timeout=2)  # it waits for the purge's write lock, or is done
        return real_delete(ids)

    monkeypatch.setattr(writing.index, "delete", delete_while_the_text_comes_back)
    writing.purge_tombstones()
    added_again.join()
    [again] = writing.documents()
    assert again.id != diary and chunk_ids(writing, again.id) <= writing.index.ids()
    assert_consistent(writing)


def test_a_new_embedding_model_rebuilds_the_index_from_sqlite(profile, embedder):
    writing = profile.writing
    writing.add_note(LETTER)
    writing.add_note(DIARY)
    stored = writing.index.ids()
    renamed = Embedder(embedder.model_dir, model_id="all-MiniLM-L6-v2 (renamed)")

    index = Index(profile.folder / "chroma", renamed)

    assert index.rebuilt and index.count() == 0
    report = Writing(profile.store, index).reconcile()
    assert (report.added, report.removed) == (len(stored), 0)
    assert index.ids() == stored
    assert Index(profile.folder / "chroma", renamed).rebuilt is False


def test_a_damaged_index_is_deleted_and_built_again_from_the_store(oppu_home, embedder):
    """SQLite is the truth: a chroma.sqlite3 that is no database any more (a disk fault)
    made every command fail; now the index is rebuilt from the store."""
    with Profile("tester", embedder=embedder) as profile:
        diary = profile.writing.add_note(DIARY)
        folder = profile.folder
    (folder / "chroma" / "chroma.sqlite3").write_bytes(b"not a database at all " * 500)

    with Profile("tester", embedder=embedder) as profile:
        told = []
        profile.on_reindex = told.append  # the app and the CLI show it: it can take minutes
        assert profile.writing.search("mending a fence", k=1)[0].document_id == diary
        assert profile.index.rebuilt and profile.last_reconcile.added == 1
        assert [(p.phase, p.done, p.total, p.message) for p in told] == [
            ("reindex", 1, 1, "rebuilding the search index")]
        assert_consistent(profile.writing)
    assert list(folder.glob("chroma.damaged-*")) == []  # it may hold forgotten vectors


def test_writing_another_process_stores_is_found_by_an_open_profile(oppu_home, embedder):
    """`oppu note` while the app is open: the app's search saw only what it had at open."""
    with Profile("tester", embedder=embedder) as profile:
        profile.writing.add_note(LETTER)
        assert [p.document_id for p in profile.writing.search(DIARY, k=1)] != []
        added = subprocess.run(
            [sys.executable, "-c", ("import sys; from oppu.core.profile import Profile\n"
             "with Profile('tester') as p: print(p.writing.add_note(sys.argv[1]))"), DIARY],
            check=True, capture_output=True, text=True, timeout=300)
        diary = int(added.stdout)
        profile.writing.add_note("A note of this process, written before any search.")
        assert profile.writing.search(DIARY, k=1)[0].document_id == diary
        # A forget and a note elsewhere leave the number of vectors as it was.
        replaced = subprocess.run(
            [sys.executable, "-c", ("import sys; from oppu.core.profile import Profile\n"
             "with Profile('tester') as p:\n"
             "    p.forget(int(sys.argv[1])); print(p.writing.add_note(sys.argv[2]))"),
             str(diary), ALLOTMENT],
            check=True, capture_output=True, text=True, timeout=300)
        assert profile.writing.search(ALLOTMENT, k=1)[0].document_id == int(replaced.stdout)


def test_a_write_waits_while_another_process_holds_the_index(profile, tmp_path):
    """A compaction elsewhere (it drops and rebuilds the collection) once lost a note this
    process added meanwhile: every process's writes now take the index's file lock."""
    writing = profile.writing
    lock = profile.folder / "chroma.write-lock"
    released = tmp_path / "released"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import pathlib, time
            from filelock import FileLock
            with FileLock({str(lock)!r}):
                print("held", flush=True)
                time.sleep(1.5)
                pathlib.Path({str(released)!r}).touch()
            """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    note = writing.add_note(DIARY)
    assert released.exists()  # the note went in after the other process let go
    assert holder.wait(30) == 0
    assert writing.search(DIARY, k=1)[0].document_id == note


def test_compacting_an_index_larger_than_one_read_keeps_every_live_vector(tmp_path, embedder):
    """Reading every vector in one call fails past about 40k ("too many SQL variables"):
    the compaction reads in pages, so one page's worth and more must come through whole."""
    import numpy as np

    from oppu.storage.index import WRITE_BATCH

    count = WRITE_BATCH + 500
    vectors = np.random.default_rng(0).random((count, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = Index(tmp_path / "chroma", embedder)
    ids = [f"c{i}" for i in range(count)]
    index.add(ids, [""] * count, list(range(count)), vectors=vectors)
    index.delete(["c5"])
    index.compact()
    assert index.ids() == set(ids) - {"c5"}
    assert index.search_vector(vectors[count - 1], k=1)[0].chunk_id == ids[-1]
    index.close()


def test_a_collection_made_with_chromas_default_graph_gets_the_cheap_one_when_compacted(
        tmp_path, embedder):
    """Stores made before the search went exact have Chroma's default graph (M 16); a
    forget's compaction rebuilds them with the cheap one, keeping every vector."""
    import chromadb
    import numpy as np
    from chromadb.config import Settings

    from oppu.storage.index import CHEAP_GRAPH, COLLECTION, TEXTLESS

    vectors = np.random.default_rng(1).random((50, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"),
                                       settings=Settings(anonymized_telemetry=False))
    old = client.create_collection(COLLECTION, metadata={
        "embedder": embedder.id, "hnsw:space": "cosine", TEXTLESS: "none"})
    old.add(ids=[f"c{i}" for i in range(50)], embeddings=vectors,
            metadatas=[{"document_id": i, "written_at": 0} for i in range(50)])
    client.close()

    index = Index(tmp_path / "chroma", embedder)
    assert "hnsw:M" not in index._collection.metadata, "an open keeps the old collection"
    index.delete(["c7"])
    index.compact()
    assert {k: index._collection.metadata[k] for k in CHEAP_GRAPH} == CHEAP_GRAPH
    assert index.ids() == {f"c{i}" for i in range(50)} - {"c7"}
    assert index.search_vector(vectors[3], k=1)[0].chunk_id == "c3"
    index.close()
