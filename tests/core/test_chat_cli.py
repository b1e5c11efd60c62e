"""`oppu chat`, `oppu ask` and `oppu conversations` on the tiny model."""

import io
import os

import pytest
from sqlalchemy import func, select

from oppu.core.cli import main
from oppu.core.conversations import Conversations
from oppu.storage.models import Conversation, Message


@pytest.fixture
def cli_profile(profile, tiny_gguf):
    profile.set("base_model", str(tiny_gguf))
    profile.set("context_tokens", 512)
    profile.set("max_reply_tokens", 12)
    profile.writing.add_note("My cat Miso sleeps on the radiator all winter.", "Miso")
    return profile


def oppu(*args) -> int:
    return main(["--profile", "tester", *args])


def stored(profile) -> tuple[int, int]:
    with profile.store.read() as s:
        return (s.scalar(select(func.count(Conversation.id))),
                s.scalar(select(func.count(Message.id))))


def test_ask_streams_an_answer_and_lists_its_sources(cli_profile, capsys):
    assert oppu("ask", "--no-adapter", "--sources", "Where does my cat sleep?") == 0
    out = capsys.readouterr().out
    assert "] Miso (document 1)" in out and "radiator" in out
    assert stored(cli_profile) == (1, 2)


def test_ask_incognito_stores_nothing(cli_profile, capsys):
    assert oppu("ask", "--incognito", "--no-rag", "A private question") == 0
    assert stored(cli_profile) == (0, 0)
    assert [d.title for d in cli_profile.writing.documents()] == ["Miso"]


def test_the_repl_commands(cli_profile, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(
        "Where does Miso sleep?\n/sources\n/adapter off\n/rag off\n/incognito on\n"
        "a secret\n/incognito off\nsecond chat\n/reset\n/bogus\n/quit\nnever sent\n"))
    assert oppu("chat") == 0
    captured = capsys.readouterr()
    assert "Miso (document 1)" in captured.out  # /sources
    assert "adapter off, retrieval on" in captured.out
    assert "adapter off, retrieval off, incognito: nothing is stored" in captured.out
    assert "/adapter on|off" in captured.out  # /bogus shows the help
    assert "unknown command /bogus" in captured.err
    assert stored(cli_profile) == (2, 4)
    texts = {d.preview for d in cli_profile.writing.documents(source="chat")}
    assert texts == {"Where does Miso sleep?", "second chat"}
    off = {"use_adapter": False, "use_retrieval": False}  # switched in the first, kept
    assert [Conversations(cli_profile.store).choices(c) for c in (1, 2)] == [off, off]


def test_a_resumed_conversation_keeps_its_switches_unless_told_otherwise(cli_profile, capsys,
                                                                         monkeypatch):
    assert oppu("ask", "--no-rag", "Where does my cat sleep?") == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert oppu("chat", "--resume", "1") == 0
    assert ("oppu chat (adapter on, none trained yet: the base model answers, retrieval off)"
            in capsys.readouterr().err)
    assert oppu("chat", "--resume", "1", "--no-adapter") == 0
    assert "oppu chat (adapter off, retrieval off)" in capsys.readouterr().err
    assert Conversations(cli_profile.store).choices(1) == {"use_adapter": False,
                                                          "use_retrieval": False}


def test_sources_after_resuming_are_those_of_the_stored_reply(cli_profile, capsys, monkeypatch):
    """It said "no passages of your writing were used" though the reply had used four."""
    oppu("ask", "--no-adapter", "Where does my cat sleep?")
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("/sources\n"))
    assert oppu("chat", "--resume", "1") == 0
    assert "[  –  ] Miso (document 1)" in capsys.readouterr().out


def test_resuming_is_refused_for_a_missing_conversation_or_with_incognito(cli_profile, capsys):
    assert oppu("chat", "--resume", "99") == 1
    assert capsys.readouterr().err == "oppu: no conversation with id 99\n"
    oppu("ask", "--no-rag", "First question")
    capsys.readouterr()
    assert oppu("chat", "--resume", "1", "--incognito") == 1
    assert "cannot go on incognito" in capsys.readouterr().err
    assert stored(cli_profile) == (1, 2)


