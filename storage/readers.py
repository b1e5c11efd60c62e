"""Turning a file on disk into the texts it holds, or a typed error that says why not."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from oppu.storage import mail
from oppu.storage.errors import (
    BinaryFile,
    EmptyInput,
    FileTooLarge,
    IngestError,
    UnreadablePath,
    UnsupportedType,
)

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
MAIL_SUFFIXES = {".eml", ".mbox"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | MAIL_SUFFIXES


@dataclass(frozen=True)
class FileText:
    title: str
    text: str
    origin: str


@dataclass
class FileContents:
    texts: list[FileText]
    warnings: list[str] = field(default_factory=list)


def looks_binary(head: bytes) -> bool:
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    return bool(head) and control / len(head) > 0.1


def decode(data: bytes) -> tuple[str, int]:
    """Text from bytes, and how many bytes could not be decoded (replaced by U+FFFD)."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(codec, errors="replace"), 0
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - data.count("\ufffd".encode())


def _check_file(path: Path, max_bytes: int) -> int:
    if not path.exists():
        raise UnreadablePath(path, "no such file")
    if not path.is_file():
        raise UnreadablePath(path, "not a regular file")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UnsupportedType(
            path, f"unsupported file type {path.suffix or '(none)'!r}: use .txt, .md, .eml or .mbox"
        )
    if not os.access(path, os.R_OK):
        raise UnreadablePath(path, "permission denied")
    size = path.stat().st_size
    if size == 0:
        raise EmptyInput(path, "empty file")
    if size > max_bytes:
        raise FileTooLarge(
            path, f"file is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit"
        )
    return size


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES,
              mail_addresses: set[str] | frozenset[str] = frozenset()) -> FileContents:
    path = Path(path)
    _check_file(path, max_bytes)
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError as error:
        raise UnreadablePath(path, f"cannot read: {error.strerror or error}") from error
    if looks_binary(head):
        raise BinaryFile(path, "binary file, not text")
    suffix = path.suffix.lower()
    if suffix in MAIL_SUFFIXES:
        if not mail_addresses:
            raise IngestError(
                path, "set your own email address first, so only mail you wrote is imported"
            )
        reader = mail.read_eml if suffix == ".eml" else mail.read_mbox
        messages = reader(path, {a.lower() for a in mail_addresses})
        texts = [FileText(m.title, m.text, f"{path}#{m.message_id or i}")
                 for i, m in enumerate(messages) if m.text.strip()]
        if not texts:
            raise EmptyInput(path, "no mail sent by you with text of your own")
        return FileContents(texts)
    try:
        text, replaced = decode(path.read_bytes())
    except OSError as error:
        raise UnreadablePath(path, f"cannot read: {error.strerror or error}") from error
    if not text.strip():
        raise EmptyInput(path, "file holds only whitespace")
    warnings = [f"{replaced} undecodable bytes replaced (file is not valid UTF-8)"] if replaced else []
    return FileContents([FileText(path.stem, text, str(path))], warnings)


def walk(paths: list[Path]) -> list[Path]:
    """Files under `paths`, folders expanded recursively in a stable order; hidden ones skipped."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
        else:
            found.append(path)
    return found
