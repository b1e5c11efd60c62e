"""Chatting with one's personal model: OPPU's two memories working together.

Each message gets the active adapter (parametric memory, read from the store on every
message, so an activation or rollback applies to the next reply; served as the version's
merged copy at full strength, which reads prompts faster, else attached to the base) and
the top passages of the user's own writing (non-parametric memory), laid out exactly as
the trainer lays out its items. Replies stream through a callback. Conversations are
stored with the adapter version, scale and passages of each reply, and what the user
typed in their messages becomes their writing (text they pasted is usually somebody
else's: an email to answer, an article); an incognito session stores nothing at all.
"""

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from oppu.core.conversations import CHOICES, Conversations, checked_choices, typed_part
from oppu.core.progress import ShouldStop, never
from oppu.engine.errors import ModelFileError  # also sets OpenMP's policy early: see oppu.engine
from oppu.storage.encoding import is_blank
from oppu.storage.writing import Passage

OnText = Callable[[str], None]


@dataclass
class ChatOptions:
    use_adapter: bool = True
    adapter_scale: float | None = None  # None: the profile's `adapter_scale` setting
    use_retrieval: bool = True
    incognito: bool = False
    sampling: object | None = None  # an engine Sampling; None: from the profile's settings


@dataclass(frozen=True)
class Reply:
    text: str
    sources: tuple[Passage, ...]  # the passages in the prompt, best first, with titles
    adapter_version: str | None  # None: the bare base model answered
    adapter_scale: float | None
    conversation_id: int | None  # None when incognito
    message_id: int | None
    stop_reason: str  # end | length | stopped
    notices: tuple[str, ...]  # things the user should know (a refused adapter, a cut message)
    prompt_messages: tuple[dict, ...]
    stats: object = field(repr=False, default=None)  # the engine's ReplyStats


_sha_cache: dict[tuple, str] = {}
NO_REPLY = {"role": "assistant", "content": ""}  # a turn for a reply that never came
# A chat message this like the question is the question asked again, in other words (0.93
# for "What do I usually pack for sailing?" after "… for sailing weekends?").
NEAR_REPEAT = 0.9


def base_sha256(path: Path) -> str:
    """The GGUF's sha256, computed once per file version (adapters record their base's)."""
    from oppu.engine.llm import file_key
    from oppu.trainer.prepare import sha256_file

    key = file_key(path)
    if key not in _sha_cache:
        _sha_cache[key] = sha256_file(Path(path))
    return _sha_cache[key]


def base_model_path(setting: str) -> Path:
    """The GGUF the `base_model` setting names, or ModelFileError offering the bundled one."""
    from oppu.trainer.base_models import resolve_base
    from oppu.trainer.prepare import BaseModelError

    try:
        return resolve_base(setting)
    except BaseModelError as error:
        raise ModelFileError(setting, str(error), _bundled_instead_of(setting)) from None


def _bundled_instead_of(path) -> Path | None:
    from oppu.trainer.base_models import bundled_gguf
    from oppu.trainer.prepare import BaseModelError

    try:
        bundled = bundled_gguf()
    except BaseModelError:
        return None
    return None if Path(str(path)) == bundled else bundled


class Models:
    """The loaded model, shared by chat sessions; reloaded when the model file or the window
    changes (a file written anew under the same name, such as a new version's merged copy
    after a deletion, is another model)."""

    def __init__(self, n_threads: int | None = None):
        self.n_threads = n_threads
        self._engine = None
        self._key = None
        self._lock = threading.Lock()
        self._refused: set[tuple] = set()  # file keys llama.cpp would not load

    def engine(self, path: Path, n_ctx: int):
        from oppu.engine.llm import Engine

        with self._lock:
            key = (_key_of(path), n_ctx)
            if self._key != key:
                self._close()
                try:
                    self._engine = Engine(path, n_ctx=n_ctx, n_threads=self.n_threads)
                except ModelFileError as error:
                    self._refused.add(key[0])
                    error.bundled_fallback = _bundled_instead_of(path)
                    raise
                self._key = key
            return self._engine

    def refused(self, path: Path) -> bool:
        """Whether the file now at `path` already failed to load."""
        return _key_of(path) in self._refused

    @property
    def current(self):
        """The loaded engine, or None before the first message."""
        return self._engine

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._key = None, None


