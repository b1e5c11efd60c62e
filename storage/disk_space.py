"""Free disk space, checked before a long job writes large files rather than found missing
minutes into it."""

import shutil
from pathlib import Path

from oppu.storage.errors import StorageError


class NotEnoughDiskSpace(StorageError):
    pass


def human_size(size: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{size} bytes"


def require_free_space(folder: Path, needed: int, doing: str) -> None:
    """Raise NotEnoughDiskSpace when the file system of `folder` has less than `needed` bytes
    free; `doing` completes "not enough free disk space to ..."."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise NotEnoughDiskSpace(
            f"not enough free disk space to {doing}: it needs about {human_size(needed)} and "
            f"{human_size(free)} is free in {folder}; free some space and try again")
