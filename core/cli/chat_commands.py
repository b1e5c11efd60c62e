"""`oppu chat | ask | conversations`: talk with the personal model from a terminal."""

import sys
from contextlib import suppress

from oppu.core.cli import CommandError, open_profile, store_failure, valid_text
from oppu.core.cli.interrupt import CtrlCStops, Terminated, terminate_ends
from oppu.core.cli.writing_commands import stored_id
from oppu.core.times import local_time

TERMINATED = 128 + 15  # the exit status of a command ended by SIGTERM

REPL_HELP = """\
/reset            start a new conversation
/sources          the passages of your writing used for the last reply
/adapter on|off   use your personal adapter or the bare base model
/rag on|off       put passages of your writing into the prompt, or not
/incognito on|off a conversation that is never stored (starts a new one)
/help             this list
/quit             leave (Ctrl-D works too); Ctrl-C stops a reply or clears the line"""


def register(commands) -> None:
    chat = commands.add_parser("chat", help="talk with your personal model (type /help inside)")
    _model_switches(chat)
    chat.add_argument("--resume", type=stored_id("conversation"), metavar="ID",
                      help="continue a stored conversation")
    chat.set_defaults(run=run_chat)

    ask = commands.add_parser("ask", help="one question, one streamed answer (for scripts)")
    ask.add_argument("question", nargs="+")
    _model_switches(ask)
    ask.add_argument("--sources", action="store_true", help="list the passages used")
    ask.set_defaults(run=run_ask)

    conversations = commands.add_parser("conversations", help="list, rename or delete chats")
    conversations.add_argument("action", nargs="?", default="list",
                               choices=["list", "show", "rename", "delete"])
    conversations.add_argument("id", nargs="?", type=stored_id("conversation"))
    conversations.add_argument("title", nargs="*")
    conversations.add_argument("--forget-writing", action="store_true",
                               help="with delete: also forget the messages as your writing")
    conversations.set_defaults(run=run_conversations)


def _model_switches(parser) -> None:
    parser.add_argument("--no-adapter", action="store_true",
                        help="the bare base model (a resumed conversation keeps it so)")
    parser.add_argument("--no-rag", action="store_true",
                        help="no passages of your writing (a resumed conversation keeps it so)")
    parser.add_argument("--incognito", action="store_true", help="store nothing at all")


def _session(profile, args, conversation_id=None):
    from oppu.core.chat import ChatOptions, ChatSession

    session = ChatSession(profile, options=ChatOptions(incognito=args.incognito),
                          conversation_id=conversation_id)
    # A switch on the command line wins over what a resumed conversation remembers.
    switched_off = {name: False for name, flag in (("use_adapter", args.no_adapter),
                                                   ("use_retrieval", args.no_rag)) if flag}
    if switched_off:
        session.choose(**switched_off)
    return session


def _say(session, text: str, stop: CtrlCStops):
    from oppu.core.conversations import ConversationNotFound
    from oppu.engine.errors import EngineError, ModelFileError

    reader_gone = False  # `oppu ask ... | head`: the reply so far is still stored

    def show(piece: str) -> None:
        nonlocal reader_gone
        try:
            sys.stdout.write(piece)
            sys.stdout.flush()
        except BrokenPipeError:
            reader_gone = True

    try:
        with stop.armed():
            reply = session.send(text, show, lambda: reader_gone or stop())
    except ModelFileError as error:
        hint = ""
        if error.bundled_fallback is not None:
            hint = " (the bundled model works: `oppu config base_model bundled`)"
        raise CommandError(f"{error}{hint}") from None
    except EngineError as error:
        raise CommandError(str(error)) from None
    except ConversationNotFound as error:  # deleted by the app or another terminal
        raise CommandError(f"{error} any more: /reset starts a new one") from None
    if reader_gone:
        raise BrokenPipeError  # main exits quietly, as for `oppu list | head`
    sys.stdout.write("\n")
    if reply.stop_reason == "stopped":
        print("[stopped]", file=sys.stderr)
    elif reply.stop_reason == "length":
        print("[cut: the reply reached its longest length, `oppu config max_reply_tokens`]",
              file=sys.stderr)
    for notice in reply.notices:
        print(f"note: {notice}", file=sys.stderr)
    return reply


def _print_sources(reply) -> None:
    from oppu.core.cli.writing_commands import print_passages

    if reply is None:
        print("no reply yet in this session")
        return
    if not reply.sources:
        print("no passages of your writing were used")
        return
    print_passages(reply.sources)


def _print_stored_sources(session) -> None:
    from oppu.core.cli.writing_commands import print_passages
    from oppu.core.conversations import deleted_sources

    replies = [m for m in session.conversations.messages(session.conversation_id)
               if m.role == "assistant"]
    if not replies:
        print("no reply yet in this conversation")
        return
    passages = session.conversations.passages(replies[-1].retrieved_chunk_ids)
    gone = len(replies[-1].retrieved_chunk_ids) - len(passages)
    if not passages and not gone:
        print("no passages of your writing were used")
        return
    print_passages(passages)
    if gone:
        print(f"({deleted_sources(gone)})")