def _key_of(path: Path) -> tuple:
    from oppu.engine.llm import file_key

    try:
        return file_key(path)
    except OSError:
        return (str(path),)  # gone or unreadable: loading it says why


class ChatSession:
    """One conversation with the profile's personal model."""

    def __init__(self, profile, models: Models | None = None, options: ChatOptions | None = None,
                 conversation_id: int | None = None):
        self.profile = profile
        self.models = models or Models()
        self.options = options or ChatOptions()
        self.conversations = Conversations(profile.store)
        self.conversation_id = None
        self.history: list[dict] = []
        self.last_reply: Reply | None = None
        self.stored_unanswered = False  # the last message is stored; its reply never came
        self.turns_left_out = 0  # earlier messages the last prompt had no room for
        # `choose` (the app's GUI thread) against the first message storing the conversation
        self._choosing = threading.Lock()
        if conversation_id is not None:
            self.resume(conversation_id)

    # -- conversation -------------------------------------------------------------------

    def resume(self, conversation_id: int) -> None:
        messages = self.conversations.messages(conversation_id)
        choices = self.conversations.choices(conversation_id)
        self.conversation_id = conversation_id
        self.history = taking_turns(messages)
        self.turns_left_out = 0
        self.options.incognito = False
        for name, value in choices.items():
            setattr(self.options, name, value)

    def reset(self) -> None:
        """Start a new conversation (stored from its first message unless incognito)."""
        self.conversation_id = None
        self.history = []
        self.last_reply = None
        self.turns_left_out = 0

    def choose(self, **choices: bool) -> None:
        """Turn the personal model (`use_adapter`) or retrieval (`use_retrieval`) on or off
        in this conversation; a stored one remembers it, and a new one starts with it."""
        choices = checked_choices(choices)
        with self._choosing:
            if self.conversation_id is not None and choices:
                self.conversations.set_choices(self.conversation_id, **choices)
            for name, value in choices.items():
                setattr(self.options, name, value)

    def set_incognito(self, on: bool) -> None:
        """Switching either way starts a new conversation: none is half stored."""
        if on != self.options.incognito:
            self.options.incognito = on
            self.reset()

    # -- one message --------------------------------------------------------------------

    def send(self, text: str, on_text: OnText | None = None, should_stop: ShouldStop = never,
             pasted: Sequence[tuple[int, int]] = ()) -> Reply:
        """Answer `text`. `pasted` holds the (start, end) stretches of it that were pasted:
        they are not stored as the user's writing (the whole message is, in the chat)."""
        if not text or not text.strip():
            raise ValueError("nothing to send: the message is empty")
        return self._answer(text, on_text, should_stop, again=False, pasted=pasted)

    def regenerate(self, on_text: OnText | None = None,
                   should_stop: ShouldStop = never) -> Reply:
        """Answer the last message again. The new reply replaces the old one, in the
        history and in the store; the user's message is not stored a second time."""
        if len(self.history) < 2 or self.history[-1]["role"] != "assistant":
            raise ValueError("there is no reply to write again yet")
        kept, self.history = self.history, self.history[:-2]
        try:
            return self._answer(kept[-2]["content"], on_text, should_stop, again=True)
        except BaseException:
            self.history = kept
            raise

    def _answer(self, text: str, on_text: OnText | None, should_stop: ShouldStop,
                again: bool, pasted: Sequence[tuple[int, int]] = ()) -> Reply:
        self.stored_unanswered = False
        try:
            return self._reply(text, on_text, should_stop, again, pasted)
        except BaseException:
            if self.stored_unanswered:  # stored, its reply never came: as reopening reads it
                self.history += [{"role": "user", "content": text}, dict(NO_REPLY)]
            raise

    def _reply(self, text: str, on_text: OnText | None, should_stop: ShouldStop,
               again: bool, pasted: Sequence[tuple[int, int]] = ()) -> Reply:
        from oppu.engine.budget import fit_prompt, reply_room
        from oppu.engine.chat import ReplyStream

        settings = self.profile.settings
        base_path = base_model_path(settings.base_model)
        notices: list[str] = []
        adapter, scale = self._wanted_adapter(base_path, notices)
        engine = self._engine(base_path, adapter, scale, settings.context_tokens, notices)
        with engine.lock:
            version, scale = self._attach_adapter(engine, base_path, adapter, scale, notices)
            passages = self._retrieve(text, settings)
            sampling = self._sampling(settings)
            fitted = fit_prompt(engine, [p.text for p in passages], self.history, text,
                                reply_room(engine.n_ctx, sampling.max_tokens))
            notices += fitted.notices
            if fitted.turns_dropped and not self.turns_left_out:  # said once, when it starts
                notices.append(f"The first {fitted.turns_dropped} messages of this "
                               "conversation no longer fit the model's window: from now on "
                               "replies see only the latest ones.")
            self.turns_left_out = fitted.turns_dropped
            sources = tuple(passages[: fitted.passages_used])
            stored = not self.options.incognito and (self.conversation_id is not None
                                                     or not again)
            if stored and not again:
                self._store_user_message(text, pasted)
                self.stored_unanswered = True
                typed = typed_part(text, pasted)
                if not is_blank(typed):  # before the reply, which a kill may cut short;
                    # after the message, through which deleting the conversation finds it
                    self.profile.writing.add_chat_message(typed)
            stream = ReplyStream(engine, fitted.tokens, sampling, should_stop)
            pieces, streaming = [], iter(stream)
            try:
                for piece in streaming:
                    pieces.append(piece)
                    if on_text:
                        on_text(piece)
            finally:
                streaming.close()  # ends its hold on the engine even if `on_text` failed
        reply_text = "".join(pieces).strip()
        message_id = None
        if stored:
            message_id = self.conversations.add_message(
                self.conversation_id, "assistant", reply_text, version, scale,
                [p.chunk_id for p in sources], replaces_last_reply=again,
                stop_reason=stream.stats.stop_reason)
        self.stored_unanswered = False
        self.history += [{"role": "user", "content": text},
                         {"role": "assistant", "content": reply_text}]
        self.last_reply = Reply(reply_text, sources, version, scale, self.conversation_id,
                                message_id, stream.stats.stop_reason, tuple(notices),
                                tuple(fitted.messages), stream.stats)
        return self.last_reply

    def _store_user_message(self, text: str, pasted: Sequence[tuple[int, int]]) -> None:
        with self._choosing:  # a switch flipped meanwhile is stored with it, not lost
            if self.conversation_id is None:
                self.conversation_id = self.conversations.create(
                    text, **{name: getattr(self.options, name) for name in CHOICES})
        self.conversations.add_message(self.conversation_id, "user", text, pasted=pasted)

    def _wanted_adapter(self, base_path: Path, notices: list[str]) -> tuple:
        """The active adapter and its strength, or None when it is off or was made for
        another base (which is refused with a notice)."""
        from oppu.core.adapters import active

        scale = self.options.adapter_scale
        scale = self.profile.settings.adapter_scale if scale is None else scale
        adapter = active(self.profile) if self.options.use_adapter and scale != 0 else None
        if adapter is not None and adapter.base_sha256 != base_sha256(base_path):
            notices.append(f"Adapter {adapter.version} was trained on another base model "
                           f"({adapter.base_name or 'unknown'}); replying without it.")
            adapter = None
        return adapter, scale

    def _engine(self, base_path: Path, adapter, scale: float, n_ctx: int, notices: list[str]):
        """The adapter's merged copy at full strength, where the version has one: it reads
        prompts faster than the base with the adapter attached. Else the base."""
        merged = adapter.merged_path if adapter is not None and scale == 1.0 else None
        if merged is not None and not self.models.refused(merged):
            try:
                return self.models.engine(merged, n_ctx)
            except ModelFileError as error:
                notices.append(_merged_copy_refused(adapter.version, merged, error))
        return self.models.engine(base_path, n_ctx)

    def _attach_adapter(self, engine, base_path: Path, adapter, scale: float,
                        notices: list[str]) -> tuple[str | None, float | None]:
        """Attach `adapter` to the base's engine (a merged copy has it built in)."""
        if adapter is None or engine.model_path != base_path:
            engine.set_adapter(None)
            return (adapter.version, scale) if adapter else (None, None)
        for first_try in (True, False):
            try:
                engine.set_adapter(adapter.gguf_path, scale)
                return adapter.version, scale
            except ModelFileError as error:
                if first_try and _rebuilt(adapter, base_path):
                    notices.append(f"Adapter {adapter.version}'s file was damaged ({error}); "
                                   "it was written again from the trained weights.")
                    continue
                notices.append(f"Adapter {adapter.version} cannot be used ({error}); "
                               "replying without it.")
                engine.set_adapter(None)
                return None, None

    def _retrieve(self, text: str, settings) -> list[Passage]:
        """The top k passages of the user's writing for `text`, leaving out chat messages
        that it or this conversation's earlier questions hold whole (they are already in
        the prompt), and earlier questions that all but repeat it: a question asked twice
        would otherwise be its own best source, telling the model nothing."""
        k = settings.retrieval_k
        if not self.options.use_retrieval or k <= 0:
            return []
        asked = [_normalized(text)] + [_normalized(m["content"]) for m in self.history
                                       if m["role"] == "user"]
        fetch = k + 1
        while True:
            found = self.profile.writing.search(text, fetch, settings.retrieval_min_score)
            kept = [p for p in found
                    if not (p.source == "chat" and (p.score or 0) >= NEAR_REPEAT)
                    and not any(f" {_normalized(p.text)} " in f" {question} " for question in asked)]
            if len(kept) >= k or len(found) < fetch:
                return kept[:k]
            fetch += len(found) - len(kept)

    def _sampling(self, settings):
        from oppu.engine.chat import Sampling

        if self.options.sampling is not None:
            return self.options.sampling
        return Sampling(temperature=settings.temperature, top_p=settings.top_p,
                        max_tokens=settings.max_reply_tokens)


