"""Downloading a curated base GGUF from the Hugging Face hub: resumable, sha256-verified.

This is the app's only network use. It runs in a child process
(`python -m oppu.trainer download KEY`) whose environment alone lifts the offline guard.
huggingface-hub resolves the file (its size, LFS sha256 and final location) and streams
the bytes; they go to `<name>.part` next to the destination, so a transfer cut short (the
app closed, the network gone, the process killed) resumes where it stopped. We do not use
`hf_hub_download` for the transfer itself: it discards partial files, so it cannot resume
across processes.
"""

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.client import responses
from pathlib import Path

from oppu.trainer.base_models import HubModel, validate_gguf
from oppu.trainer.prepare import BaseModelError, one_line, sha256_file

SHA256 = re.compile(r"^[0-9a-f]{64}$")
REPORT_EVERY_S = 0.25

Emit = Callable[[dict], None]


class DownloadError(Exception):
    """A download that cannot finish: unreachable, refused, or not the expected file."""


@dataclass(frozen=True)
class Remote:
    url: str
    size: int | None
    sha256: str
    etag: str


def _why(error: Exception) -> str:
    """One line on why a request to the hub failed: its HTTP status when it answered."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(status, int):
        return f"the hub answered {status} {responses.get(status, '')}".rstrip()
    return one_line(error).rstrip(".")


def resolve(model: HubModel, endpoint: str | None = None) -> Remote:
    """Ask the hub what `model` is now: size, sha256 and the address to fetch it from."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(model.repo, model.filename, revision=model.revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, token=False, endpoint=endpoint)
    except Exception as error:  # noqa: BLE001 - httpx and hub errors alike: one line
        raise DownloadError(f"cannot look up {model.repo}/{model.filename} on the model hub: "
                            f"{_why(error)}") from None
    etag = (meta.etag or "").strip('"')
    sha = model.sha256 or (etag if SHA256.match(etag) else None)
    if sha is None:
        raise DownloadError(f"the hub gives no sha256 for {model.filename}: it cannot be verified")
    if model.sha256 and SHA256.match(etag) and etag != model.sha256:
        raise DownloadError(f"the hub's {model.filename} is not the known version "
                            f"(sha256 {etag[:12]}…, expected {model.sha256[:12]}…)")
    return Remote(url=meta.location or url, size=meta.size, sha256=sha, etag=etag)


class _CountingFile:
    """The part file, reporting progress as huggingface-hub writes to it."""

    def __init__(self, handle, total: int | None, emit: Emit):
        self._handle = handle
        self._total = total
        self._emit = emit
        self._last = 0.0

    def write(self, data: bytes) -> int:
        written = self._handle.write(data)
        now = time.monotonic()
        if now - self._last >= REPORT_EVERY_S:
            self._last = now
            self._emit({"phase": "download", "step": self._handle.tell(),
                        "total": self._total or 0})
        return written

    def __getattr__(self, name):  # tell, seek, truncate, flush: the real file's
        return getattr(self._handle, name)


def _resume_size(part: Path, state: Path, remote: Remote) -> int:
    """Bytes already fetched of this very file; a part of another version starts over."""
    try:
        same = json.loads(state.read_text()) == asdict(remote) | {"url": None}
    except (OSError, ValueError):
        same = False
    if not same or not part.is_file() or (remote.size and part.stat().st_size > remote.size):
        part.unlink(missing_ok=True)
        state.write_text(json.dumps(asdict(remote) | {"url": None}))  # urls are signed, vary
        return 0
    return part.stat().st_size


@contextmanager
def _only_download_of(final: Path) -> Iterator[None]:
    """Held while `final` is being fetched: two downloads of one file (two windows, the app
    and `oppu base download`) would write into the same part file."""
    lock = final.with_name(final.name + ".lock")
    while True:
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DownloadError(f"{final.name} is already being downloaded; wait for that "
                                    "download to finish") from None
            if not _still_named(lock, handle):  # the download before removed it meanwhile
                continue
            try:
                yield
            finally:
                lock.unlink(missing_ok=True)
            return


def _still_named(lock: Path, handle) -> bool:
    """Whether the file `handle` locked is still the one at `lock`: a lock taken on a file
    the last holder had just removed guards nothing, as another process can create and lock
    a new file by that name."""
    try:
        return os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def download_model(model: HubModel, dest_dir: Path, emit: Emit,
                   endpoint: str | None = None) -> Path:
    """Fetch `model` into `dest_dir`, resuming a partial file; the path once verified."""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # progress goes to `emit`, not to a tqdm bar on stderr
    final = Path(dest_dir) / model.filename
    with _only_download_of(final):
        return _fetch(model, final, emit, endpoint)


def _fetch(model: HubModel, final: Path, emit: Emit, endpoint: str | None) -> Path:
    from huggingface_hub.file_download import http_get

    part = final.with_name(final.name + ".part")
    state = final.with_name(final.name + ".part.json")
    emit({"phase": "resolve", "step": 0, "total": 1, "message": model.repo})
    remote = resolve(model, endpoint)
    if final.is_file() and sha256_file(final) == remote.sha256:
        return final
    resume = _resume_size(part, state, remote)
    emit({"phase": "download", "step": resume, "total": remote.size or 0})
    try:
        with open(part, "ab") as handle:
            http_get(remote.url, _CountingFile(handle, remote.size, emit), resume_size=resume,
                     expected_size=remote.size, displayed_filename=model.filename)
    except Exception as error:
        if not isinstance(error, OSError) and \
                not type(error).__module__.startswith(("httpx", "huggingface_hub")):
            raise
        fetched = part.stat().st_size if part.is_file() else 0
        resumes = "; run the download again to resume" if fetched else ""
        raise DownloadError(f"download of {model.filename} failed: {_why(error)}{resumes}"
                            ) from None
    emit({"phase": "verify", "step": 0, "total": 1})
    actual = sha256_file(part)
    if actual != remote.sha256:
        part.unlink(missing_ok=True)
        state.unlink(missing_ok=True)
        raise DownloadError(f"{model.filename}: sha256 mismatch (got {actual[:12]}…, expected "
                            f"{remote.sha256[:12]}…); the file was discarded")
    os.replace(part, final)
    state.unlink(missing_ok=True)
    try:
        validate_gguf(final)
    except BaseModelError as error:  # kept, it would be listed as a base to choose
        final.unlink(missing_ok=True)
        raise DownloadError(f"{error}; the download was discarded") from None
    emit({"phase": "verify", "step": 1, "total": 1})
    return final
