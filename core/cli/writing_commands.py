"""`oppu note | add | list | search | forget | stats | config`: the user's writing."""

import argparse
import sys
from pathlib import Path

from oppu.core import SUPPORTED_NAMES
from oppu.core.cli import (
    CommandError,
    given_path,
    open_profile,
    profile_to_store_in,
    valid_text,
)
from oppu.core.cli.interrupt import CtrlCStops
from oppu.core.cli.progress_bar import ProgressBar
from oppu.core.progress import Progress
from oppu.core.times import local_time

MAX_ID = 2 ** 63 - 1  # SQLite's largest integer


def stored_id(kind: str):
    """An argparse type: the id of a stored `kind` (a document, a conversation), which
    SQLite can hold; anything else is a one-line usage error, not an OverflowError."""
    def parse(text: str) -> int:
        value = int(text) if text.strip().lstrip("-").isdigit() else None
        if value is None or not 1 <= value <= MAX_ID:
            raise argparse.ArgumentTypeError(f"not a {kind} id: {text!r}")
        return value

    return parse


def passage_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"give a number from 1 to 100, not {text!r}")
    return int(text)


def register(commands) -> None:
    note = commands.add_parser("note", help="store a note as your writing")
    note.add_argument("text", nargs="+", help="the note; - reads it from standard input")
    note.add_argument("--title", default="")
    note.set_defaults(run=run_note)

    add = commands.add_parser("add", help=f"import files or folders ({' '.join(SUPPORTED_NAMES)})")
    add.add_argument("paths", nargs="+", type=given_path)
    add.set_defaults(run=run_add)

    listing = commands.add_parser("list", help="list your stored writing")
    listing.add_argument("--filter", default="",
                         help="only documents whose title, text or file name holds this text")
    listing.add_argument("--source", choices=["note", "chat", "file", "mail"])
    listing.set_defaults(run=run_list)

    search = commands.add_parser("search", help="find passages of your writing")
    search.add_argument("query", nargs="+")
    search.add_argument("-k", type=passage_count, default=5, help="how many passages (1-100)")
    search.set_defaults(run=run_search)

    forget = commands.add_parser("forget", help="delete a document, its passages and vectors")
    forget.add_argument("ids", nargs="+", type=stored_id("document"))
    forget.set_defaults(run=run_forget)

    stats = commands.add_parser("stats", help="documents, words, words since the last adapter")
    stats.set_defaults(run=run_stats)

    config = commands.add_parser("config", help="show or change settings")
    config.add_argument("key", nargs="?")
    config.add_argument("value", nargs="?")
    config.set_defaults(run=run_config)


def _stdin_text(max_bytes: int) -> str:
    """Standard input as text, in whatever encoding it came, within the size a file may
    have (as a file would be read); binary data (an image piped by mistake) is refused as
    `oppu add` refuses it."""
    from oppu.storage.disk_space import human_size
    from oppu.storage.encoding import decode, looks_binary

    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:
        return sys.stdin.read()
    data = raw.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CommandError(f"nothing stored: standard input is over the {human_size(max_bytes)}"
                           " limit (`oppu config max_file_mb` sets it)")
    if looks_binary(data):
        raise CommandError("nothing stored: standard input is binary data, not text")
    text, warning = decode(data)
    if warning:
        print(f"note: standard input: {warning}", file=sys.stderr)
    return text


def run_note(args) -> int:
    from oppu.storage.encoding import is_blank

    with profile_to_store_in(args) as profile:
        text = (_stdin_text(profile.writing.max_file_bytes) if args.text == ["-"]
                else valid_text(" ".join(args.text)))
        if is_blank(text):
            raise CommandError("nothing to store: the note is empty")
        stored_id, new = profile.writing.add_text("note", text, valid_text(args.title),
                                                  embedding=_index_bar(ProgressBar()))
    print(f"{'stored' if new else 'already stored'} as document {stored_id}")
    return 0


def _index_bar(bar: ProgressBar):
    """`embedding(done, total)` for a Writing method, shown on `bar`."""
    return lambda done, total: bar(Progress("index", done, total, "passages of your writing"))


