"""What of a chat becomes the user's writing: typed text, not pasted; before the reply
streams; gone with its conversation when asked; never its own source."""

from sqlalchemy import select

from oppu.core.conversations import Conversations, delete_conversation
from oppu.storage.models import Message
from tests.support.chat_setup import NOTES, QUESTION, session


def test_the_users_messages_become_their_writing(chat_profile, models):
    chat = session(chat_profile, models)
    chat.send("I think the swarm settled in the plum tree.")
    chat.send("Tomorrow I will build a second hive.")
    chats = chat_profile.writing.documents(source="chat")
    assert {d.preview for d in chats} == {"I think the swarm settled in the plum tree.",
                                          "Tomorrow I will build a second hive."}
    hits = chat_profile.writing.search("second hive", k=1)
    assert hits[0].text == "Tomorrow I will build a second hive."


def test_only_what_the_user_typed_becomes_their_writing_not_what_they_pasted(chat_profile,
                                                                           models):
    email = "Dear all, the quarterly figures are attached; please review them by Friday."
    typed = "Answer this politely: "
    message = f"{typed}{email}\nKeep it short."
    chat = session(chat_profile, models)
    reply = chat.send(message, pasted=[(len(typed), len(typed) + len(email))])
    assert email in reply.prompt_messages[-1]["content"]  # the model still sees all of it
    [own] = chat_profile.writing.documents(source="chat")
    assert chat_profile.writing.get(own.id).text == "Answer this politely: \nKeep it short."
    chat.send(email, pasted=[(0, len(email))])  # all pasted: nothing becomes writing
    assert len(chat_profile.writing.documents(source="chat")) == 1
    with chat_profile.store.read() as s:
        assert [m.text for m in s.scalars(select(Message).where(Message.role == "user"))] == [
            message, email]  # the conversation keeps the messages whole
    assert delete_conversation(chat_profile, reply.conversation_id, forget_writing=True) == 1
    assert chat_profile.writing.documents(source="chat") == []


def test_a_message_is_writing_before_its_reply_streams(chat_profile, models):
    """Stored only after the reply, it was lost to a kill during the reply, while the
    conversation kept the message."""
    seen = []
    session(chat_profile, models).send("The plum tree needs pruning.", on_text=lambda _piece:
                                       seen.append(len(chat_profile.writing.documents(source="chat"))))
    assert seen and set(seen) == {1}


def test_deleting_a_conversation_with_its_writing_cannot_leave_the_writing_behind(
        chat_profile, models, embedder):
    """A kill after the conversation's deletion committed used to keep its writing for good."""
    from oppu.core.profile import Profile

    reply = session(chat_profile, models).send("My purple kite is stuck in the oak.")
    Conversations(chat_profile.store).delete(reply.conversation_id, forget_writing=True)
    chat_profile.close()  # killed here, before the forget itself
    with Profile(chat_profile.name, embedder=embedder) as reopened:
        assert reopened.writing.documents(source="chat") == []
        assert all("kite" not in p.text for p in reopened.writing.search("purple kite", 4))


def test_a_deleted_conversation_leaves_no_trace_in_the_database_files(chat_profile, models):
    secret = "Statement: account 88-1234-5678, balance 9,321.77"
    chat = session(chat_profile, models)
    chat.send(secret, pasted=[(0, len(secret))])
    assert chat_profile.writing.stats().documents == len(NOTES)  # the paste is not writing
    delete_conversation(chat_profile, chat.conversation_id)
    for name in ("oppu.db", "oppu.db-wal"):
        path = chat_profile.folder / name
        assert not path.exists() or b"88-1234-5678" not in path.read_bytes(), name


def test_asking_again_does_not_cite_the_earlier_question(chat_profile, models):
    session(chat_profile, models).send(QUESTION)
    session(chat_profile, models).send(QUESTION.upper())
    assert len(chat_profile.writing.documents(source="chat")) == 2
    chat_profile.set("retrieval_k", 2)
    chat_profile.set("retrieval_min_score", 0.0)
    again = session(chat_profile, models).send("  what happened with the BEES on the roof? ")
    cited = [p.text for p in again.sources]
    assert len(cited) == 2 and cited[0] == NOTES["Beekeeping diary"]
    assert not {QUESTION, QUESTION.upper()} & set(cited)  # neither earlier copy is cited


def test_a_question_asked_again_in_other_words_is_not_its_own_source(chat_profile, models):
    """In another conversation, so not in the prompt: the earlier question (similarity 0.93)
    took a source's place and told the model nothing."""
    session(chat_profile, models).send("What do I usually pack for sailing weekends?")
    chat_profile.set("retrieval_k", 2)
    chat_profile.set("retrieval_min_score", 0.0)
    again = session(chat_profile, models).send("What do I usually pack for sailing?")
    assert [p.source for p in again.sources] == ["note", "note"]
    earlier = chat_profile.writing.search("What do I usually pack for sailing?", 1)[0]
    assert earlier.source == "chat" and earlier.score >= 0.9  # what was left out


def test_the_conversation_s_own_questions_are_not_its_sources(chat_profile, models):
    """Asked three ways in one conversation, the earlier questions (already in the prompt)
    used to push the notes out of the passages."""
    chat_profile.set("retrieval_k", 2)
    chat_profile.set("retrieval_min_score", 0.0)
    chat = session(chat_profile, models)
    chat.send("What happened with the bees?")
    chat.send("What exactly happened with the bees?")
    third = chat.send("So what happened with the bees then?")
    assert {p.text for p in third.sources} == set(NOTES.values())


def test_deleted_sources_are_counted_in_plain_words():
    from oppu.core.conversations import deleted_sources

    assert deleted_sources(1) == "1 passage it used has since been deleted"
    assert deleted_sources(3) == "3 passages it used have since been deleted"


def test_the_typed_part_keeps_what_surrounds_a_paste_apart():
    from oppu.core.conversations import typed_part

    assert typed_part("Translate:Bonjour à tous.please", [(10, 25)]) == "Translate:\nplease"
    assert typed_part("Sum up: ARTICLE thanks", [(8, 15)]) == "Sum up:  thanks"
    assert typed_part("ARTICLE", [(0, 7)]) == "" and typed_part("mine", []) == "mine"
