"""Chat through the window: streamed tokens, sources, toggles, conversations."""

import re

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtTest import QTest

from oppu.app.chat_controller import reply_status
from oppu.engine.chat import ReplyStats
from tests.app.conftest import wait_jobs

NOTE = ("Every August I sail a small wooden dinghy around the lighthouse at Skerry Point, "
        "and I always pack plum cake for the crossing.")


def send(qtbot, app, text: str) -> list[str]:
    """Type `text`, press Ctrl+Enter, wait for the reply; the pieces that streamed in."""
    page = app.chat_page
    pieces: list[str] = []
    page.composer.setPlainText(text)
    page.composer.setFocus()
    QTest.keyClick(page.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert page.generating and page.stop.isVisibleTo(page)
    app.chat.job.signals.progress.connect(pieces.append)
    qtbot.waitUntil(lambda: not page.generating, timeout=120_000)
    return pieces


def test_a_message_streams_its_reply_and_shows_the_sources(qtbot, app):
    app.profile.writing.add_note(NOTE, "Sailing")
    app.window.show_page("chat")
    assert not app.chat_page.send.isEnabled(), "an empty message cannot be sent"
    pieces = send(qtbot, app, "Where do I sail every August, and what do I pack?")

    page = app.chat_page
    user, reply = page.transcript.bubbles
    assert user.role == "user" and "August" in user.text
    assert len(pieces) > 1, "tokens arrive one by one while the reply is written"
    assert reply.text == "".join(pieces).strip()
    assert reply.sources is not None
    assert reply.sources.toggle.text() == "Sources from your writing (1)"
    assert reply.sources.entries[0].isHidden()
    reply.sources.toggle.click()
    assert not reply.sources.entries[0].isHidden()
    assert "Skerry Point" in reply.sources.entries[0].text()
    assert reply.header.text() == "Base model · without your personal model"
    assert not page.use_adapter.isEnabled(), "no personal model yet: nothing to turn on"
    assert not page.use_adapter.isChecked() and not page.strength.isEnabled()
    assert reply.regenerate.isVisibleTo(page)
    # The tiny test model may run to the longest reply the tests allow.
    assert re.fullmatch(r"(Answered in|Cut at the longest reply \(Settings\) after) "
                        r"(under 0\.1|\d+\.\d) s(, \d+ words a second)?", page.status.text())

    (conversation,) = app.chat_page.model.items
    assert conversation.messages == 2
    chats = [d for d in app.profile.writing.documents() if d.source == "chat"]
    assert [d.title for d in chats] == ["Where do I sail every August, and what do I pack?"]
    app.chat.new_conversation()
    assert page.status.text() == ""  # the reply's timing does not carry over to a new chat


def paste(editor, text: str) -> None:
    mime = QMimeData()
    mime.setText(text)
    editor.insertFromMimeData(mime)


def test_text_pasted_into_a_message_is_not_kept_as_writing(qtbot, app):
    email = "Hi, can you send me the minutes of Monday's meeting before lunch? Thanks, Bob"
    composer = app.chat_page.composer
    composer.setFocus()
    QTest.keyClicks(composer, "Answer for me:")
    QTest.keyClick(composer, Qt.Key.Key_Return)
    paste(composer, email)
    QTest.keyClick(composer, Qt.Key.Key_Return)
    QTest.keyClicks(composer, "say yes")
    composer.moveCursor(QTextCursor.MoveOperation.Start)
    QTest.keyClicks(composer, "  Please. ")  # typing before it moves the pasted stretch along
    text, pasted = composer.message()
    assert text == f"Please. Answer for me:\n{email}\nsay yes"
    assert [text[a:b] for a, b in pasted] == [email]
    QTest.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not app.chat_page.generating, timeout=120_000)
    assert app.chat_page.transcript.bubbles[0].text == text
    [own] = app.profile.writing.documents(source="chat")
    assert app.profile.writing.get(own.id).text == "Please. Answer for me:\n\nsay yes"
    paste(composer, email)
    composer.clear()
    QTest.keyClicks(composer, email)  # typed this time (the stretch went with the clearing)
    assert composer.message() == (email, [])