def _describe(session) -> str:
    from oppu.core.adapters import active

    options = session.options
    adapter = "on" if options.use_adapter else "off"
    if options.use_adapter and active(session.profile) is None:
        adapter = "on, none trained yet: the base model answers"
    parts = [f"adapter {adapter}",
             f"retrieval {'on' if options.use_retrieval else 'off'}"]
    if options.incognito:
        parts.append("incognito: nothing is stored")
    return ", ".join(parts)


def _switch(value: str, name: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError(f"use /{name} on or /{name} off")
    return value == "on"


def _command(session, line: str) -> bool:
    """Run one /command; False when the REPL should end."""
    name, _, value = line[1:].strip().partition(" ")
    value = value.strip().lower()
    if name in ("quit", "exit", "q"):
        return False
    if name == "reset":
        session.reset()
        print("new conversation")
    elif name == "sources":
        if session.last_reply is None and session.conversation_id is not None:
            _print_stored_sources(session)  # resumed: the stored reply's
        else:
            _print_sources(session.last_reply)
    elif name == "adapter":
        session.choose(use_adapter=_switch(value, name))
        print(_describe(session))
    elif name == "rag":
        session.choose(use_retrieval=_switch(value, name))
        print(_describe(session))
    elif name == "incognito":
        session.set_incognito(_switch(value or "on", name))
        print(f"new conversation; {_describe(session)}")
    else:
        if name != "help":
            print(f"unknown command /{name}", file=sys.stderr)
        print(REPL_HELP)
    return True


def _edit_lines_in_a_terminal() -> None:
    """readline for `input()` at a terminal: line editing, a message longer than the
    terminal's own 4095-character line, and a multi-line paste as one message (bracketed
    paste). No history is written to disk."""
    if sys.stdin.isatty():
        with suppress(ImportError):  # Windows has no readline
            import readline  # noqa: F401


def run_chat(args) -> int:
    from oppu.core.conversations import ConversationNotFound

    if args.resume is not None and args.incognito:
        raise CommandError("a stored conversation cannot go on incognito; "
                           "leave out --resume for an incognito chat")
    stop = CtrlCStops()
    if hasattr(sys.stdin, "reconfigure"):  # undecodable input is replaced, not fatal
        sys.stdin.reconfigure(errors="surrogateescape")
    _edit_lines_in_a_terminal()
    with open_profile(args) as profile:
        try:
            session = _session(profile, args, args.resume)
        except ConversationNotFound as error:
            raise CommandError(str(error)) from None
        print(f"oppu chat ({_describe(session)}); /help for commands", file=sys.stderr)
        status = 0
        while True:
            try:
                with terminate_ends():
                    line = valid_text(input("you> "))
            except EOFError:
                print()
                break
            except KeyboardInterrupt:  # at the prompt: drop the line, as shells do
                print()
                continue
            except Terminated:  # `kill`, `timeout`: the session ends
                print()
                status = TERMINATED
                break
            if not line.strip():
                continue
            if line.startswith("/"):
                try:
                    if not _command(session, line):
                        break
                except Exception as error:  # one line, and the session goes on
                    line = (str(error) if isinstance(error, (ValueError, ConversationNotFound))
                            else store_failure(error))  # deleted meanwhile, a busy store
                    if line is None:
                        raise
                    print(line, file=sys.stderr)
                continue
            try:
                _say(session, line, stop)
            except CommandError as error:  # this message failed; the session goes on
                print(f"oppu: {error}", file=sys.stderr)
            if stop.terminated:
                status = TERMINATED
                break
        session.models.close()
    return status


def run_ask(args) -> int:
    with open_profile(args) as profile:
        session = _session(profile, args)
        reply = _say(session, valid_text(" ".join(args.question)), CtrlCStops())
        if args.sources:
            _print_sources(reply)
        session.models.close()
    return 0


def run_conversations(args) -> int:
    from oppu.core.conversations import ConversationNotFound, Conversations, delete_conversation
    from oppu.storage.drafts import printable

    with open_profile(args) as profile:
        conversations = Conversations(profile.store)
        if args.action != "list" and args.id is None:
            raise CommandError(f"`oppu conversations {args.action}` needs a conversation id")
        try:
            if args.action == "list":
                for c in conversations.summaries():
                    print(f"{c.id:>5}  {local_time(c.updated_at):<16}  {c.messages:>4} msgs  "
                          f"{printable(c.title, name=True)}")
            elif args.action == "show":
                for m in conversations.messages(args.id):
                    adapter = f" [{m.adapter_version}]" if m.adapter_version else ""
                    stopped = " [stopped]" if m.stop_reason == "stopped" else ""
                    print(f"{m.role}{adapter}: {printable(m.text, keep_lines=True)}{stopped}\n")
            elif args.action == "rename":
                conversations.rename(args.id, valid_text(" ".join(args.title)))
                print(f"renamed conversation {args.id}")
            else:
                forgotten = delete_conversation(profile, args.id, args.forget_writing)
                print(f"deleted conversation {args.id}"
                      + (f" and {forgotten} document{'s' * (forgotten != 1)} of your writing"
                         if forgotten else ""))
                if not args.forget_writing:
                    print("your messages in it are still kept as your writing (for search "
                          "and training); --forget-writing deletes them too")
        except ConversationNotFound as error:
            raise CommandError(str(error)) from None
    return 0
