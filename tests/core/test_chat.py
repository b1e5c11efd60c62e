"""The chat use case on the tiny model: retrieval, adapters, persistence, incognito (what
becomes writing: test_chat_writing.py)."""

import shutil

import pytest
from sqlalchemy import func, select

from oppu.core import adapters
from oppu.core.chat import base_sha256
from oppu.core.conversations import Conversations
from oppu.engine.chat import Sampling
from oppu.engine.errors import ModelFileError
from oppu.storage.models import Chunk, Conversation, Document, Message
from oppu.storage.prompting import PASSAGES_HEADER, VOICE_INSTRUCTION, user_turn
from tests.engine.adapters import install_adapter, lora_gguf, merged_gguf
from tests.support.chat_setup import NOTES, QUESTION, session
from tests.support.tiny_model import bundled_gguf


@pytest.fixture(scope="session")
def adapter_files(tiny_gguf, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat-adapters")
    return lora_gguf(tiny_gguf, folder, seed=0), lora_gguf(tiny_gguf, folder, seed=1)


def counts(profile) -> dict:
    with profile.store.read() as s:
        return {table.__name__: s.scalar(select(func.count()).select_from(table))
                for table in (Conversation, Message, Document, Chunk)} | {
            "vectors": profile.index.count()}


def test_a_reply_streams_cites_its_passages_and_is_stored(chat_profile, models):
    chat = session(chat_profile, models)
    pieces = []
    reply = chat.send(QUESTION, on_text=pieces.append)
    assert len(pieces) > 1 and reply.text == "".join(pieces).strip()
    assert reply.stop_reason == "length"
    assert reply.sources and reply.sources[0].title == "Beekeeping diary"
    assert all(0 < p.score <= 1 for p in reply.sources)
    assert reply.prompt_messages[0]["content"] == VOICE_INSTRUCTION
    asked = reply.prompt_messages[-1]
    assert asked == user_turn(QUESTION, [p.text for p in reply.sources])
    assert asked["content"].startswith(PASSAGES_HEADER)
    assert NOTES["Beekeeping diary"] in asked["content"]
    with chat_profile.store.read() as s:
        messages = s.scalars(select(Message).order_by(Message.id)).all()
        assert [(m.role, m.text) for m in messages] == [("user", QUESTION),
                                                        ("assistant", reply.text)]
        assert messages[1].retrieved_chunk_ids == [p.chunk_id for p in reply.sources]
        assert messages[1].adapter_version is None and messages[1].adapter_scale is None
        assert s.get(Conversation, reply.conversation_id).title == QUESTION


def test_regenerate_replaces_the_last_reply_everywhere(chat_profile, models):
    chat = session(chat_profile, models)
    chat.send("The bees are calm today.")
    first = chat.send(QUESTION)
    before = counts(chat_profile)
    again = chat.regenerate()
    assert again.conversation_id == first.conversation_id
    assert again.message_id != first.message_id
    assert [m["content"] for m in chat.history[-2:]] == [QUESTION, again.text]
    assert len(chat.history) == 4
    assert counts(chat_profile) == before  # one reply swapped for another, nothing re-ingested
    with chat_profile.store.read() as s:
        assert [m.role for m in s.scalars(select(Message).order_by(Message.id))] == [
            "user", "assistant", "user", "assistant"]
        assert s.get(Message, first.message_id) is None


def test_regenerate_needs_a_reply_and_keeps_history_when_it_fails(chat_profile, models):
    chat = session(chat_profile, models)
    with pytest.raises(ValueError, match="no reply"):
        chat.regenerate()
    chat.send(QUESTION)
    kept = list(chat.history)
    chat_profile.set("base_model", "/nowhere/gone.gguf")
    with pytest.raises(Exception, match="gone.gguf"):
        chat.regenerate()
    assert chat.history == kept


def test_a_reply_that_fails_leaves_the_session_as_reopening_it_would(chat_profile, models):
    """The message is stored before its reply; Regenerate can answer it, and the next
    prompt still takes turns (some chat templates refuse two user messages in a row)."""
    chat = session(chat_profile, models)
    chat.send("First question about the bees.")

    def fail(_piece):
        raise OSError("the window closed")

    with pytest.raises(OSError):
        chat.send("Second question, answered again.", fail)
    assert chat.stored_unanswered and chat.history[-1] == {"role": "assistant", "content": ""}
    chat.regenerate()
    assert chat.history[-2]["content"] == "Second question, answered again."
    with pytest.raises(OSError):
        chat.send("Third question, never answered.", fail)

    reopened = session(chat_profile, models)
    reopened.resume(chat.conversation_id)
    assert reopened.history == chat.history
    reply = reopened.send(QUESTION)
    assert [m["role"] for m in reply.prompt_messages[1:]] == ["user", "assistant"] * 3 + ["user"]
    assert reply.prompt_messages[5]["content"] == "Third question, never answered."
    stored = Conversations(chat_profile.store).messages(chat.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"] * 2 + ["user", "user", "assistant"]


def test_a_reply_that_cannot_be_stored_leaves_the_session_as_reopening_it_would(
        chat_profile, models, monkeypatch):
    chat = session(chat_profile, models)
    chat.send("First question about the bees.")
    store_message = Conversations.add_message

    def no_room_for_replies(self, conversation_id, role, *args, **kwargs):
        if role == "assistant":
            raise OSError("disk full")
        return store_message(self, conversation_id, role, *args, **kwargs)

    monkeypatch.setattr(Conversations, "add_message", no_room_for_replies)
    with pytest.raises(OSError, match="disk full"):
        chat.send("Second question, whose reply is lost.")
    monkeypatch.undo()
    reopened = session(chat_profile, models)
    reopened.resume(chat.conversation_id)
    assert chat.history == reopened.history
    assert chat.history[-2:] == [{"role": "user", "content": "Second question, whose reply is lost."},
                                 {"role": "assistant", "content": ""}]


def test_regenerate_in_incognito_stores_nothing(chat_profile, models):
    before = counts(chat_profile)
    chat = session(chat_profile, models, incognito=True)
    chat.send(QUESTION)
    chat.regenerate()
    assert len(chat.history) == 2 and counts(chat_profile) == before


def test_retrieval_can_be_turned_off(chat_profile, models):
    reply = session(chat_profile, models, use_retrieval=False).send(QUESTION)
    assert reply.sources == ()
    assert list(reply.prompt_messages) == [{"role": "system", "content": VOICE_INSTRUCTION},
                                           {"role": "user", "content": QUESTION}]
    with chat_profile.store.read() as s:
        assert s.scalar(select(Message.retrieved_chunk_ids).where(
            Message.role == "assistant")) == []


def test_each_conversation_remembers_whether_it_uses_retrieval_and_the_adapter(chat_profile,
                                                                                models):
    plain = session(chat_profile, models)
    plain.choose(use_retrieval=False)  # before the first message: the new one starts so
    assert plain.send(QUESTION).sources == ()
    first = plain.conversation_id
    plain.reset()
    plain.choose(use_retrieval=True, use_adapter=False)
    assert plain.send(QUESTION).sources  # the second conversation uses the writing
    second = plain.conversation_id

    later = session(chat_profile, models)  # the app reopened, its switches at the defaults
    later.resume(first)
    assert (later.options.use_retrieval, later.options.use_adapter) == (False, True)
    assert later.send("And the swarms?").sources == ()
    later.resume(second)
    assert (later.options.use_retrieval, later.options.use_adapter) == (True, False)
    later.choose(use_retrieval=False)
    assert Conversations(chat_profile.store).choices(second) == {"use_adapter": False,
                                                                "use_retrieval": False}
    with pytest.raises(ValueError, match="a conversation has no choice incognito"):
        later.choose(incognito=True)
    later.reset()
    with pytest.raises(ValueError, match="a conversation has no choice incognito"):
        later.choose(incognito=True)  # not even before it is stored


def test_incognito_writes_nothing_anywhere(chat_profile, models):
    before = counts(chat_profile)
    chat = session(chat_profile, models, incognito=True)
    first = chat.send(QUESTION)
    second = chat.send("And what about Gerald the sourdough starter?")
    assert first.sources and first.conversation_id is None and second.message_id is None
    assert len(second.prompt_messages) == 4  # it still remembers within the session
    assert counts(chat_profile) == before


def test_switching_incognito_on_starts_a_fresh_conversation(chat_profile, models):
    chat = session(chat_profile, models)
    chat.send(QUESTION)
    stored = counts(chat_profile)
    chat.set_incognito(True)
    reply = chat.send("A secret question.")
    assert len(reply.prompt_messages) == 2 and counts(chat_profile) == stored


def test_activation_and_rollback_take_effect_on_the_next_message(
        chat_profile, models, tiny_gguf, adapter_files):
    chat = session(chat_profile, models, use_retrieval=False)
    sha = base_sha256(tiny_gguf)

    def ask():
        chat.reset()
        return chat.send(QUESTION)

    base = ask()
    install_adapter(chat_profile, adapter_files[0], "v1", sha)
    first = ask()
    assert first.adapter_version == "v1" and first.adapter_scale == 1.0
    assert first.text != base.text
    install_adapter(chat_profile, adapter_files[1], "v2", sha)
    second = ask()
    assert second.adapter_version == "v2" and second.text not in (base.text, first.text)
    adapters.rollback(chat_profile)
    assert ask().text == first.text
    adapters.deactivate(chat_profile)
    bare = ask()
    assert bare.adapter_version is None and bare.text == base.text
    with chat_profile.store.read() as s:
        versions = s.scalars(select(Message.adapter_version).where(
            Message.role == "assistant").order_by(Message.id)).all()
    assert versions == [None, "v1", "v2", "v1", None]


def test_adapter_toggle_and_scale(chat_profile, models, tiny_gguf, adapter_files):
    install_adapter(chat_profile, adapter_files[0], "v1", base_sha256(tiny_gguf))
    chat = session(chat_profile, models, use_retrieval=False, incognito=True)
    personal = chat.send(QUESTION)
    chat.reset()
    chat.options.use_adapter = False
    plain = chat.send(QUESTION)
    assert plain.adapter_version is None and plain.text != personal.text
    chat.reset()
    chat.options.use_adapter = True
    chat.options.adapter_scale = 0.25
    weaker = chat.send(QUESTION)
    assert (weaker.adapter_version, weaker.adapter_scale) == ("v1", 0.25)


def test_an_adapter_for_another_base_is_refused_with_a_notice(
        chat_profile, models, tiny_gguf, adapter_files):
    install_adapter(chat_profile, adapter_files[0], "v1", "0" * 64,  # its merged copy too
                    merged=merged_gguf(tiny_gguf, adapter_files[0].parent, seed=0))
    chat = session(chat_profile, models, use_retrieval=False)
    reply = chat.send(QUESTION)
    assert reply.adapter_version is None
    assert "trained on another base model" in reply.notices[0]
    chat.reset()
    assert session(chat_profile, models, use_retrieval=False, use_adapter=False).send(
        QUESTION).text == reply.text


def test_a_stopped_reply_is_kept_as_far_as_it_got(chat_profile, models):
    chat = session(chat_profile, models, sampling=Sampling.greedy(200))
    pieces = []
    reply = chat.send(QUESTION, on_text=pieces.append, should_stop=lambda: len(pieces) >= 2)
    assert reply.stop_reason == "stopped" and reply.stats.tokens == 2
    with chat_profile.store.read() as s:
        assert s.scalar(select(Message.text).where(Message.role == "assistant")) == reply.text
    assert [m.stop_reason for m in chat.conversations.messages(reply.conversation_id)] == [
        None, "stopped"]  # a reopened conversation still shows it stopped


def test_a_200_turn_conversation_never_overflows(chat_profile, models):
    chat = session(chat_profile, models, sampling=Sampling.greedy(10_000))
    chat.history = [{"role": role, "content": f"turn {i} from the {role}, with some words"}
                    for i in range(200) for role in ("user", "assistant")]
    reply = chat.send(QUESTION)
    assert reply.sources and reply.stop_reason == "length"
    assert reply.stats.prompt_tokens + reply.stats.tokens <= 512
    assert reply.prompt_messages[-2]["content"] == "turn 199 from the assistant, with some words"
    assert len(reply.prompt_messages) < 400
    left_out = 400 - (len(reply.prompt_messages) - 2)  # the system turn and the new message
    assert f"The first {left_out} messages of this conversation no longer fit" in " ".join(
        reply.notices)  # said once, when it starts
    chat.options.sampling = Sampling.greedy(4)
    assert not any("no longer fit" in n for n in chat.send("And again?").notices)


def test_a_very_long_message_is_cut_with_a_notice(chat_profile, models):
    reply = session(chat_profile, models).send("bees " * 3000)
    assert any("too long" in n for n in reply.notices)
    assert chat_profile.writing.documents(source="chat")[0].words == 3000  # stored whole


def test_empty_messages_are_refused(chat_profile, models):
    with pytest.raises(ValueError, match="empty"):
        session(chat_profile, models).send("   ")


@pytest.mark.parametrize("content", [None, b"not a model at all", b"GGUF\x03\x00\x00\x00"])
def test_a_missing_or_damaged_base_offers_the_bundled_one(chat_profile, models, tmp_path,
                                                          content):
    path = tmp_path / "my-model.gguf"
    if content is not None:
        path.write_bytes(content)
    chat_profile.set("base_model", str(path))
    with pytest.raises(ModelFileError) as caught:
        session(chat_profile, models).send(QUESTION)
    assert caught.value.bundled_fallback == bundled_gguf()
    assert "my-model.gguf" in str(caught.value) and "\n" not in str(caught.value)
    assert counts(chat_profile)["Message"] == 0


def test_full_strength_is_served_by_the_merged_copy(chat_profile, models, tiny_gguf,
                                                    adapter_files):
    """The merged copy (q8_0) answers as the attached adapter does, with no adapter
    attached; a weaker strength or the adapter switched off use the base again."""
    sha = base_sha256(tiny_gguf)
    merged = merged_gguf(tiny_gguf, adapter_files[0].parent, seed=0)
    install_adapter(chat_profile, adapter_files[0], "v1", sha)
    chat = session(chat_profile, models, use_retrieval=False, incognito=True)
    attached = chat.send(QUESTION)
    assert models.current.model_path == tiny_gguf and models.current.adapter is not None
    install_adapter(chat_profile, adapter_files[0], "v2", sha, merged=merged)
    chat.reset()
    served = chat.send(QUESTION)
    assert served.adapter_version == "v2" and served.adapter_scale == 1.0
    assert models.current.model_path == adapters.active(chat_profile).merged_path
    assert models.current.adapter is None and served.text == attached.text
    chat.reset()
    chat.options.adapter_scale = 0.5
    assert chat.send(QUESTION).adapter_scale == 0.5
    assert models.current.model_path == tiny_gguf and models.current.adapter[1] == 0.5
    chat.reset()
    chat.options.adapter_scale, chat.options.use_adapter = None, False
    assert chat.send(QUESTION).adapter_version is None
    assert models.current.model_path == tiny_gguf and models.current.adapter is None


def test_a_damaged_merged_copy_is_dropped_for_the_attached_adapter(
        chat_profile, models, tiny_gguf, adapter_files):
    sha = base_sha256(tiny_gguf)
    folder = install_adapter(chat_profile, adapter_files[0], "v1", sha,
                             merged=merged_gguf(tiny_gguf, adapter_files[0].parent, seed=0))
    merged = adapters.active(chat_profile).merged_path
    merged.write_bytes(merged.read_bytes()[:4096])  # cut short
    chat = session(chat_profile, models, use_retrieval=False, incognito=True)
    reply = chat.send(QUESTION)
    assert reply.adapter_version == "v1"
    assert "merged copy of adapter v1 is damaged" in reply.notices[0]
    assert not merged.exists() and (folder / "adapter.gguf").is_file()
    assert models.current.model_path == tiny_gguf and models.current.adapter is not None
    chat.reset()
    assert chat.send(QUESTION).notices == ()  # said once: the copy is gone


def test_a_damaged_adapter_file_is_written_again_from_the_trained_weights(
        chat_profile, models, tiny_gguf, adapter_dir, tmp_path):
    from oppu.trainer.gguf_adapter import write_adapter_gguf

    sha = base_sha256(tiny_gguf)
    whole = write_adapter_gguf(adapter_dir, tiny_gguf, tmp_path / "a.gguf", base_sha256=sha)
    folder = install_adapter(chat_profile, whole, "v1", sha, peft=adapter_dir)
    stored = folder / "adapter.gguf"
    stored.write_bytes(whole.read_bytes()[:4096])  # cut short; no merged copy to fall back on
    chat = session(chat_profile, models, use_retrieval=False, incognito=True)
    reply = chat.send(QUESTION)
    assert reply.adapter_version == "v1" and models.current.adapter is not None
    assert "v1's file was damaged" in reply.notices[0] and "written again" in reply.notices[0]
    assert stored.read_bytes() == whole.read_bytes()

    chat.reset()
    stored.write_bytes(b"GGUF" + bytes(60))
    shutil.rmtree(folder / "peft")  # nothing to write it again from
    reply = chat.send(QUESTION)
    assert reply.adapter_version is None and "v1 cannot be used" in reply.notices[0]


def test_a_whole_merged_copy_that_fails_to_load_is_kept_and_skipped(
        chat_profile, models, tiny_gguf, adapter_files, monkeypatch):
    """Out of memory, say: the copy is fine, so it stays; the adapter is attached."""
    from oppu.engine import llm

    install_adapter(chat_profile, adapter_files[0], "v1", base_sha256(tiny_gguf),
                    merged=merged_gguf(tiny_gguf, adapter_files[0].parent, seed=0))
    merged, real_open = adapters.active(chat_profile).merged_path, llm._open_llama

    def no_room_for_merged(path, *args):
        if path == merged:
            raise ModelFileError(path, "llama.cpp cannot load it")
        return real_open(path, *args)

    monkeypatch.setattr(llm, "_open_llama", no_room_for_merged)
    chat = session(chat_profile, models, use_retrieval=False, incognito=True)
    reply = chat.send(QUESTION)
    assert "merged copy of adapter v1 cannot be loaded" in reply.notices[0]
    assert merged.is_file() and models.current.model_path == tiny_gguf
    assert models.current.adapter is not None and reply.adapter_version == "v1"
    chat.reset()
    assert chat.send(QUESTION).notices == ()  # not tried again for every message


def test_a_merged_copy_written_anew_under_the_same_name_is_loaded_anew(
        chat_profile, models, tiny_gguf, adapter_files):
    """A deleted newest version's name is given to the next one: its merged copy has the
    same path, and must not be answered by the model still loaded from the old one."""
    sha = base_sha256(tiny_gguf)
    folder = adapter_files[0].parent
    install_adapter(chat_profile, adapter_files[0], "v1", sha,
                    merged=merged_gguf(tiny_gguf, folder, seed=0))
    chat = session(chat_profile, models, use_retrieval=False, incognito=True)
    first = chat.send(QUESTION)
    adapters.deactivate(chat_profile)
    adapters.delete(chat_profile, "v1")
    install_adapter(chat_profile, adapter_files[1], "v1", sha,
                    merged=merged_gguf(tiny_gguf, folder, seed=1))
    chat.reset()
    second = chat.send(QUESTION)
    chat.reset()
    chat.options.adapter_scale = 0.999  # the same adapter attached, for reference
    assert second.text == chat.send(QUESTION).text != first.text


def test_an_activated_version_without_its_merged_copy_gets_it_written_again(
        chat_profile, models, tiny_gguf, adapter_files):
    """Only the latest versions keep a merged copy; activating an older one writes its copy
    again (the command line and the app do so after activation), and chat serves it."""
    sha = base_sha256(tiny_gguf)
    folder = adapter_files[0].parent
    fresh = merged_gguf(tiny_gguf, folder, seed=0)  # what training wrote for this adapter
    install_adapter(chat_profile, adapter_files[0], "v1", sha, peft=folder / "peft-0")
    assert adapters.active(chat_profile).merged_path is None
    seen = []
    assert adapters.restore_merged_copy(chat_profile, "v1", seen.append)
    restored = adapters.active(chat_profile).merged_path
    assert restored.read_bytes() == fresh.read_bytes()
    assert seen[-1].phase == "merge" and seen[-1].done == seen[-1].total > 0
    session(chat_profile, models, use_retrieval=False, incognito=True).send(QUESTION)
    assert models.current.model_path == restored and models.current.adapter is None

    install_adapter(chat_profile, adapter_files[0], "v2", "f" * 64, peft=folder / "peft-0")
    assert not adapters.restore_merged_copy(chat_profile, "v2")  # made for another base
    assert adapters.active(chat_profile).merged_path is None
