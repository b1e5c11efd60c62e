"""The profile's adapter versions: list them, activate one, roll back, delete one.

Activation stamps `activated_at`; a rollback clears the current adapter's stamp and
activates the most recently activated of the others, so repeated rollbacks walk back
through the history. The bare base model is what is left when none is active.
"""

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from oppu.core.progress import Progress, Report, ignore
from oppu.storage.atomic import remove_tree
from oppu.storage.models import Adapter, AdapterDocument
from oppu.trainer.versions import (
    GGUF_FILE,
    MERGED_FILE,
    PEFT_DIR,
    active_adapter,
    drop_old_merged_copies,
    make_active,
    version_folder,
    write_merged_copy,
)


class AdapterError(Exception):
    pass


@dataclass(frozen=True)
class AdapterVersion:
    version: str
    path: Path
    base_name: str
    base_sha256: str
    origin: str
    metrics: dict
    words_trained: int
    is_active: bool
    trained_on_deleted: bool
    created_at: datetime
    activated_at: datetime | None

    @property
    def gguf_path(self) -> Path:
        return self.path / GGUF_FILE

    @property
    def merged_path(self) -> Path | None:
        """The base with this adapter merged in, when the version still has that copy."""
        path = self.path / MERGED_FILE
        return path if path.is_file() else None

    @property
    def peft_dir(self) -> Path:
        return self.path / PEFT_DIR

    def perplexity(self, of: str = "new") -> float | None:
        """Held-out perplexity measured when the version was trained, of the adapter
        ('new') or of the bare base ('base'); None where it was not measured."""
        part = self.metrics.get(of) or {}
        if part.get("perplexity") is not None:
            value = float(part["perplexity"])
        elif part.get("loss") is not None:
            value = math.exp(part["loss"])
        else:
            return None
        return value if math.isfinite(value) else None  # NaN: nothing was held out


def _version(profile, row: Adapter) -> AdapterVersion:
    return AdapterVersion(row.version, version_folder(profile.folder, row), row.base_name,
                          row.base_sha256, row.origin,
                          row.metrics if isinstance(row.metrics, dict) else {},
                          row.words_trained, row.is_active,
                          row.trained_on_deleted, row.created_at, row.activated_at)


def made_for_another_base(version: AdapterVersion, base_setting: str) -> bool:
    """Whether `version` was trained on another base model than the one `base_setting` names
    (chat replies without such an adapter). Hashes the base once per file version."""
    from oppu.core.chat import base_model_path, base_sha256

    return version.base_sha256 != base_sha256(base_model_path(base_setting))


def list_adapters(profile) -> list[AdapterVersion]:
    """Every version, newest first."""
    with profile.store.read() as session:
        return [_version(profile, a)
                for a in session.scalars(select(Adapter).order_by(Adapter.id.desc()))]


def find(profile, version: str) -> AdapterVersion:
    with profile.store.read() as session:
        return _version(profile, version_row(session, version))


def active(profile) -> AdapterVersion | None:
    with profile.store.read() as session:
        row = active_adapter(session)
        return _version(profile, row) if row is not None else None


def version_row(session, version: str) -> Adapter:
    """Version `version`'s row; AdapterError naming the versions there are otherwise."""
    row = session.scalar(select(Adapter).where(Adapter.version == version))
    if row is None:
        known = ", ".join(session.scalars(select(Adapter.version).order_by(Adapter.id))) or "none"
        raise AdapterError(f"no adapter version {version!r} (versions: {known})")
    return row


def activate(profile, version: str) -> AdapterVersion:
    with profile.store.write() as session:
        row = version_row(session, version)
        _refuse_missing_files(profile, row)
        make_active(session, row)
        return _version(profile, row)


def _refuse_missing_files(profile, row: Adapter) -> None:
    if not (version_folder(profile.folder, row) / GGUF_FILE).is_file():
        raise AdapterError(f"adapter {row.version} has no {GGUF_FILE}; its files are missing")


def deactivate(profile) -> None:
    """Chat with the bare base model; the versions stay."""
    with profile.store.write() as session:
        make_active(session, None)


def rollback(profile) -> AdapterVersion:
    """Go back to the adapter that was active before the current one."""
    with profile.store.write() as session:
        current = active_adapter(session)
        if current is None:
            raise AdapterError("no adapter is active, so there is nothing to roll back")
        previous = session.scalar(
            select(Adapter).where(Adapter.id != current.id, Adapter.activated_at.is_not(None))
            .order_by(Adapter.activated_at.desc(), Adapter.id.desc()).limit(1))
        if previous is None:
            raise AdapterError(f"nothing earlier than {current.version} to roll back to "
                               "(each rollback goes one step back through the adapters that "
                               "were active)")
        _refuse_missing_files(profile, previous)
        current.activated_at = None
        make_active(session, previous, when=previous.activated_at)
        return _version(profile, previous)


def delete(profile, version: str) -> None:
    """Delete an inactive version: its row, its document links, then its files."""
    with profile.store.write() as session:
        row = version_row(session, version)
        if row.is_active:
            raise AdapterError(f"{version} is active: activate another or roll back first")
        folder = version_folder(profile.folder, row)
        session.query(AdapterDocument).filter_by(adapter_id=row.id).delete()
        session.delete(row)
    remove_tree(folder)  # a kill before it leaves the folder to the sweep at the next open


def adapter_gguf_damage(version: AdapterVersion) -> str | None:
    """What is wrong with the version's adapter.gguf (damaged, gone), or None if whole."""
    from oppu.trainer.gguf_file import GGUFFormatError, read_header

    try:
        read_header(version.gguf_path)
    except GGUFFormatError as error:
        return str(error)
    except OSError as error:
        return error.strerror or str(error)
    return None


def rewrite_adapter_gguf(version: AdapterVersion, base_path: Path) -> None:
    """Write the version's adapter.gguf again from its `peft/` (the weights as trained),
    for `base_path`, the base it was trained on."""
    from oppu.trainer.gguf_adapter import write_adapter_gguf

    write_adapter_gguf(version.peft_dir, base_path, version.gguf_path,
                       base_sha256=version.base_sha256)


def restore_merged_copy(profile, version: str, report: Report = ignore) -> bool:
    """Write `version`'s merged copy again if it has none, so that chat serves it at full
    speed once more: only the latest versions keep theirs (`drop_old_merged_copies`), so
    activating an older one, or rolling back far enough, finds it gone. Takes about as long
    as the merge after training (11 s for the bundled model). False when the profile's base
    is not the one the adapter was made for, or the copy cannot be written; chat then
    attaches the adapter, as it does meanwhile."""
    from oppu.core.chat import base_sha256
    from oppu.trainer.base_models import resolve_base
    from oppu.trainer.prepare import BaseModelError

    with profile.store.read() as session:
        row = version_row(session, version)
        folder, made_for = version_folder(profile.folder, row), row.base_sha256
    if (folder / MERGED_FILE).is_file():
        return True
    try:
        base = resolve_base(profile.settings.base_model)
        if base_sha256(base) != made_for:
            return False
    except (BaseModelError, OSError):
        return False
    if not write_merged_copy(folder, base, lambda done, total, tensor: report(
            Progress("merge", done, total, message=tensor))):
        return False
    with profile.store.write() as session:
        drop_old_merged_copies(session, profile.adapters_dir, version)
    return True
