"""Downloading a base GGUF, against a loopback stand-in for the Hugging Face hub.

The stand-in answers the hub's two requests: HEAD on /<repo>/resolve/<rev>/<file> (size,
commit, LFS sha256 as ETag) and GET with Range. huggingface-hub, pointed at it through
HF_ENDPOINT, does the real work, in the real child process.
"""

import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from oppu.core.bases import DownloadFailed, download_base
from oppu.core.progress import Stopped
from oppu.trainer.base_models import HubModel
from oppu.trainer.download import DownloadError, download_model

REPO, FILENAME = "oppu-tests/tiny-GGUF", "tiny-llama.gguf"
PAUSE_AFTER = 11 * 1024 * 1024  # past huggingface-hub's 10 MiB read chunk, so one lands


class HubStandIn:
    def __init__(self, payload: bytes, served: bytes | None = None):
        self.payload = payload
        self.served = served if served is not None else payload
        self.sha256 = hashlib.sha256(payload).hexdigest()
        self.ranges: list[str | None] = []
        self.pause_after: int | None = None
        self.fail_head: int | None = None  # answer HEAD, or GET, with this error status
        self.fail_get: int | None = None
        self.release = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def fail(self, status: int):
                body = b"an error page\nof several lines"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                if self.path != f"/{REPO}/resolve/main/{FILENAME}":
                    self.send_error(404)
                    return
                if stand_in.fail_head:
                    self.fail(stand_in.fail_head)
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", "0" * 40)
                self.send_header("ETag", f'"{stand_in.sha256}"')
                self.send_header("Content-Length", str(len(stand_in.payload)))
                self.end_headers()

            def do_GET(self):
                requested = self.headers.get("Range")
                stand_in.ranges.append(requested)
                if stand_in.fail_get:
                    self.fail(stand_in.fail_get)
                    return
                start = int(requested.split("=")[1].split("-")[0]) if requested else 0
                body = stand_in.served[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(stand_in.served) - 1}/"
                                     f"{len(stand_in.served)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                pause, stand_in.pause_after = stand_in.pause_after, None
                if pause is not None:  # a stalled transfer: part of it, then nothing
                    self.wfile.write(body[:pause])
                    self.wfile.flush()
                    stand_in.release.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def payload(tiny_gguf) -> bytes:
    data = tiny_gguf.read_bytes()
    assert len(data) > PAUSE_AFTER
    return data


@pytest.fixture
def hub(payload, monkeypatch):
    stand_in = HubStandIn(payload)
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    yield stand_in
    stand_in.close()


def model(sha256: str | None = None) -> HubModel:
    return HubModel("tiny", REPO, FILENAME, 15, "llama", "tiny test model", sha256)


def test_download_is_verified_placed_and_reported(hub, payload, tmp_path):
    seen = []
    path = download_base(model(), seen.append, dest=tmp_path)
    assert path == tmp_path / FILENAME
    assert path.read_bytes() == payload
    assert not list(tmp_path.glob("*.part*"))
    downloads = [p for p in seen if p.phase == "download"]
    assert downloads[0].total == len(payload)
    assert seen[-1].phase == "verify" and seen[-1].done == seen[-1].total


def test_this_process_stays_offline(hub, tmp_path):
    with pytest.raises(DownloadError, match="offline mode"):
        download_model(model(), tmp_path, lambda _e: None)
    assert hub.ranges == []


def test_child_download_resumes_after_an_interrupted_transfer(hub, payload, tmp_path):
    hub.pause_after = PAUSE_AFTER
    seen = []
    with pytest.raises(Stopped, match="resumes next time"):
        download_base(model(), seen.append, lambda: any(p.done > 0 for p in seen), tmp_path)
    part = tmp_path / f"{FILENAME}.part"
    fetched = part.stat().st_size
    assert 0 < fetched < len(payload)
    assert payload.startswith(part.read_bytes())
    hub.release.set()

    path = download_base(model(), dest=tmp_path)
    assert path.read_bytes() == payload
    assert hub.ranges == [None, f"bytes={fetched}-"]
    assert not part.exists()
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # only the child was allowed online


