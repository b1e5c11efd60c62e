"""`oppu profiles`: the people this machine keeps writing for; renaming one, deleting one for
good."""

import sys

from oppu.core.cli import CommandError


def register(commands) -> None:
    profiles = commands.add_parser(
        "profiles", help="list the profiles, rename one, or delete one with everything it "
                         "holds")
    change = profiles.add_mutually_exclusive_group()
    change.add_argument("--rename", nargs=2, metavar=("NAME", "NEW_NAME"),
                        help="give a profile another name, with everything it holds "
                             "(refused while it trains; close OPPU windows using it first)")
    change.add_argument("--delete", metavar="NAME",
                        help="delete this profile's writing, chats, models and settings "
                             "(refused while it trains; close OPPU windows using it first)")
    profiles.add_argument("--yes", action="store_true",
                          help="with --delete: do not ask for confirmation")
    profiles.set_defaults(run=run_profiles)


def run_profiles(args) -> int:
    from oppu.storage.errors import StorageError
    from oppu.storage.paths import list_profiles

    names = list_profiles()
    if args.delete is not None:
        return _delete(args.delete, names, args.yes)
    if args.rename is not None:
        return _rename(*args.rename, names)
    if not names:
        print("no profiles yet: `oppu note` or `oppu add` starts the default one")
        return 0
    print(f"{'profile':<24} {'documents':>9} {'words':>9}  active adapter")
    for name in names:
        try:
            documents, words, adapter = _summary(name)
        except StorageError as error:  # one damaged profile: the others are still listed
            print(f"{name:<24} {'?':>9} {'?':>9}  cannot be opened: {error}")
            continue
        print(f"{name:<24} {documents:>9} {words:>9}  {adapter or '-'}")
    return 0


def _summary(name: str) -> tuple[int, int, str | None]:
    from sqlalchemy import func, select

    from oppu.core.adapters import active
    from oppu.core.profile import Profile
    from oppu.storage.models import Document

    with Profile(name) as profile:
        with profile.store.read() as session:
            documents, words = session.execute(
                select(func.count(Document.id), func.coalesce(func.sum(Document.words), 0))
                .where(Document.deleted.is_(False))).one()
        current = active(profile)
    return documents, words, current.version if current else None


def _existing(name: str, names: list[str]) -> None:
    if name not in names:
        raise CommandError(f"no profile {name!r} (profiles: {', '.join(names) or 'none'})")


def _rename(name: str, new_name: str, names: list[str]) -> int:
    from oppu.core.profile import Profile, ProfileExists, ProfileInUse, rename_profile
    from oppu.storage.paths import InvalidProfileName

    _existing(name, names)
    try:
        rename_profile(Profile(name), new_name)
    except (ProfileExists, ProfileInUse, InvalidProfileName) as error:
        raise CommandError(str(error)) from None
    print(f"renamed profile {name!r} to {new_name!r}")
    return 0


def _delete(name: str, names: list[str], confirmed: bool) -> int:
    from oppu.core.profile import (
        Profile,
        ProfileInUse,
        delete_damaged_profile,
        delete_profile_data,
    )
    from oppu.storage.errors import StoreDamaged

    _existing(name, names)
    if not confirmed and not _confirmed(name):
        print("nothing deleted")
        return 1
    try:
        try:
            profile = Profile(name)
        except StoreDamaged:  # the way out of a profile that cannot be opened
            delete_damaged_profile(name)
        else:
            delete_profile_data(profile)
    except ProfileInUse as error:
        raise CommandError(str(error)) from None
    print(f"deleted profile {name!r}: its writing, chats, adapters, runs and settings")
    return 0


def _confirmed(name: str) -> bool:
    if not sys.stdin.isatty():
        raise CommandError(f"deleting {name!r} cannot be undone: add --yes to confirm")
    try:
        answer = input(f"Delete profile {name!r} and everything it holds? Type its name: ")
    except EOFError:
        return False
    return answer.strip() == name
