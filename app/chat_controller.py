"""Wires the Chat page to core's `ChatSession`: streaming off the GUI thread, toggles, history."""

import time

from PySide6.QtCore import QObject, Signal

from oppu.app.chat_page import ChatPage
from oppu.core.chat import ChatOptions, ChatSession, Models
from oppu.core.conversations import delete_conversation, deleted_sources

# A pace measured over fewer words or less time than this says little.
PACE_MIN_WORDS = 5
PACE_MIN_S = 0.5
# Messages shown when a stored conversation opens; "Show earlier messages" shows 4x more.
SHOWN_MESSAGES = 60


class ChatController(QObject):
    changed = Signal()  # the user's messages were added to their writing

    def __init__(self, app, page: ChatPage, models: Models | None = None):
        super().__init__(app)
        self.app = app
        self.page = page
        self.models = models or Models()
        self.session: ChatSession | None = None
        self.job = None
        self.bubble = None
        self.asked_at = 0.0  # when the reply in progress was asked for (time.monotonic)
        # The message being answered, with its pasted stretches, until a reply comes.
        self.unsent: tuple[str, list] | None = None
        self.replaced = None  # the reply a regenerate replaces, hidden meanwhile
        self.model_loaded = False
        self.shown = SHOWN_MESSAGES  # stored messages put on screen, newest first
        self.first_shown = 0  # the index among them of the first one on screen
        page.sendRequested.connect(self.send)
        page.transcript.earlierRequested.connect(self.show_earlier)
        page.stopRequested.connect(self.stop)
        page.newConversationRequested.connect(self.new_conversation)
        page.conversationSelected.connect(self.open_conversation)
        page.renameRequested.connect(self.rename)
        page.deleteRequested.connect(self.delete)
        page.adapterToggled.connect(lambda on: self._choose(use_adapter=on))
        page.retrievalToggled.connect(lambda on: self._choose(use_retrieval=on))
        page.adapterScaleChanged.connect(lambda scale: app.change_setting("adapter_scale", scale))
        page.incognitoToggled.connect(self.set_incognito)
        app.profileOpened.connect(self._profile_opened)

    def _profile_opened(self, profile) -> None:
        self.session = ChatSession(profile, self.models, ChatOptions())
        self._clear_transcript()
        self._show_options()
        self.refresh_list()

    def _clear_transcript(self) -> None:
        self.page.transcript.clear()
        self.replaced = None
        self.page.set_status("")  # the last reply's timing went with it

    def _show_options(self) -> None:
        options = self.session.options
        self.page.show_options(options.use_adapter, self.app.profile.settings.adapter_scale,
                               options.use_retrieval, options.incognito)
        self.app.window.set_adapter_used_in_chat(options.use_adapter)

    def _choose(self, **choice: bool) -> None:
        """The conversation remembers it; a store that refuses it leaves the switch as it was."""
        try:
            self.session.choose(**choice)
        except Exception as error:  # noqa: BLE001 - busy, or deleted from the command line
            self.app.report_error(self.page.banner, error)
        self._show_options()

    def refresh_list(self) -> None:
        try:
            conversations = self.session.conversations.summaries()
        except Exception as error:  # noqa: BLE001
            self.app.report_error(self.page.banner, error)
            return
        self.page.set_conversations(conversations, self.session.conversation_id)

    # -- one message --------------------------------------------------------------------

    def send(self, text: str, pasted: list | None = None) -> None:
        """Answer `text`; its `pasted` (start, end) stretches are not kept as writing."""
        if self.job is not None:
            return
        pasted = pasted or []
        if not self.app.writing_ready(self.page.banner, "send again"):
            self.page.composer.set_message(text, pasted)
            return
        self.page.transcript.add("user", text)
        self.unsent = (text, pasted)
        self._generate(lambda report, stop: self.session.send(text, report, stop, pasted))

    def regenerate(self) -> None:
        """Answer the last message again, replacing the reply shown for it."""
        history = self.session.history if self.session else []
        if self.job is not None or len(history) < 2 or history[-1]["role"] != "assistant":
            return
        self.replaced = self.page.transcript.bubbles[-1]
        self.page.transcript.rows[-1].hide()  # back if the new reply fails
        self.unsent = None
        self._generate(lambda report, stop: self.session.regenerate(report, stop))

    def _generate(self, work) -> None:
        self.bubble = self.page.transcript.add("assistant")
        self.bubble.set_waiting("Thinking…" if self.model_loaded else "Loading the model…")
        self.bubble.regenerateRequested.connect(self.regenerate)
        self.page.set_generating(True)
        self.page.set_status("")
        self.asked_at = time.monotonic()
        self.job = self.app.jobs.start("chat", work, self._replied,
                                       progress=self._token, failed=self._failed)

    def _token(self, piece: str) -> None:
        if self.bubble is None:
            return
        if not self.bubble.text and self.session.conversation_id is not None:
            self.refresh_list()  # a new conversation is stored by now: list it at once
        self.bubble.append(piece)

    def _replied(self, reply) -> None:
        self.model_loaded = True
        self.unsent = None
        bubble, self.job, self.bubble = self.bubble, None, None
        if self.replaced is not None:
            self.page.transcript.remove(self.page.transcript.bubbles.index(self.replaced))
            self.replaced = None
        bubble.finish(reply.text, reply.sources, reply.adapter_version, reply.notices,
                      stopped=reply.stop_reason == "stopped", adapter_scale=reply.adapter_scale)
        bubble.regenerate.show()
        self.page.set_generating(False)
        self.page.set_status(reply_status(reply.text, reply.stats,
                                          time.monotonic() - self.asked_at))
        if reply.conversation_id is not None:
            self.refresh_list()
            self.changed.emit()

    def _failed(self, message: str) -> None:
        job, bubble = self.job, self.bubble
        self.job, self.bubble = None, None
        if self.replaced is not None:  # the reply stored, and in the history, stays
            self.page.transcript.remove()
            self.page.transcript.rows[-1].show()
            self.replaced.regenerate.show()
            self.replaced = None
        elif bubble is not None and not bubble.text.strip():
            self.page.transcript.remove()
            if self.unsent is not None and not self.session.stored_unanswered:
                # nothing came back and nothing was stored: the message goes back to be resent
                self.page.transcript.remove()
                if not self.page.composer.toPlainText().strip():
                    self.page.composer.set_message(*self.unsent)
        elif bubble is not None:
            bubble.finish(bubble.text, stopped=True)
        self.page.set_generating(False)
        fallback = getattr(job.error, "bundled_fallback", None) if job else None
        action = (("Use the bundled model", lambda: self.app.model.use_base("bundled"))
                  if fallback else None)
        self.page.banner.show_message(f"No reply: {message}", "error", action=action)

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()

    # -- conversations ------------------------------------------------------------------

    def new_conversation(self) -> None:
        if self.job is None:
            self.session.reset()
            self._clear_transcript()
            self.page.select_conversation(None)
            self.page.composer.setFocus()

    def set_incognito(self, on: bool) -> None:
        if self.job is not None:
            self._show_options()
            return
        self.session.set_incognito(on)
        self._clear_transcript()
        self.page.select_conversation(None)

    def open_conversation(self, conversation_id: int) -> None:
        """Show a stored conversation: its latest messages, and a button for more (a
        conversation of thousands froze the window for most of a minute)."""
        if self.job is not None:  # a reply is being written: the highlight goes back to it
            self.page.select_conversation(self.session.conversation_id)
            return
        try:
            self.session.resume(conversation_id)
            messages = self.session.conversations.messages(conversation_id)
        except Exception as error:  # noqa: BLE001 - e.g. deleted from the command line
            self.app.report_error(self.page.banner, error)
            self.refresh_list()
            return
        self._show_options()  # resuming a stored conversation ends incognito
        self._clear_transcript()
        self.shown = SHOWN_MESSAGES
        self._show_stored(messages, max(len(messages) - SHOWN_MESSAGES, 0), len(messages))
        transcript = self.page.transcript
        if transcript.bubbles and transcript.bubbles[-1].role == "assistant":
            transcript.bubbles[-1].regenerate.show()

    def show_earlier(self) -> None:
        """Put 4x more of the stored messages above those shown, keeping the reader's place."""
        if self.session.conversation_id is None or self.job is not None:
            return
        try:
            messages = self.session.conversations.messages(self.session.conversation_id)
        except Exception as error:  # noqa: BLE001
            self.app.report_error(self.page.banner, error)
            return
        more = 3 * self.shown
        self.shown *= 4
        added = self._show_stored(messages, max(self.first_shown - more, 0), self.first_shown)
        self.page.transcript.scroll_to(added)

    def _show_stored(self, messages: list, first: int, end: int) -> int:
        """Put stored `messages[first:end]` above those on screen; the number put in. (Not
        counted from the bubbles: a reply that failed midway shows but was not stored.)"""
        earlier = messages[first:end]
        self.first_shown = first
        self.page.transcript.show_earlier_button(first)
        replies = [m for m in earlier if m.role == "assistant"]
        used = iter(self.session.conversations.passages_of(
            [m.retrieved_chunk_ids for m in replies]))
        for at, message in enumerate(earlier):
            bubble = self.page.transcript.add(message.role, message.text, at=at)
            if message.role == "assistant":
                sources = next(used)
                gone = len(message.retrieved_chunk_ids) - len(sources)
                bubble.finish(message.text, sources, message.adapter_version,
                              [deleted_sources(gone)] if gone else [],
                              stopped=message.stop_reason == "stopped",
                              adapter_scale=message.adapter_scale)
                bubble.regenerateRequested.connect(self.regenerate)
        return len(earlier)

    def rename(self, conversation_id: int, title: str) -> None:
        try:
            self.session.conversations.rename(conversation_id, title)
        except Exception as error:  # noqa: BLE001
            self.app.report_error(self.page.banner, error)
        self.refresh_list()

    def delete(self, conversation_id: int) -> None:
        profile = self.app.profile

        def done(forgotten: int) -> None:
            if self.session.conversation_id == conversation_id:
                self.session.reset()
                self._clear_transcript()
            self.refresh_list()
            mine = ("the message you wrote in it was" if forgotten == 1
                    else f"the {forgotten} messages you wrote in it were")
            also = f"; {mine} removed from your writing too" if forgotten else ""
            self.page.banner.show_message(f"Conversation deleted{also}.", "success", 5)
            self.changed.emit()

        self.app.jobs.start("delete-conversation", lambda _r, _s: delete_conversation(
            profile, conversation_id, forget_writing=True), done,
            failed=lambda message: self.page.banner.show_message(message, "error"))

    def shutdown(self) -> None:
        self.stop()
        self.models.close()


def reply_status(text: str, stats, waited_s: float) -> str:
    """How long the user waited for a reply (model loading and retrieval included) and, for
    a reply long enough to tell, its pace in words rather than tokens: "Answered in 3.4 s,
    21 words a second"."""
    ended = {"stopped": "Stopped after", "length": "Cut at the longest reply (Settings) after"}
    took = "under 0.1" if waited_s < 0.1 else f"{waited_s:.1f}"
    status = f"{ended.get(getattr(stats, 'stop_reason', ''), 'Answered in')} {took} s"
    words = len(text.split())
    writing_s = getattr(stats, "seconds", 0.0) - (getattr(stats, "first_token_s", None) or 0.0)
    if words >= PACE_MIN_WORDS and writing_s >= PACE_MIN_S:
        # words after the first one, over the time after it came
        status += f", {(words - 1) / writing_s:.0f} words a second"
    return status
