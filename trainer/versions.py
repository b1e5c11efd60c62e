"""Adapter versions: `adapters/<version>/` folders and the `adapters` rows that own them.

A version folder holds `peft/` (adapter_config.json, adapter_model.safetensors),
`adapter.gguf`, `meta.json` and, while the version is recent, `merged-q8_0.gguf` (see
`write_model_files`). It appears complete or not at all (written under a
temporary name, then renamed), and its row is committed only after the rename, so a
row always points at a whole folder (`claimed_version`). Exactly one adapter, or none, is active; its
`activated_at` is the newest, which is what a rollback walks back through.
"""

import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from oppu.storage.atomic import move_in, sync_tree, write_text
from oppu.storage.db import Store
from oppu.storage.models import Adapter, Message, TrainingRun, utcnow

VERSION = re.compile(r"^v(\d+)$")
META_FILE = "meta.json"
PEFT_DIR = "peft"
GGUF_FILE = "adapter.gguf"
MERGED_FILE = "merged-q8_0.gguf"
# The merged copies kept: the new version's and those of the two latest activated (the
# active one and the one a rollback returns to). Each is about 1.5x the base's size.
MERGED_KEPT_ACTIVATED = 2
WORK_DIR = "adapter"  # runs/<id>/adapter/: a new version being written, before its rename


def app_version() -> str:
    try:
        return package_version("oppu-desktop")
    except PackageNotFoundError:
        return "unknown"


def next_version(session: Session, adapters_dir: Path) -> str:
    """`v<N+1>`, N the largest number ever used: by a row, a folder (even an orphan one), or
    a training run or a chat reply that names a version since deleted. A number is never
    handed out twice, so "v2" in an old conversation means the adapter that wrote it."""
    names = set(session.scalars(select(Adapter.version)))
    for column in (TrainingRun.adapter_version, Message.adapter_version):
        names.update(session.scalars(select(column).where(column.is_not(None)).distinct()))
    names.update(p.name for p in adapters_dir.iterdir() if p.is_dir())
    numbers = [int(m.group(1)) for m in map(VERSION.match, names) if m]
    return f"v{max(numbers, default=0) + 1}"


@contextmanager
def claimed_version(store: Store, adapters_dir: Path,
                    staged: Path) -> Iterator[tuple[Session, str]]:
    """Store the filled folder `staged` (in `adapters_dir`) as the next version.

    The body gets the write session and the version's name; it writes the folder's
    meta.json and adds the row. Then the folder is renamed in and the row committed. The
    number, the rename and the row share the store's write lock, so two processes storing
    a version at the same moment (two imports, an import during a run's commit) take two
    numbers. A folder whose row does not commit is taken back.
    """
    sync_tree(staged)  # the long flush, before taking the lock
    final = None
    try:
        with store.write() as session:
            version = next_version(session, adapters_dir)
            yield session, version
            move_in(staged, adapters_dir / version)
            final = adapters_dir / version
    except BaseException:
        if final is not None:
            shutil.rmtree(final, ignore_errors=True)
        raise


def write_meta(folder: Path, meta: dict) -> None:
    write_text(folder / META_FILE, json.dumps(meta, indent=2, sort_keys=True, default=str))


def read_meta(folder: Path) -> dict:
    """The version's meta.json, or {} when it is missing or unreadable."""
    try:
        return json.loads((Path(folder) / META_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return {}


def version_folder(profile_folder: Path, row: Adapter) -> Path:
    """Where a version's files are: its recorded path is relative to the profile's folder,
    so that moving the data folder (a new machine, a restored backup) keeps every version."""
    return Path(profile_folder) / row.path


def recorded_path(profile_folder: Path, folder: Path) -> str:
    """What a new version's row records for its `folder`."""
    return Path(folder).relative_to(profile_folder).as_posix()


def active_adapter(session: Session) -> Adapter | None:
    return session.scalar(select(Adapter).where(Adapter.is_active.is_(True)))


def make_active(session: Session, adapter: Adapter | None, when: datetime | None = None) -> None:
    """Make `adapter` the only active one (None: the bare base model)."""
    session.execute(update(Adapter).where(Adapter.is_active.is_(True)).values(is_active=False))
    if adapter is not None:
        adapter.is_active = True
        adapter.activated_at = when or utcnow()
    session.flush()


def write_model_files(folder: Path, base_gguf: Path, base_sha256: str,
                      report: Callable[[int, int, str], None] | None = None) -> None:
    """The llama.cpp files of the version in `folder`, from its `peft/`.

    `adapter.gguf` is the adapter alone, attached to the base at any strength. The merged
    copy is the base with the adapter added in at full strength, every block weight in
    q8_0, which chat serves instead: llama.cpp reads prompts about twice as fast through it
    (q8_0 weights have its tiled matmul kernels, the bundled Q4_1 base has none) and decodes
    faster than the attached adapter (`merge.write_served_gguf`, bench/results/generate.md).
    q8_0 keeps the adapter's effect: on held-out Austen text the merged copy's perplexity
    was 26.21 as attached and 32.90 for the base, where q5_0 gave 27.36 and q4_0 31.54
    (bench/results/served_model.md). The copy is optional: without it (a base
    type gguf-py cannot dequantize, or no room on the disk) chat attaches the adapter.
    `report(done, total, tensor)` follows the merge.
    """
    from oppu.trainer.gguf_adapter import write_adapter_gguf

    write_adapter_gguf(folder / PEFT_DIR, base_gguf, folder / GGUF_FILE,
                       base_sha256=base_sha256)
    write_merged_copy(folder, base_gguf, report)


def write_merged_copy(folder: Path, base_gguf: Path,
                      report: Callable[[int, int, str], None] | None = None) -> bool:
    """The merged copy of the version in `folder` (see `write_model_files`); False when it
    cannot be written, which leaves nothing behind (the write is atomic)."""
    from oppu.trainer.merge import write_served_gguf
    from oppu.trainer.peft_files import UnsupportedAdapter

    try:
        write_served_gguf(folder / PEFT_DIR, base_gguf, folder / MERGED_FILE, report)
    except (UnsupportedAdapter, OSError):
        return False
    return True


def drop_old_merged_copies(session: Session, adapters_dir: Path, new_version: str) -> None:
    """Delete the merged copies of all but `new_version` and the latest activated versions;
    those versions are then served with their adapter attached."""
    active = active_adapter(session)
    kept = {new_version, active.version if active else None, *session.scalars(
        select(Adapter.version).where(Adapter.activated_at.is_not(None))
        .order_by(Adapter.activated_at.desc()).limit(MERGED_KEPT_ACTIVATED))}
    for path in Path(adapters_dir).glob(f"*/{MERGED_FILE}"):
        if path.parent.name not in kept:
            try:
                path.unlink()
            except OSError:
                pass  # in use (Windows) or gone: a later run removes it
