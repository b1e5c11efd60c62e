"""Where a user's data lives: one private root, one folder per profile."""

import os
import re
import stat
from pathlib import Path

import platformdirs

# Ends with no space (a name that looks the same as another), matched whole (`$` alone
# lets a final newline through).
PROFILE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _.-]{0,62}[A-Za-z0-9_.-])?")
DEFAULT_PROFILE = "default"
# Names Windows keeps for devices, with or without an extension ("con.txt", "con .txt").
WINDOWS_DEVICES = re.compile(r"(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]) *(\..*)?",
                             re.IGNORECASE)


class InvalidProfileName(ValueError):
    pass


NO_SUCH_FILE = "no such file"
A_FOLDER = "a folder, not a file"


def file_problem(path: Path) -> tuple[str | None, os.stat_result | None]:
    """(why `path` cannot be read as a file, None if it can; its stat when there is one):
    missing, a folder, a device or pipe, a loop of links, ..."""
    try:
        info = Path(path).stat()
    except FileNotFoundError:
        return NO_SUCH_FILE, None
    except OSError as error:  # a loop of symbolic links, a name too long, ...
        return f"cannot read: {(error.strerror or str(error)).lower()}", None
    if stat.S_ISDIR(info.st_mode):
        return A_FOLDER, info
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a device, a pipe or a socket)", info
    return None, info


def data_root() -> Path:
    """`OPPU_HOME` if set, else the platform's user data folder; created if need be."""
    return private_dir(data_root_path())


def data_root_path() -> Path:
    """Where the data root is, without creating it."""
    override = os.environ.get("OPPU_HOME")
    return Path(override).expanduser() if override else Path(platformdirs.user_data_dir("oppu"))


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the owner only."""
    os.umask(0o077)  # every file the app creates afterwards is 0600, folders 0700
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def profile_path(name: str, root: Path | None = None) -> Path:
    """Where profile `name` lives (nothing is created); InvalidProfileName if it cannot."""
    if not PROFILE_NAME.fullmatch(name) or name in {".", ".."}:
        shown = name if len(name) <= 40 else name[:39] + "…"
        raise InvalidProfileName(
            f"invalid profile name {shown!r}: up to 64 plain letters (a-z, A-Z) and digits, "
            "plus space, '_', '.', '-' after the first character (not a space at the end)"
        )
    return (root or data_root()) / "profiles" / name


def profile_dir(name: str, root: Path | None = None) -> Path:
    """Profile `name`'s folder, created if new (a new name must also suit every OS)."""
    folder = profile_path(name, root)
    if not folder.is_dir():
        check_new_profile_name(name, root)
    return private_dir(folder)


def check_new_profile_name(name: str, root: Path | None = None, renaming: str = "") -> None:
    """InvalidProfileName unless `name` can be a new profile's folder on every OS.

    Profiles that exist keep their names: these rules only stop new ones, which could not
    be copied to Windows or macOS (where a data folder may be moved), or would be one
    folder there under two names. `renaming` is the profile being given the name, which
    may change just its case.
    """
    profile_path(name, root)
    if WINDOWS_DEVICES.fullmatch(name.rstrip(". ")):
        raise InvalidProfileName(f"invalid profile name {name!r}: Windows keeps it for a "
                                 "device, so the profile could not be copied there")
    if name.endswith("."):
        raise InvalidProfileName(f"invalid profile name {name!r}: it cannot end with '.' "
                                 "(Windows drops it)")
    clash = [other for other in list_profiles(root)
             if other.casefold() == name.casefold() and other not in (name, renaming)]
    if clash:
        raise InvalidProfileName(f"invalid profile name {name!r}: a profile named "
                                 f"{clash[0]!r} exists, and Windows and macOS do not tell "
                                 "the two apart; use that name or another")


def list_profiles(root: Path | None = None) -> list[str]:
    folder = (root or data_root()) / "profiles"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if PROFILE_NAME.fullmatch(p.name) and (p / "oppu.db").exists())