def test_pasted_stretches_are_found_after_emoji_and_forgotten_once_gone(app):
    """Qt counts an emoji as two positions, Python as one character: the span was off by
    one per emoji, and pasted text leaked into the writing."""
    composer = app.chat_page.composer
    composer.insertPlainText("\U0001f600\U0001f600 my answer: ")  # typed (keyClicks: ASCII)
    paste(composer, "SECRET EMAIL")
    QTest.keyClicks(composer, " thanks")
    text, pasted = composer.message()
    assert [text[a:b] for a, b in pasted] == ["SECRET EMAIL"]
    for undo in (lambda: composer.undo(), lambda: [QTest.keyClick(composer, Qt.Key.Key_Backspace)
                                                   for _ in "PASTED"]):
        composer.clear()
        QTest.keyClicks(composer, "hi ")
        paste(composer, "PASTED")
        undo()  # the paste undone, or deleted by hand: then the user types there
        QTest.keyClicks(composer, "mine")
        assert composer.message() == ("hi mine", [])


def test_a_message_sent_back_keeps_its_pasted_stretches(qtbot, app, tmp_path):
    app.profile.set("base_model", str(tmp_path / "gone.gguf"))
    composer = app.chat_page.composer
    composer.insertPlainText("\U0001f600 Sum up: ")
    paste(composer, "A long article by somebody else.")
    QTest.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    wait_jobs(qtbot, app)
    assert composer.message() == ("\U0001f600 Sum up: A long article by somebody else.",
                                  [(10, 42)])


def test_turning_off_my_writing_sends_no_sources(qtbot, app):
    app.profile.writing.add_note(NOTE, "Sailing")
    app.chat_page.use_writing.setChecked(False)
    send(qtbot, app, "Where do I sail every August?")
    assert app.chat_page.transcript.bubbles[-1].sources is None
    assert app.chat.session.last_reply.sources == ()


def test_each_conversation_keeps_its_own_my_writing_switch(qtbot, app):
    app.profile.writing.add_note(NOTE, "Sailing")
    page = app.chat_page
    page.use_writing.setChecked(False)
    send(qtbot, app, "Where do I sail every August?")
    qtbot.mouseClick(page.new_chat, Qt.MouseButton.LeftButton)
    assert not page.use_writing.isChecked()  # a new conversation starts as the last was
    page.use_writing.setChecked(True)
    send(qtbot, app, "What do I pack for the crossing?")
    without, with_writing = sorted(c.id for c in page.model.items)

    app.chat.open_conversation(without)
    assert not page.use_writing.isChecked()
    send(qtbot, app, "And in September?")
    assert app.chat.session.last_reply.sources == ()
    app.chat.open_conversation(with_writing)
    assert page.use_writing.isChecked()


