"""Fixtures for the store: a profile's Writing on a real SQLite file and Chroma folder."""

from pathlib import Path

import pytest
from sqlalchemy import func, select

from oppu.storage.models import Chunk, Document

ME = "me@example.com"


@pytest.fixture
def writing(profile):
    return profile.writing


@pytest.fixture
def mail_writing(profile):
    profile.set("mail_addresses", ME)
    return profile.writing


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def snapshot(writing) -> tuple[list[tuple], int, set[str]]:
    """Everything stored: document rows, chunk count, vector ids; to show nothing changed."""
    with writing.store.read() as session:
        documents = session.execute(
            select(Document.id, Document.content_hash, Document.deleted).order_by(Document.id)
        ).all()
        chunks = session.scalar(select(func.count(Chunk.id)))
    return [tuple(row) for row in documents], chunks, writing.index.ids()


def assert_refused(writing, path: Path, error_type, reason: str):
    """`path` is refused with `error_type`, one line naming it and `reason`, nothing changed."""
    before = snapshot(writing)
    with pytest.raises(error_type) as raised:
        writing.add_file(path)
    assert reason in raised.value.reason and "\n" not in raised.value.reason
    assert str(raised.value) == f"{path}: {raised.value.reason}"

    [result] = writing.add_paths([path])
    assert (result.status, result.reason) == ("skipped", raised.value.reason)
    assert result.line().count("\n") == 0 and str(path) in result.line()
    assert snapshot(writing) == before


def chunk_ids(writing, document_id: int) -> set[str]:
    with writing.store.read() as session:
        return set(session.scalars(select(Chunk.id).where(Chunk.document_id == document_id)))


def assert_consistent(writing) -> None:
    """SQLite and Chroma hold exactly the same passages."""
    with writing.store.read() as session:
        expected = set(session.scalars(select(Chunk.id)))
    assert writing.index.ids() == expected
