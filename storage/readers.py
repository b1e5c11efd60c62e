"""Turning a file on disk into the texts it holds, or a typed error that says why not."""

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from oppu.storage import mail
from oppu.storage.disk_space import human_size
from oppu.storage.documents import read_word_document
from oppu.storage.encoding import decode, is_blank, looks_binary
from oppu.storage.errors import (
    BinaryFile,
    EmptyInput,
    FileTooLarge,
    IngestError,
    MailAddressNotSet,
    UnreadablePath,
    UnsupportedType,
)
from oppu.storage.file_types import (
    HTML_SUFFIXES,
    MAIL_SUFFIXES,
    MARKDOWN_SUFFIXES,
    SUPPORTED_NAMES,
    SUPPORTED_SUFFIXES,
    WORD_SUFFIXES,
)
from oppu.storage.headings import heading_title
from oppu.storage.html_text import declared_charset, html_document
from oppu.storage.paths import data_root_path, file_problem

DEFAULT_MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class FileText:
    title: str
    text: str
    origin: str


@dataclass
class FileContents:
    texts: list[FileText]
    warnings: list[str] = field(default_factory=list)


def _check_file(path: Path, max_bytes: int) -> int:
    problem, info = file_problem(path)
    if problem:
        raise UnreadablePath(path, problem)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UnsupportedType(
            path, f"unsupported file type {path.suffix or '(none)'!r}: use "
                  f"{', '.join(SUPPORTED_NAMES[:-1])} or {SUPPORTED_NAMES[-1]}")
    if not os.access(path, os.R_OK):
        raise UnreadablePath(path, "permission denied")
    if info.st_size == 0:
        raise EmptyInput(path, "empty file")
    if info.st_size > max_bytes:
        raise FileTooLarge(path, f"file is {human_size(info.st_size)}, over the "
                                 f"{human_size(max_bytes)} limit")
    return info.st_size


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES,
              mail_addresses: set[str] | frozenset[str] = frozenset()) -> FileContents:
    """The texts in one file, or an `IngestError` subclass saying in one line why not."""
    path = Path(path)
    _check_file(path, max_bytes)
    try:
        return _read_checked(path, max_bytes, {a.lower() for a in mail_addresses})
    except OSError as error:
        raise UnreadablePath(path, f"cannot read: {error.strerror or error}") from error


def path_text(path: Path | str) -> str:
    """The path as text to store and show. A name that is not UTF-8 (an old disk's Latin-1
    "café.txt") arrives as surrogate escapes, which SQLite and the terminal refuse: its
    bytes are decoded as a file's contents are."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return decode(os.fsencode(text))[0]
    return text


def _read_checked(path: Path, max_bytes: int, mail_addresses: set[str]) -> FileContents:
    suffix = path.suffix.lower()
    if suffix in WORD_SUFFIXES:  # zip archives: binary by nature
        title, text = read_word_document(path, max_bytes)
        return _one_text(path, title, text, warnings=[])
    with path.open("rb") as handle:
        head = handle.read(8192)
    if looks_binary(head):
        raise BinaryFile(path, "binary file, not text")
    if suffix in MAIL_SUFFIXES:
        if not mail_addresses:
            raise MailAddressNotSet(
                path, "set your own email address first (Settings → Your email addresses, or "
                "`oppu config mail_addresses YOU@HOST`), "
                "so only mail you wrote is imported")
        reader = mail.read_eml if suffix == ".eml" else mail.read_mbox
        messages = reader(path, mail_addresses)
        texts = [FileText(m.title, m.text, f"{path_text(path.absolute())}#{m.message_id or i}")
                 for i, m in enumerate(messages) if not is_blank(m.text)]
        if not texts:
            raise EmptyInput(path, mail.why_nothing_imported(messages))
        return FileContents(texts, mail.damaged_note(messages))
    data = path.read_bytes()
    if looks_binary(data):  # the start was text, the rest is not
        raise BinaryFile(path, "binary file, not text")
    text, warning = decode(data, declared_charset(data) if suffix in HTML_SUFFIXES else None)
    title = ""
    if suffix in HTML_SUFFIXES:
        title, text = html_document(text)
    elif suffix in MARKDOWN_SUFFIXES:
        title = heading_title(text)
    return _one_text(path, title, text, [warning] if warning else [])


def _one_text(path: Path, title: str, text: str, warnings: list[str]) -> FileContents:
    """The file as one document, titled by its own title or else by its name."""
    if is_blank(text):
        raise EmptyInput(path, "no text in this file: only whitespace or invisible characters")
    return FileContents([FileText(title or path_text(path.stem), text,
                                  path_text(path.absolute()))], warnings)


def walk(paths: list[Path]) -> list[Path]:
    """Files under `paths`, folders expanded recursively in a stable order; hidden ones skipped.

    Linked folders are followed, each real folder once (a link back up does not loop). The
    app's own data folder is never walked into: its files are not the user's writing. A
    folder that yields no files, or cannot be opened, is listed itself, to be reported (see
    `folder_problem`).
    """
    found = []
    for path in map(Path, paths):
        found += (_files_in(path) or [path]) if _is_folder(path) else [path]
    return found


def _files_in(folder: Path) -> list[Path]:
    """The files under `folder`, and any folder below it that could not be listed."""
    found: list[Path] = []
    unlisted = found.append
    data = os.path.realpath(data_root_path())
    top = os.path.realpath(folder)
    seen: set[str] = set()

    def new_folder(path: str) -> bool:
        """Not walked yet, not the app's data, and not a link up to a folder above `folder`
        (which would bring in its siblings, or the whole disk for a link to /)."""
        real = os.path.realpath(path)
        if (real in seen or real == data or real.startswith(data + os.sep)
                or (real != top and top.startswith(real.rstrip(os.sep) + os.sep))):
            return False
        seen.add(real)
        return True

    if not new_folder(folder):
        return []
    for root, dirs, files in os.walk(folder, followlinks=True,
                                     onerror=lambda error: unlisted(Path(error.filename))):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and new_folder(os.path.join(root, d)))
        found.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return found


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except OSError:
        return False  # reading it as a file says why it cannot be read


def folder_problem(path: Path) -> IngestError | None:
    """Why a folder that `walk` listed itself yields nothing; None if `path` is no folder."""
    if not _is_folder(path):
        return None
    if os.path.realpath(path) == os.path.realpath(data_root_path()):
        return UnreadablePath(path, "this is OPPU's own data folder, not your writing")
    if not os.access(path, os.R_OK | os.X_OK):
        return UnreadablePath(path, "cannot open this folder: permission denied")
    if any(path.rglob(".*")):
        return EmptyInput(path, "no files in this folder but hidden ones (names starting with "
                                "'.'), which are skipped")
    return EmptyInput(path, "no files in this folder")
