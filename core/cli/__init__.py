"""The `oppu` command line. Each command group lives in its own module with `register()`."""

import argparse
import importlib
import os
import sys
import warnings
from contextlib import contextmanager

from oppu.core.cli.interrupt import terminate_as_interrupt
from oppu.storage.privacy import go_offline

COMMAND_MODULES = [
    "oppu.core.cli.writing_commands",
    "oppu.core.cli.training_commands",
    "oppu.core.cli.chat_commands",
    "oppu.core.cli.adapter_file_commands",
    "oppu.core.cli.eval_commands",
    "oppu.core.cli.profile_commands",
]


class CommandError(Exception):
    """A failure to report as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oppu", description="OPPU desktop: a private assistant that learns from your writing.")
    parser.add_argument("--profile", default=None,
                        help="whose data to use (default: the 'default' profile)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def open_profile(args, create: bool = False):
    """The `--profile` profile. Only commands that store something (`create`) make a new
    one, so that a mistyped name is an error, not a new empty profile; the default
    profile is always there to use."""
    from oppu.core.cli.progress_bar import ProgressBar
    from oppu.core.profile import Profile
    from oppu.storage.paths import DEFAULT_PROFILE, list_profiles

    name = DEFAULT_PROFILE if args.profile is None else args.profile  # "" is an error
    if not create and name != DEFAULT_PROFILE and name not in (known := list_profiles()):
        raise CommandError(f"no profile {name!r} (profiles: {', '.join(known) or 'none'}); "
                           "`oppu --profile NAME note` or `add` starts a new one")
    profile = Profile(name)
    profile.on_reindex = ProgressBar()
    return profile


@contextmanager
def profile_to_store_in(args):
    """`open_profile(args, create=True)` for a command that stores something; a profile it
    made is removed again when nothing was stored in it, so that a mistyped name with a
    failed import or a refused setting does not leave an empty profile behind."""
    from sqlalchemy import func, select

    from oppu.core.profile import delete_profile_data
    from oppu.storage.models import Adapter, Document, Setting
    from oppu.storage.paths import DEFAULT_PROFILE, list_profiles

    new = (DEFAULT_PROFILE if args.profile is None else args.profile) not in list_profiles()
    profile = open_profile(args, create=True)
    try:
        yield profile
    finally:
        with profile.store.read() as session:
            empty = not any(session.scalar(select(func.count()).select_from(table))
                            for table in (Document, Adapter, Setting))
        if new and empty:
            delete_profile_data(profile)
        else:
            profile.close()


def given_path(text: str) -> str:
    """A path argument as typed (a trailing "/" can matter); an empty one (an unset shell
    variable) is refused, where `Path("")` would quietly mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset variable?)")
    return text


def valid_text(text: str) -> str:
    """A message, note or query with what is not valid Unicode (undecodable bytes in a
    command line, which Python keeps as lone surrogates) replaced by U+FFFD, so that
    storage and the tokenizer never see it. Paths are left as they are: they name files."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes as they came in
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def main(argv: list[str] | None = None) -> int:
    go_offline()
    warnings.simplefilter("ignore", FutureWarning)  # libraries' deprecation notes, not ours
    args = build_parser().parse_args(argv)
    try:
        with terminate_as_interrupt():
            return args.run(args) or 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `oppu list | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (CommandError, ValueError) as error:
        print(f"oppu: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. writing where the user may not
        where = f"{error.filename}: " if error.filename else ""
        print(f"oppu: {where}{(error.strerror or str(error)).lower()}", file=sys.stderr)
        return 1
    except Exception as error:  # a library's failure still reads as one line
        line = store_failure(error)
        if line is None:
            raise
        print(f"oppu: {line}", file=sys.stderr)
        return 1


def store_failure(error: Exception) -> str | None:
    """One line for a failure of the profile's store (ours, or SQLite's through SQLAlchemy,
    such as a write lock held past the timeout); None for anything else."""
    from sqlalchemy.exc import DBAPIError

    from oppu.storage.errors import StorageError

    if isinstance(error, StorageError):
        return str(error)
    if isinstance(error, DBAPIError):
        return f"the profile's store did not answer: {error.orig}; try again"
    return None