def test_undecodable_bytes_in_a_message_are_replaced_not_fatal(cli_profile, capsys):
    # Python keeps bytes that are not UTF-8 in argv as lone surrogates.
    assert oppu("ask", "--no-adapter", "bad \udcff\udcfe bytes about Miso") == 0
    chat = [d.preview for d in cli_profile.writing.documents(source="chat")]
    assert chat == ["bad \ufffd\ufffd bytes about Miso"]


def test_conversations_list_rename_show_delete(cli_profile, capsys):
    oppu("ask", "First question about Miso")
    capsys.readouterr()
    assert oppu("conversations") == 0
    assert "First question about Miso" in capsys.readouterr().out
    assert oppu("conversations", "rename", "1", "Cat", "talk") == 0
    assert oppu("conversations", "show", "1") == 0
    out = capsys.readouterr().out
    assert "user: First question about Miso" in out
    oppu("conversations")
    assert "Cat talk" in capsys.readouterr().out
    long = "Planning the autumn sailing trip with Anna and Tom: tides, moorings, food and who rows"
    oppu("conversations", "rename", "1", long)  # a title given is kept whole, not cut at 60
    oppu("conversations")
    assert long in capsys.readouterr().out
    oppu("conversations", "rename", "1", "Tides\n and  moorings")  # lines joined, not dropped
    oppu("conversations")
    assert "Tides and moorings" in capsys.readouterr().out
    assert oppu("conversations", "delete", "1", "--forget-writing") == 0
    assert "and 1 document of your writing" in capsys.readouterr().out
    assert stored(cli_profile) == (0, 0)
    assert [d.title for d in cli_profile.writing.documents()] == ["Miso"]
    assert oppu("conversations", "delete", "1") == 1
    assert "no conversation with id 1" in capsys.readouterr().err


def test_a_missing_base_model_is_one_line_with_the_bundled_hint(cli_profile, capsys, tmp_path):
    cli_profile.set("base_model", str(tmp_path / "gone.gguf"))
    assert oppu("ask", "hello") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gone.gguf" in err and "base_model bundled" in err


def test_a_reader_that_stops_reading_stops_the_reply_which_is_still_stored(
        cli_profile, monkeypatch):
    """`oppu ask ... | head -c 5`: the pipe closes mid-reply; generation stops within a
    token, the conversation keeps the question and the reply so far, and the exit is
    quiet (141)."""
    class ClosingPipe(io.StringIO):
        refused = 0

        def write(self, text):
            if self.tell() >= 3:
                self.refused += 1
                raise BrokenPipeError
            return super().write(text)

        def fileno(self):
            return os.open(os.devnull, os.O_WRONLY)

    pipe = ClosingPipe()
    monkeypatch.setattr("sys.stdout", pipe)
    monkeypatch.setattr("os.dup2", lambda *_: None)
    assert oppu("ask", "--no-rag", "Tell me about Miso") == 141
    assert 1 <= pipe.refused <= 2  # of up to 12 reply tokens
    assert stored(cli_profile) == (1, 2)


def test_a_message_that_fails_is_reported_and_the_session_goes_on(cli_profile, capsys,
                                                                   monkeypatch, tmp_path):
    cli_profile.set("base_model", str(tmp_path / "gone.gguf"))
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n/help\n"))
    assert oppu("chat") == 0
    captured = capsys.readouterr()
    assert "oppu: " in captured.err and "gone.gguf" in captured.err
    assert "/adapter on|off" in captured.out  # the next line was still read