def run_add(args) -> int:
    from oppu.storage.drafts import printable

    bar = ProgressBar()
    files = [0]

    def report(done, total, result):
        files[0] = total
        bar(Progress("import", done, total, printable(Path(result.path).name, name=True)))

    # Ctrl-C ends the import between files, or between slices of a large file's passages
    # (which is then not stored), and still lists what it did.
    stop = CtrlCStops()
    with profile_to_store_in(args) as profile, stop.armed():
        results = profile.writing.add_paths(args.paths, report, stop, _index_bar(bar))
    for result in results:
        print(result.line())
    counts = {s: sum(r.status == s for r in results) for s in ("added", "duplicate", "skipped")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    if stop.requested and (not files[0] or len(results) < files[0]):
        print(f"interrupted: stopped after {len(results)} of {files[0]} files; the rest were "
              "not imported" if results else "interrupted: nothing was imported",
              file=sys.stderr)
        return 130
    return 1 if results and counts["skipped"] == len(results) else 0


def run_list(args) -> int:
    from oppu.storage.drafts import printable

    with open_profile(args) as profile:
        documents = profile.writing.documents(valid_text(args.filter), args.source)
    for d in documents:
        print(f"{d.id:>6}  {d.source:<5} {local_time(d.created_at):<16}  {d.words:>7} words  "
              f"{printable(d.title, name=True)}")
    if not documents:
        print("nothing matches" if args.filter or args.source
              else "nothing stored yet: try `oppu note` or `oppu add`")
    return 0


def run_search(args) -> int:
    from oppu.storage.encoding import is_blank

    query = valid_text(" ".join(args.query))
    if is_blank(query):  # control characters alone (a stray escape) are no query either
        raise CommandError("nothing to search for: the query is empty")
    with open_profile(args) as profile:
        passages = profile.writing.search(query, args.k)
    print_passages(passages)
    if not passages:
        print("no passages found")
    return 0


def print_passages(passages) -> None:
    """Each passage's score, title and document, then its start (control characters escaped)."""
    from oppu.storage.drafts import printable

    for p in passages:
        score = "  –  " if p.score is None else f"{p.score:.3f}"  # a stored reply's: not kept
        print(f"[{score}] {printable(p.title, name=True)} (document {p.document_id})")
        print("    " + printable(" ".join(p.text.split())[:300]))


def run_forget(args) -> int:
    from oppu.storage.errors import DocumentNotFound

    stored = []
    with open_profile(args) as profile:
        for document_id in dict.fromkeys(args.ids):  # each id once, in the order given
            try:
                profile.writing.get(document_id)
                stored.append(document_id)
            except DocumentNotFound as error:
                print(f"oppu: {error}", file=sys.stderr)
        profile.forget(*stored)
    for document_id in stored:
        print(f"forgot document {document_id}")
    return 0 if len(stored) == len(set(args.ids)) else 1


def run_stats(args) -> int:
    with open_profile(args) as profile:
        stats = profile.writing.stats()
    print(f"documents: {stats.documents}\nwords: {stats.words}\n"
          f"words since the last adapter: {stats.words_since_adapter}")
    return 0


def run_config(args) -> int:
    from oppu.core.bases import use_base
    from oppu.core.profile import ProfileInUse
    from oppu.trainer.prepare import BaseModelError

    if args.key is not None and not args.key.strip():
        raise CommandError("say which setting: `oppu config` lists them")
    if args.key == "base_model" and args.value is not None and not args.value.strip():
        raise CommandError("say which base model: 'bundled', a downloaded model's key or a "
                           "path to a GGUF file")
    # Only a change that is stored makes a new profile: reading a mistyped one is an error.
    opened = open_profile(args) if args.value is None else profile_to_store_in(args)
    with opened as profile:
        if args.key == "base_model" and args.value is not None:
            try:  # checked as `oppu base use` checks it
                use_base(profile, args.value)
            except (BaseModelError, ProfileInUse) as error:
                raise CommandError(str(error)) from None
        elif args.key and args.value is not None:
            profile.set(args.key, args.value)
            if args.key == "training_device":  # "cuda" on a machine without it: say so now
                from oppu.core.devices import device_summary

                print(device_summary(profile.settings.training_device))
        helps = profile.settings.help()
        keys = [args.key] if args.key else list(helps)
        for key in keys:
            if key not in helps:
                raise ValueError(f"unknown setting {key!r}")
            value = getattr(profile.settings, key)
            shown = ",".join(value) if isinstance(value, tuple) else value
            print(f"{key} = {shown}    # {helps[key]}")
    return 0
