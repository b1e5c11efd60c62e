"""Atomic writes: a file or folder appears under its final name complete, or not at all.

Everything is first written under a temporary name in the destination's own folder (so
the final rename never crosses a file system), flushed to disk, then renamed with
`os.replace`. A full disk, a crash or a kill leaves at most a stray temporary, never a
half file under the final name.
"""

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_PREFIX = ".oppu-partial-"
# A temporary whose writer cannot be told (named before names carried the process id) is
# left alone this long.
STALE_TEMP_S = 3600


def temp_prefix() -> str:
    """Temporaries carry the writing process's id: one a killed process left is known at
    once (`abandoned`), not only after the grace time."""
    return f"{TEMP_PREFIX}{os.getpid()}-"


def abandoned(path: Path) -> bool:
    """Whether `path` is a temporary left by a process that has ended (killed mid-write),
    however long ago; one of unknown writer counts when older than STALE_TEMP_S."""
    import psutil

    path = Path(path)
    if not path.name.startswith(TEMP_PREFIX):
        return False
    try:
        written = path.lstat().st_mtime
    except FileNotFoundError:
        return False
    pid = path.name[len(TEMP_PREFIX):].partition("-")[0]
    if not pid.isdigit():  # named before names carried the process id
        return time.time() - written >= STALE_TEMP_S
    try:  # a process started after the temporary was written only reuses the id
        return psutil.Process(int(pid)).create_time() > written
    except psutil.NoSuchProcess:
        return True


def remove_abandoned(folder: Path) -> None:
    """Remove the temporaries in `folder` whose writers were killed before they finished."""
    for path in Path(folder).glob(f"{TEMP_PREFIX}*"):
        if abandoned(path):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    if os.name == "nt" and path.is_dir():
        return  # Windows cannot open a folder to flush it; its renames are durable already
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> None:
    """Flush a folder and everything in it to disk."""
    for inner in sorted(folder.rglob("*"), reverse=True):
        fsync_path(inner)
    fsync_path(folder)


@contextmanager
def _errors_name(final: Path) -> Iterator[None]:
    """An OSError about the temporary file (that nobody asked for) names `final` instead."""
    try:
        yield
    except OSError as error:
        if error.filename is None or TEMP_PREFIX not in os.fspath(error.filename):
            raise
        raise type(error)(error.errno, error.strerror, str(final)) from None


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `final`, else it is removed.
    A symbolic link is written through (it stays a link); a device, a pipe or a folder
    under the name is never replaced."""
    final = Path(final)
    if final.is_symlink():
        final = Path(os.path.realpath(final))
    if final.exists() and not final.is_file():
        raise OSError(errno.EEXIST, "exists and is not a regular file", str(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(final.parent)  # an earlier write here that was killed (an export's)
    with _errors_name(final):
        fd, name = tempfile.mkstemp(prefix=temp_prefix(), suffix=final.suffix,
                                    dir=final.parent)
    os.close(fd)
    temp = Path(name)
    try:
        with _errors_name(final):
            yield temp
            fsync_path(temp)
            os.replace(temp, final)
            fsync_path(final.parent)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def staged_dir(parent: Path) -> Iterator[Path]:
    """Yield an empty temporary folder in `parent` to fill and then `move_in` under its final
    name; whatever is still there on the way out (a failure, an early exit) is removed."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=temp_prefix(), dir=parent))
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def move_in(staged: Path, final: Path) -> None:
    """Give a filled, flushed staged folder its final name, durably. `final` must not exist
    yet: a folder is never silently replaced."""
    final = Path(final)
    if final.exists():
        raise FileExistsError(errno.EEXIST, "already exists", str(final))
    os.rename(staged, final)
    fsync_path(final.parent)


def remove_tree(folder: Path) -> None:
    """Remove a folder whole: it is renamed to a temporary first, so a kill midway leaves
    one that `remove_abandoned` clears, never a part of it under its own name."""
    folder = Path(folder)
    doomed = folder.with_name(f"{temp_prefix()}removed-{folder.name}")
    try:
        os.rename(folder, doomed)
    except FileNotFoundError:
        return
    os.utime(doomed)  # named by this process now: `abandoned` compares its start with this
    shutil.rmtree(doomed, ignore_errors=True)


def write_bytes(final: Path, data: bytes) -> Path:
    with atomic_path(final) as temp:
        temp.write_bytes(data)
    return Path(final)


def write_text(final: Path, text: str) -> Path:
    return write_bytes(final, text.encode("utf-8"))