def taking_turns(messages) -> list[dict]:
    """Stored messages as the model reads them: user and assistant taking turns (as some
    chat templates insist), a message whose reply never came (it failed, or a kill cut it
    off) answered by an empty one."""
    turns: list[dict] = []
    for message in messages:
        if message.role not in ("user", "assistant"):
            continue
        if message.role == "user" and turns and turns[-1]["role"] == "user":
            turns.append(dict(NO_REPLY))
        turns.append({"role": message.role, "content": message.text})
    return turns + [dict(NO_REPLY)] if turns and turns[-1]["role"] == "user" else turns


def _rebuilt(adapter, base_path: Path) -> bool:
    """Write a damaged or missing adapter.gguf again from the version's trained weights
    (this is the base they were trained on); False where that is not possible."""
    from oppu.core.adapters import adapter_gguf_damage, rewrite_adapter_gguf
    from oppu.trainer.peft_files import AdapterFileError

    if adapter_gguf_damage(adapter) is None:
        return False  # whole, and refused for another reason
    try:
        rewrite_adapter_gguf(adapter, base_path)
    except (AdapterFileError, OSError):
        return False
    return True


def _merged_copy_refused(version: str, merged: Path, error: ModelFileError) -> str:
    """Remove a damaged merged copy (the adapter file serves instead); keep a whole one that
    failed to load for another reason, such as memory."""
    from oppu.trainer.gguf_file import GGUFFormatError, read_header

    try:
        read_header(merged)
    except (GGUFFormatError, OSError) as damage:
        try:
            merged.unlink(missing_ok=True)
        except OSError:
            pass  # in use elsewhere (Windows): a later message finds it damaged again
        return (f"The merged copy of adapter {version} is damaged ({damage}) and was removed; "
                "the adapter is attached to the base instead.")
    return (f"The merged copy of adapter {version} cannot be loaded ({error}); the adapter is "
            "attached to the base instead.")


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()
