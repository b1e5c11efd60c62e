"""Stored conversations: list, read, rename, delete; and the messages a chat appends."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from oppu.storage.chunking import content_hash
from oppu.storage.drafts import title_from
from oppu.storage.models import Chunk, Conversation, Document, Message, utcnow
from oppu.storage.writing import Passage, mark_forgotten

TITLE_CHARS = 200  # what the title column holds
SQL_VARIABLES = 900  # ids bound in one query (old SQLite builds allow 999)
# What each conversation remembers of how it is answered: `ChatOptions` fields and
# `Conversation` columns of the same names.
CHOICES = ("use_adapter", "use_retrieval")


class ConversationNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str
    created_at: datetime
    updated_at: datetime
    messages: int


@dataclass(frozen=True)
class StoredMessage:
    id: int
    role: str
    text: str
    adapter_version: str | None
    adapter_scale: float | None
    retrieved_chunk_ids: tuple[str, ...]
    created_at: datetime
    stop_reason: str | None = None  # a reply's: end | length | stopped


class Conversations:
    def __init__(self, store):
        self.store = store

    def create(self, title: str, **choices: bool) -> int:
        with self.store.write() as session:
            conversation = Conversation(title=title_from(title) or "New chat",
                                        **checked_choices(choices))
            session.add(conversation)
            session.flush()
            return conversation.id

    def choices(self, conversation_id: int) -> dict[str, bool]:
        with self.store.read() as session:
            conversation = self._get(session, conversation_id)
            return {name: getattr(conversation, name) for name in CHOICES}

    def set_choices(self, conversation_id: int, **choices: bool) -> None:
        with self.store.write() as session:
            conversation = self._get(session, conversation_id)
            for name, value in checked_choices(choices).items():
                setattr(conversation, name, value)

    def summaries(self) -> list[ConversationSummary]:
        """Every conversation, the most recently active first."""
        counts = (select(Message.conversation_id, func.count(Message.id).label("n"))
                  .group_by(Message.conversation_id).subquery())
        statement = (select(Conversation, func.coalesce(counts.c.n, 0))
                     .outerjoin(counts, counts.c.conversation_id == Conversation.id)
                     .order_by(Conversation.updated_at.desc(), Conversation.id.desc()))
        with self.store.read() as session:
            return [ConversationSummary(c.id, c.title, c.created_at, c.updated_at, n)
                    for c, n in session.execute(statement).all()]

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        with self.store.read() as session:
            self._get(session, conversation_id)
            rows = session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                   .order_by(Message.id))
            return [StoredMessage(m.id, m.role, m.text, m.adapter_version, m.adapter_scale,
                                  tuple(m.retrieved_chunk_ids or ()), m.created_at,
                                  m.stop_reason) for m in rows]

    def passages(self, chunk_ids: Sequence[str]) -> list[Passage]:
        """The passages a stored reply used, those still stored, in its order. Their
        similarity was not kept, so `score` is None."""
        return self.passages_of([chunk_ids])[0]

    def passages_of(self, replies: Sequence[Sequence[str]]) -> list[list[Passage]]:
        """`passages` for the chunk ids of many replies, read at once."""
        wanted = list({c for chunk_ids in replies for c in chunk_ids})
        found = {}
        with self.store.read() as session:
            for start in range(0, len(wanted), SQL_VARIABLES):
                rows = session.execute(
                    select(Chunk.id, Chunk.document_id, Document.title, Chunk.text)
                    .join(Document).where(Chunk.id.in_(wanted[start:start + SQL_VARIABLES]),
                                          Document.deleted.is_(False))).all()
                found |= {row[0]: Passage(*row, None) for row in rows}
        return [[found[c] for c in chunk_ids if c in found] for chunk_ids in replies]

    def add_message(self, conversation_id: int, role: str, text: str,
                    adapter_version: str | None = None, adapter_scale: float | None = None,
                    chunk_ids: Sequence[str] = (), replaces_last_reply: bool = False,
                    stop_reason: str | None = None,
                    pasted: Sequence[tuple[int, int]] = ()) -> int:
        """Store a message; with `replaces_last_reply` the conversation's latest message, if
        it is a reply, is deleted in the same transaction (a regenerated answer).
        `pasted`: the (start, end) stretches of `text` that the user pasted."""
        with self.store.write() as session:
            conversation = self._get(session, conversation_id)
            if replaces_last_reply:
                last = session.scalar(select(Message).where(
                    Message.conversation_id == conversation_id).order_by(Message.id.desc())
                    .limit(1))
                if last is not None and last.role == "assistant":
                    session.delete(last)
            message = Message(conversation_id=conversation_id, role=role, text=text,
                              adapter_version=adapter_version, adapter_scale=adapter_scale,
                              retrieved_chunk_ids=list(chunk_ids), stop_reason=stop_reason,
                              pasted=[list(span) for span in pasted])
            session.add(message)
            conversation.updated_at = utcnow()
            session.flush()
            return message.id

    def rename(self, conversation_id: int, title: str) -> None:
        if not title.strip():
            raise ValueError("a conversation title cannot be empty")
        with self.store.write() as session:
            # A title given is kept whole, its lines joined (up to what the column holds);
            # only one made from the first message is cut to its first line.
            joined = " ".join(title.split())
            self._get(session, conversation_id).title = title_from(joined, TITLE_CHARS)

    def delete(self, conversation_id: int, forget_writing: bool = False) -> list[int]:
        """Delete a conversation and its messages. Returns the ids of the documents that
        its user messages became; a message another conversation also holds ("thanks!") is
        one document, which stays. With `forget_writing` they are tombstoned in the same
        transaction, so a kill cannot leave them behind a deleted conversation: the
        caller's `Profile.finish_forgetting`, or the next opening of the writing, removes
        them."""
        with self.store.write() as session:
            conversation = self._get(session, conversation_id)
            hashes = {content_hash(typed_part(m.text, m.pasted))
                      for m in conversation.messages if m.role == "user"}
            elsewhere = session.execute(select(Message.text, Message.pasted).where(
                Message.role == "user", Message.conversation_id != conversation_id))
            hashes -= {content_hash(typed_part(text, pasted)) for text, pasted in elsewhere}
            documents = list(session.scalars(select(Document.id).where(
                Document.source == "chat", Document.content_hash.in_(hashes),
                Document.deleted.is_(False))))
            if forget_writing:
                mark_forgotten(session, documents)
            session.delete(conversation)
        return documents

    @staticmethod
    def _get(session, conversation_id: int) -> Conversation:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            raise ConversationNotFound(f"no conversation with id {conversation_id}")
        return conversation


def deleted_sources(gone: int) -> str:
    """What to say of a reply `gone` of whose passages have since been deleted."""
    return (f"{gone} passage{'s' * (gone != 1)} it used {'has' if gone == 1 else 'have'} since "
            "been deleted")


def typed_part(text: str, pasted: Sequence[Sequence[int]]) -> str:
    """What the user typed of a message: `text` without its pasted (start, end) stretches.
    That part alone is their writing; pasted text is usually somebody else's."""
    typed, at = "", 0
    for start, end in [*sorted(pasted), (len(text), len(text))]:
        piece = text[at:max(at, start)]
        if typed and piece and not typed[-1].isspace() and not piece[0].isspace():
            typed += "\n"  # "Translate:" [paste] "please" are two lines, not one word
        typed += piece
        at = max(at, end)
    return typed.strip()


def checked_choices(choices: dict) -> dict[str, bool]:
    unknown = set(choices) - set(CHOICES)
    if unknown:
        raise ValueError(f"a conversation has no choice {', '.join(sorted(unknown))}")
    return {name: bool(value) for name, value in choices.items()}


def delete_conversation(profile, conversation_id: int, forget_writing: bool = False) -> int:
    """Delete a conversation; with `forget_writing`, also the writing its user messages
    became (their chunks and vectors). Returns how many documents were forgotten."""
    documents = Conversations(profile.store).delete(conversation_id, forget_writing)
    if forget_writing:
        profile.finish_forgetting()
    # Its text leaves SQLite's write-ahead log too, not only when writing was forgotten (a
    # pasted statement, say, that became no writing).
    profile.store.checkpoint()
    return len(documents) if forget_writing else 0