def test_sigterm_at_the_prompt_ends_the_session(cli_profile, capsys, monkeypatch):
    """`kill` or `timeout`: Ctrl-C at the prompt only clears the line, SIGTERM ends it."""
    import signal

    class KilledWhileWaiting(io.StringIO):
        def readline(self, *_args):
            os.kill(os.getpid(), signal.SIGTERM)
            return "never read\n"

    monkeypatch.setattr("sys.stdin", KilledWhileWaiting())
    assert oppu("chat") == 143
    assert stored(cli_profile) == (0, 0)


def test_an_id_beyond_what_sqlite_holds_is_a_usage_error(cli_profile, capsys):
    for args in (("conversations", "show", "99999999999999999999"),
                 ("chat", "--resume", "99999999999999999999")):
        with pytest.raises(SystemExit):
            oppu(*args)
        assert "not a conversation id: '99999999999999999999'" in capsys.readouterr().err


def test_deleting_a_conversation_keeps_writing_another_conversation_holds(cli_profile, capsys):
    """Two chats that both say "Thanks, that helps." share one document: deleting one chat
    with its writing forgot the other chat's message too."""
    oppu("ask", "--no-rag", "Thanks, that helps.")
    oppu("ask", "--no-rag", "Thanks, that helps.")
    oppu("ask", "--no-rag", "Only in the first chat: what does Miso eat?")
    capsys.readouterr()
    with cli_profile.store.write() as session:  # the third question joins the first chat
        session.get(Message, 5).conversation_id = 1
    assert oppu("conversations", "delete", "1", "--forget-writing") == 0
    assert "and 1 document of your writing" in capsys.readouterr().out
    assert [d.preview for d in cli_profile.writing.documents(source="chat")] == [
        "Thanks, that helps."]


def test_show_keeps_a_messages_lines_but_not_its_terminal_escapes(cli_profile, capsys):
    oppu("ask", "--no-rag", "Two lines:\nthe second \x1b[31mred\x1b[0m one")
    capsys.readouterr()
    assert oppu("conversations", "show", "1") == 0
    out = capsys.readouterr().out
    assert "user: Two lines:\nthe second \\x1b[31mred\\x1b[0m one\n" in out
    assert oppu("conversations", "delete", "1") == 0
    assert "still kept as your writing" in capsys.readouterr().out
    assert [d.preview for d in cli_profile.writing.documents(source="chat")] != []


def test_a_conversation_deleted_during_the_chat_is_one_line_and_the_chat_goes_on(
        cli_profile, capsys, monkeypatch):
    assert oppu("ask", "Where does my cat sleep?") == 0

    class DeletedMeanwhile(io.StringIO):
        def readline(self, *args):
            line = super().readline(*args)
            if line == "/rag off\n":  # the app deletes it while the terminal chats on
                Conversations(cli_profile.store).delete(1)
            return line

    monkeypatch.setattr("sys.stdin", DeletedMeanwhile("/rag off\nAnd in summer?\n/reset\n"
                                                      "And in summer?\n"))
    assert oppu("chat", "--resume", "1") == 0
    err = capsys.readouterr().err
    assert "no conversation with id 1\n" in err
    assert "oppu: no conversation with id 1 any more: /reset starts a new one" in err
    assert "Traceback" not in err
    assert [c.title for c in Conversations(cli_profile.store).summaries()] == ["And in summer?"]


def test_a_store_locked_past_the_timeout_is_one_line():
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from oppu.core.cli import store_failure

    locked = OperationalError("UPDATE conversations …", {},
                              sqlite3.OperationalError("database is locked"))
    assert store_failure(locked) == ("the profile's store did not answer: database is locked; "
                                     "try again")
    assert store_failure(KeyError("a bug")) is None  # still a traceback


def test_a_reply_cut_at_its_longest_length_says_so(cli_profile, capsys):
    assert oppu("config", "max_reply_tokens", "2") == 0
    capsys.readouterr()
    assert oppu("ask", "--no-rag", "--incognito", "Tell me a long story about Miso") == 0
    assert "[cut: the reply reached its longest length, `oppu config max_reply_tokens`]" in \
        capsys.readouterr().err