def test_escape_stops_a_reply(qtbot, app):
    app.profile.set("max_reply_tokens", 4000)
    page = app.chat_page
    page.composer.setPlainText("Tell me a very long story.")
    QTest.keyClick(page.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert page.generating
    QTest.keyClick(page.composer, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not page.generating, timeout=120_000)
    assert app.chat.session.last_reply.stop_reason == "stopped"
    assert "stopped" in page.transcript.bubbles[-1].header.text()
    app.chat.open_conversation(app.chat.session.conversation_id)  # reopened: still stopped
    assert "stopped" in page.transcript.bubbles[-1].header.text()


def test_a_reply_stopped_before_its_first_word_says_so(qtbot):
    from oppu.app.chat_view import Bubble

    bubble = Bubble("assistant")
    qtbot.addWidget(bubble)
    assert bubble.header.text() == "OPPU"  # not "Your model" before it is known which answers
    bubble.finish("", stopped=True)
    assert "Stopped before it began to reply." in bubble.body.text()
    assert bubble.copy.isHidden()  # nothing to copy
    bubble.finish("Partly", stopped=True)
    assert "Stopped before" not in bubble.body.text()


def test_incognito_stores_nothing(qtbot, app):
    app.chat_page.incognito.setChecked(True)
    send(qtbot, app, "A secret question about my plans.")
    reply = app.chat.session.last_reply
    assert reply.conversation_id is None and reply.stop_reason in ("end", "length")
    assert [b.role for b in app.chat_page.transcript.bubbles] == ["user", "assistant"]
    assert app.chat.session.conversations.summaries() == []
    assert app.profile.writing.documents() == []
    assert app.chat_page.model.rowCount() == 0


def test_conversations_can_be_reopened_renamed_and_deleted(qtbot, app):
    app.profile.writing.add_note(NOTE, "Sailing")
    send(qtbot, app, "First question about sailing in August.")
    page = app.chat_page
    (conversation,) = page.model.items
    qtbot.mouseClick(page.new_chat, Qt.MouseButton.LeftButton)
    assert page.transcript.bubbles == []

    app.chat.open_conversation(conversation.id)
    assert [b.role for b in page.transcript.bubbles] == ["user", "assistant"]
    reopened = page.transcript.bubbles[-1].sources  # the passages it used, still shown
    assert reopened is not None and "Skerry Point" in reopened.entries[0].text()
    assert "similarity" not in reopened.entries[0].text()  # not kept: not made up
    page.renameRequested.emit(conversation.id, "Garden")
    assert [c.title for c in page.model.items] == ["Garden"]

    page.deleteRequested.emit(conversation.id)
    wait_jobs(qtbot, app)
    assert page.model.rowCount() == 0 and page.transcript.bubbles == []
    assert [d.title for d in app.profile.writing.documents()] == ["Sailing"]  # its message left


def test_regenerate_replaces_the_last_reply(qtbot, app):
    send(qtbot, app, "Say something about rivers.")
    page = app.chat_page
    first = page.transcript.bubbles[-1]
    qtbot.mouseClick(first.regenerate, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.generating, timeout=120_000)
    assert len(page.transcript.bubbles) == 2
    assert page.transcript.bubbles[-1] is not first
    assert [m["role"] for m in app.chat.session.history] == ["user", "assistant"]


def test_a_regenerate_that_fails_leaves_the_reply_it_was_to_replace(qtbot, app, tmp_path):
    send(qtbot, app, "Say something about rivers.")
    page = app.chat_page
    first = page.transcript.bubbles[-1]
    app.profile.set("base_model", str(tmp_path / "gone.gguf"))
    qtbot.mouseClick(first.regenerate, Qt.MouseButton.LeftButton)
    assert first.isHidden() or not first.isVisibleTo(page)  # while the new one is written
    qtbot.waitUntil(lambda: not page.generating, timeout=120_000)
    assert "gone.gguf" in page.banner.label.text()
    assert page.transcript.bubbles[-1] is first and len(page.transcript.bubbles) == 2
    assert first.isVisibleTo(page) and not first.regenerate.isHidden()
    stored = app.chat.session.conversations.messages(app.chat.session.conversation_id)
    assert stored[-1].text == first.text  # as the store and the history still have it


def test_a_missing_base_model_is_a_message_with_a_way_out(qtbot, app, tmp_path):
    app.profile.set("base_model", str(tmp_path / "gone.gguf"))
    app.window.show_page("chat")
    send(qtbot, app, "Hello?")
    banner = app.chat_page.banner
    assert banner.kind == "error" and "gone.gguf" in banner.label.text()
    assert banner.action.isVisible() and banner.action.text() == "Use the bundled model"
    assert app.chat_page.send.isEnabled()
    assert app.chat_page.transcript.bubbles == []  # nothing was sent: nothing shown as sent
    assert app.chat_page.composer.toPlainText() == "Hello?"  # ready to send again


def test_html_in_a_message_or_reply_is_shown_as_text(qtbot, app):
    from oppu.app.chat_view import Bubble

    typed = "Is <b>this</b> bold? <img src='file:///etc/hostname'> # not a heading"
    mine = Bubble("user", typed)
    assert mine.body.textFormat() == Qt.TextFormat.PlainText and mine.body.text() == typed
    reply = Bubble("assistant")
    reply.finish("**Yes**, and <img src='file:///etc/hostname'> stays <b>text</b>.")
    shown = reply.body.text()
    assert "<b>Yes</b>" not in shown and "font-weight" in shown  # Markdown is rendered
    assert "&lt;img src=" in shown and "&lt;b&gt;text&lt;/b&gt;" in shown  # HTML is not
    reply.finish("A picture: ![x](/etc/hostname)")
    assert "<img" not in reply.body.text() and "[image]" in reply.body.text()  # nothing loads


def test_a_long_unbroken_word_wraps_inside_its_bubble(qtbot, app):
    """A key or a link longer than the window: wrapped, never widening the transcript (Qt
    breaks at a hyphen or a slash, but not inside a run of letters)."""
    app.window.resize(900, 700)
    app.window.show_page("chat")
    url = "https://example.org/?key=" + "Zm9vYmFy" * 60
    send(qtbot, app, f"Please read {url} for me")
    transcript = app.chat_page.transcript
    qtbot.waitUntil(lambda: transcript.widget().width() <= transcript.viewport().width())
    user = transcript.bubbles[0]
    assert user.width() <= transcript.viewport().width()
    assert user.text == f"Please read {url} for me"  # what Copy takes: no added characters
    assert url in user.body.text().replace("\u200b", "")


def test_line_breaks_go_between_characters_never_inside_a_tag_or_an_entity():
    from oppu.app.chat_view import breakable

    quoted = "<p>&quot;" + "a" * 28 + "&quot;</p>"  # 30 characters: nothing to break
    assert breakable(quoted) == quoted
    long = breakable('<a href="' + "h" * 80 + '">' + "&amp;" * 70 + "</a>")
    assert '<a href="' + "h" * 80 + '">' in long  # the tag as it was
    assert long.count("\u200b") == 2 and "&amp;\u200b&amp;" in long
    assert long.replace("\u200b", "").count("&amp;") == 70


def test_the_arrow_keys_open_the_conversation_they_move_to(qtbot, app):
    """The highlight moved but the transcript stayed: Rename and Delete then acted on a
    conversation other than the one on screen."""
    send(qtbot, app, "The first conversation.")
    qtbot.mouseClick(app.chat_page.new_chat, Qt.MouseButton.LeftButton)
    send(qtbot, app, "The second conversation.")
    page = app.chat_page
    second, first = page.model.items  # newest first
    assert app.chat.session.conversation_id == second.id
    page.conversations.setFocus()
    QTest.keyClick(page.conversations, Qt.Key.Key_Down)
    assert app.chat.session.conversation_id == first.id
    assert page.transcript.bubbles[0].text == "The first conversation."
    assert page._selected().id == first.id
    QTest.keyClick(page.conversations, Qt.Key.Key_Up)
    assert page.transcript.bubbles[0].text == "The second conversation."


def test_a_reply_header_names_the_version_and_a_strength_other_than_full(qtbot):
    from oppu.app.chat_view import Transcript

    transcript = Transcript()
    qtbot.addWidget(transcript)
    for scale, header in ((None, "Your model · with v2"), (1.0, "Your model · with v2"),
                          (0.5, "Your model · with v2 at strength 0.50")):
        bubble = transcript.add("assistant")
        bubble.finish("Hello.", adapter_version="v2", adapter_scale=scale)
        assert bubble.header.text() == header


def test_headings_in_a_reply_are_sized_for_a_bubble(qtbot):
    from oppu.app.markdown import markdown_html

    html = markdown_html("# What I pack\n\n## For the boat\n\n- the good waterproofs")
    assert "xx-large" not in html and "x-large" not in html
    assert "font-size:large" in html and "font-size:medium" in html


def test_code_in_a_reply_stands_on_a_tinted_ground(qtbot):
    from oppu.app.markdown import CODE_GROUND, markdown_html

    html = markdown_html("Call `pack()` first:\n\n```\npack(bag)\n```\n\nThen go.")
    assert html.count(CODE_GROUND) == 3  # the inline span, the block and its span
    prose = html[html.rindex("<p", 0, html.index("Then go.")):html.index("Then go.")]
    assert CODE_GROUND not in prose


def test_the_status_line_tells_the_wait_and_the_pace_of_a_reply_in_words():
    stats = ReplyStats(prompt_tokens=12, tokens=60, first_token_s=0.5, seconds=2.5,
                       stop_reason="end")
    forty_words = " ".join(["word"] * 40)
    assert (reply_status(forty_words, stats, waited_s=4.25)
            == "Answered in 4.2 s, 20 words a second"), "the wait counts loading the model too"
    cut = ReplyStats(prompt_tokens=12, tokens=60, first_token_s=0.5, seconds=2.5,
                     stop_reason="length")
    assert reply_status(forty_words, cut, 4.25) == ("Cut at the longest reply (Settings) after "
                                                    "4.2 s, 20 words a second")
    quick = ReplyStats(prompt_tokens=12, tokens=3, first_token_s=0.01, seconds=0.02)
    assert reply_status("Yes, of course.", quick, 0.05) == "Answered in under 0.1 s"
    stopped = ReplyStats(prompt_tokens=12, stop_reason="stopped", seconds=0.4)
    assert reply_status("", stopped, 0.6) == "Stopped after 0.6 s"
    assert reply_status("", None, 0.0) == "Answered in under 0.1 s"


def test_an_empty_conversation_list_says_what_will_be_in_it(qtbot):
    from PySide6.QtGui import QColor, QStandardItem, QStandardItemModel

    from oppu.app.widgets import HINT_COLOR, ListWithPlaceholder

    def hint_pixels(view) -> int:
        image = view.viewport().grab().toImage()
        hint = QColor(HINT_COLOR).rgb()
        return sum(image.pixel(x, y) == hint
                   for x in range(image.width()) for y in range(0, image.height(), 2))

    view = ListWithPlaceholder("No chats yet.")
    qtbot.addWidget(view)
    model = QStandardItemModel()
    view.setModel(model)
    view.resize(220, 200)
    assert hint_pixels(view) > 0  # the placeholder is drawn
    model.appendRow(QStandardItem("Figs"))
    assert hint_pixels(view) == 0  # and goes once there is a row


def test_delete_and_f2_act_on_the_highlighted_conversation(qtbot, app, monkeypatch):
    from oppu.core.conversations import Conversations

    conversations = Conversations(app.profile.store)
    first, second = conversations.create("First"), conversations.create("Second")
    app.chat.refresh_list()
    page = app.chat_page
    page.conversations.setFocus()
    QTest.keyClick(page.conversations, Qt.Key.Key_End)  # moving to a row opens it
    opened = app.chat.session.conversation_id
    other = {first: "Second", second: "First"}[opened]
    monkeypatch.setattr("oppu.app.chat_page.QInputDialog.getText",
                        lambda *_args, **_kwargs: ("Renamed by F2", True))
    QTest.keyClick(page.conversations, Qt.Key.Key_F2)
    assert "Renamed by F2" in [c.title for c in conversations.summaries()]
    page.composer.setFocus()  # the keys belong to the list: in the message field they edit
    QTest.keyClick(page.composer, Qt.Key.Key_Delete)
    wait_jobs(qtbot, app)
    assert len(conversations.summaries()) == 2
    page.conversations.setFocus()
    QTest.keyClick(page.conversations, Qt.Key.Key_Delete)  # the dialog answers yes in tests
    wait_jobs(qtbot, app)
    assert [c.title for c in conversations.summaries()] == [other]
    assert page.rename.toolTip() == "Rename (F2)"


def test_a_long_conversation_opens_with_its_latest_messages_and_more_on_demand(qtbot, app):
    from oppu.core.conversations import Conversations

    app.profile.writing.add_note(NOTE, "Sailing")
    [chunk] = app.profile.writing.search("dinghy", 1)
    conversations = Conversations(app.profile.store)
    chat = conversations.create("Long")
    for i in range(100):
        conversations.add_message(chat, "user", f"Question {i}")
        conversations.add_message(chat, "assistant", f"Answer {i}", chunk_ids=[chunk.chunk_id])
    app.chat.open_conversation(chat)
    transcript = app.chat_page.transcript
    assert [b.text for b in transcript.bubbles[:2]] == ["Question 70", "Answer 70"]
    assert len(transcript.bubbles) == 60 and transcript.bubbles[-1].text == "Answer 99"
    assert transcript.bubbles[-1].sources.toggle.text() == "Sources from your writing (1)"
    assert transcript.earlier.isVisibleTo(transcript)
    assert transcript.earlier.text() == "Show earlier messages (140 more)"
    shown = list(transcript.bubbles)
    transcript.earlier.click()
    assert len(transcript.bubbles) == 200 and transcript.bubbles[0].text == "Question 0"
    assert transcript.bubbles[140:] == shown  # put above them: those shown are not rebuilt
    assert [b.text for b in transcript.bubbles[138:141]] == ["Question 69", "Answer 69",
                                                            "Question 70"]
    assert transcript.bubbles[139].sources.toggle.text() == "Sources from your writing (1)"
    assert not transcript.bubbles[-1].regenerate.isHidden()  # only the last reply's
    assert transcript.bubbles[139].regenerate.isHidden()
    assert not transcript.earlier.isVisibleTo(transcript)
    # The reader stays where they were, at "Question 70", not at the end.
    scroll = transcript.verticalScrollBar()
    qtbot.waitUntil(lambda: scroll.value() > 0 and scroll.value() == transcript.rows[140].y())
    assert transcript.bubbles[140].text == "Question 70" and scroll.value() < scroll.maximum()
    # Another conversation opens at its end, whatever this one's reader did.
    other = conversations.create("Other")
    for i in range(40):
        conversations.add_message(other, "user", f"Other question {i}")
    app.chat.open_conversation(other)
    qtbot.waitUntil(lambda: scroll.maximum() > 0 and scroll.value() == scroll.maximum())


def test_show_earlier_skips_no_stored_message_after_a_reply_failed_midway(qtbot, app,
                                                                          monkeypatch):
    """The failed reply's partial bubble stays on screen but was never stored: counting
    bubbles, 'Show earlier' left one stored message out."""
    from oppu.core.conversations import Conversations
    from oppu.engine.chat import ReplyStream

    conversations = Conversations(app.profile.store)
    chat = conversations.create("Long")
    for i in range(50):
        conversations.add_message(chat, "user", f"Question {i}")
        conversations.add_message(chat, "assistant", f"Answer {i}")
    app.chat.open_conversation(chat)

    def partly_then_fail(self):
        yield "Partly written"
        raise RuntimeError("the model stopped answering")

    monkeypatch.setattr(ReplyStream, "__iter__", partly_then_fail)
    send(qtbot, app, "One more question.")
    transcript = app.chat_page.transcript
    assert transcript.bubbles[-1].text == "Partly written"
    transcript.earlier.click()
    texts = [b.text for b in transcript.bubbles]
    assert texts[:4] == ["Question 0", "Answer 0", "Question 1", "Answer 1"]
    assert texts[:100] == [t for i in range(50) for t in (f"Question {i}", f"Answer {i}")]
