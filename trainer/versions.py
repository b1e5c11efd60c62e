"""Adapter versions: `adapters/<version>/` folders and the `adapters` rows that own them.

A version folder holds `peft/` (adapter_config.json, adapter_model.safetensors),
`adapter.gguf` and `meta.json`. It appears complete or not at all (written under a
temporary name, then renamed), and its row is committed only after the rename, so a
row always points at a whole folder. Exactly one adapter, or none, is active; its
`activated_at` is the newest, which is what a rollback walks back through.
"""

import json
import re
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from oppu.storage.models import Adapter, utcnow

VERSION = re.compile(r"^v(\d+)$")
META_FILE = "meta.json"
PEFT_DIR = "peft"
GGUF_FILE = "adapter.gguf"
WORK_DIR = "adapter"  # runs/<id>/adapter/: a new version being written, before its rename


def app_version() -> str:
    try:
        return package_version("oppu-desktop")
    except PackageNotFoundError:
        return "unknown"


def next_version(session: Session, adapters_dir: Path) -> str:
    """`v<N+1>`, N the largest number in use by a row or a folder (even an orphan one)."""
    names = set(session.scalars(select(Adapter.version)))
    names.update(p.name for p in adapters_dir.iterdir() if p.is_dir())
    numbers = [int(m.group(1)) for m in map(VERSION.match, names) if m]
    return f"v{max(numbers, default=0) + 1}"


def write_meta(folder: Path, meta: dict) -> None:
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


def read_meta(folder: Path) -> dict:
    """The version's meta.json, or {} when it is missing or unreadable."""
    try:
        return json.loads((Path(folder) / META_FILE).read_text())
    except (OSError, ValueError):
        return {}


def active_adapter(session: Session) -> Adapter | None:
    return session.scalar(select(Adapter).where(Adapter.is_active.is_(True)))


def make_active(session: Session, adapter: Adapter | None, when: datetime | None = None) -> None:
    """Make `adapter` the only active one (None: the bare base model)."""
    session.execute(update(Adapter).where(Adapter.is_active.is_(True)).values(is_active=False))
    if adapter is not None:
        adapter.is_active = True
        adapter.activated_at = when or utcnow()
    session.flush()