def test_a_corrupt_transfer_is_refused_and_discarded(payload, tmp_path, monkeypatch):
    corrupt = bytearray(payload)
    corrupt[len(corrupt) // 2] ^= 0xFF
    hub = HubStandIn(payload, served=bytes(corrupt))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        with pytest.raises(DownloadFailed, match="sha256 mismatch"):
            download_base(model(), dest=tmp_path)
    finally:
        hub.close()
    assert not (tmp_path / FILENAME).exists()
    assert not (tmp_path / f"{FILENAME}.part").exists()


def test_a_hub_file_other_than_the_known_version_is_refused(hub, tmp_path):
    with pytest.raises(DownloadFailed, match="not the known version"):
        download_base(model(sha256="1" * 64), dest=tmp_path)
    assert hub.ranges == []


@pytest.mark.parametrize("request_kind, status, reason", [
    ("head", 404, "404 Not Found"), ("head", 500, "500 Internal Server Error"),
    ("get", 500, "500 Internal Server Error"), ("get", 403, "403 Forbidden")])
def test_a_refusing_hub_is_one_line_and_keeps_the_app_offline(hub, tmp_path, request_kind,
                                                               status, reason):
    setattr(hub, f"fail_{request_kind}", status)
    with pytest.raises(DownloadFailed) as raised:
        download_base(model(), dest=tmp_path)
    message = str(raised.value)
    assert "\n" not in message and message.endswith(f"the hub answered {reason}")
    assert f"{REPO}/{FILENAME}" in message or FILENAME in message
    assert not (tmp_path / FILENAME).exists()
    assert os.environ["HF_HUB_OFFLINE"] == "1"

    setattr(hub, f"fail_{request_kind}", None)  # the hub is back: the next try succeeds
    assert download_base(model(), dest=tmp_path).read_bytes() == hub.payload


def test_a_transfer_cut_short_says_it_resumes(payload, tmp_path, monkeypatch):
    hub = HubStandIn(payload, served=payload[:PAUSE_AFTER])  # the connection ends early
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        with pytest.raises(DownloadFailed) as raised:
            download_base(model(), dest=tmp_path)
    finally:
        hub.close()
    assert "\n" not in str(raised.value)
    assert str(raised.value).endswith("run the download again to resume")
    assert (tmp_path / f"{FILENAME}.part").stat().st_size == PAUSE_AFTER


def test_a_verified_file_that_is_no_usable_base_is_not_kept(tmp_path, monkeypatch):
    import gguf

    adapter = tmp_path / "adapter.gguf"  # the hub serves a LoRA adapter under the model's name
    writer = gguf.GGUFWriter(str(adapter), "llama")
    writer.add_type("adapter")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    hub = HubStandIn(adapter.read_bytes())
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    dest = tmp_path / "models"
    dest.mkdir()
    try:
        with pytest.raises(DownloadFailed, match="is an adapter file .*discarded"):
            download_base(model(), dest=dest)
    finally:
        hub.close()
    assert not (dest / FILENAME).exists() and not list(dest.glob("*.part*"))


def test_a_failure_to_save_is_one_line_from_the_child(hub, tmp_path):
    (tmp_path / f"{FILENAME}.part.json").mkdir()  # in the way of the resume record
    with pytest.raises(DownloadFailed, match=f"cannot save {FILENAME}: .*Is a directory"):
        download_base(model(), dest=tmp_path)


def test_a_second_download_of_the_same_file_waits_its_turn(hub, payload, tmp_path):
    """Two downloads of one model at once (the app and `oppu base download`) would write
    into one part file: the second is refused while the first runs, which then finishes."""
    hub.pause_after = PAUSE_AFTER
    seen = []
    first = threading.Thread(target=lambda: seen.append(
        download_base(model(), seen.append, dest=tmp_path)))
    first.start()
    try:
        while not any(getattr(p, "done", 0) > 0 for p in seen) and first.is_alive():
            threading.Event().wait(0.05)
        with pytest.raises(DownloadFailed, match="already being downloaded"):
            download_base(model(), dest=tmp_path)
    finally:
        hub.release.set()
        first.join(timeout=60)
    assert seen[-1] == tmp_path / FILENAME and seen[-1].read_bytes() == payload
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]


def test_a_lock_whose_file_was_removed_meanwhile_is_taken_again(tmp_path, monkeypatch):
    """The download before may remove the lock file between this one opening and locking
    it: that lock guards nothing, so the file is opened and locked again by its name."""
    import fcntl

    from oppu.trainer import download

    final = tmp_path / FILENAME
    lock = tmp_path / f"{FILENAME}.lock"
    real_flock, locked = fcntl.flock, []

    def flock(handle, operation):
        if not locked:
            lock.unlink()  # the last holder cleaning up, just before this lock is taken
        real_flock(handle, operation)
        locked.append(os.fstat(handle.fileno()).st_ino)

    monkeypatch.setattr(download.fcntl, "flock", flock)
    with download._only_download_of(final):
        assert len(locked) == 2 and os.stat(lock).st_ino == locked[-1]
    assert not lock.exists()
