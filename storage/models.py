"""SQLAlchemy models of one profile's store. The schema itself is in `migrations.py`."""

from datetime import UTC, datetime
from pathlib import PurePath

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from oppu.storage.file_types import MARKDOWN_SUFFIXES


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Document(Base):
    """A piece of the user's own writing."""

    __tablename__ = "documents"
    __table_args__ = ({"sqlite_autoincrement": True},)  # a forgotten id is never reused
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # chat | note | file | mail
    title: Mapped[str] = mapped_column(String(500), default="")
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    origin: Mapped[str | None] = mapped_column(Text, nullable=True)  # file path, mail id
    words: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # A tombstone: set before the vectors are removed, so a crash mid-delete is finished on open.
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    chunks: Mapped[list["Chunk"]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="Chunk.ordinal"
    )

    @property
    def is_markdown(self) -> bool:
        """Imported from a Markdown file, so shown rendered."""
        return (self.source == "file"
                and PurePath(self.origin or "").suffix.lower() in MARKDOWN_SUFFIXES)


class Chunk(Base):
    """A passage of a document, as indexed in Chroma under the same id."""

    __tablename__ = "chunks"
    # Derived from the content hash, so a vector id can never point at other text.
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    document: Mapped[Document] = relationship(back_populates="chunks")


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    use_adapter: Mapped[bool] = mapped_column(Boolean, default=True)
    use_retrieval: Mapped[bool] = mapped_column(Boolean, default=True)
    messages: Mapped[list["Message"]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", order_by="Message.id"
    )


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | system
    text: Mapped[str] = mapped_column(Text)
    adapter_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    adapter_scale: Mapped[float | None] = mapped_column(Float, nullable=True)
    retrieved_chunk_ids: Mapped[list] = mapped_column(JSON, default=list)
    stop_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)  # a reply's
    pasted: Mapped[list] = mapped_column(JSON, default=list)  # [start, end] of pasted text
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class TrainingRun(Base):
    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    loss_curve: Mapped[list] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    adapter_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    promoted: Mapped[bool] = mapped_column(Boolean, default=False)
    decision: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Adapter(Base):
    __tablename__ = "adapters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    path: Mapped[str] = mapped_column(Text)  # the version's folder, relative to the profile's
    base_name: Mapped[str] = mapped_column(String(200), default="")
    base_sha256: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(16), default="trained")  # trained | imported
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    words_trained: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    trained_on_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # When writing it was trained on was last deleted: only a run started since answers it.
    deleted_writing_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Set on activation, cleared when a rollback leaves it: the activation history.
    activated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class AdapterDocument(Base):
    """The documents an adapter's run used: those it was trained on, so forgetting one can
    flag the adapter, and those it held out for measuring (writing that is not new)."""

    __tablename__ = "adapter_documents"
    adapter_id: Mapped[int] = mapped_column(
        ForeignKey("adapters.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    held_out: Mapped[bool] = mapped_column(Boolean, default=False)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[object] = mapped_column(JSON)
