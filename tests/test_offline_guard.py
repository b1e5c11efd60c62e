"""Nothing leaves the machine: the app's work runs with every connection refused.

`python -m tests.test_offline_guard STEP...` runs pipeline steps in a fresh process with
the guard installed before anything of ours (or of chromadb, transformers, ...) is
imported, and prints what was tried as JSON. The test runs it and asserts no attempt.
To guard more of the pipeline, add a step function to STEPS and its name to the test.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Self

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTES = {
    "garden.txt": "The tomatoes split after the storm; next year I will mulch with straw.",
    "bike.md": "# Bike\n\nThe chain keeps slipping on the third gear when I climb the hill.",
    "sent.eml": "From: me@example.com\nSubject: Lighthouses\n\nI read the lighthouse book "
                "twice and then gave it to my niece.\n",
}


class NetworkGuard:
    """Refuses every connection and name lookup made through Python, recording each try."""

    def __init__(self):
        self.attempts: list[str] = []
        self._saved = {}

    def _refuse(self, what: str):
        def refuse(*args, **_kwargs):
            self.attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
            raise ConnectionRefusedError(f"offline guard: {what} refused")

        return refuse

    def __enter__(self) -> Self:
        targets = [(socket.socket, "connect"), (socket.socket, "connect_ex"),
                   (socket, "create_connection"), (socket, "getaddrinfo"),
                   (socket, "gethostbyname"), (socket, "gethostbyname_ex")]
        for owner, name in targets:
            self._saved[owner, name] = getattr(owner, name)
            label = f"socket.{name}" if owner is socket.socket else name
            setattr(owner, name, self._refuse(label))
        return self

    def __exit__(self, *_exc) -> None:
        for (owner, name), original in self._saved.items():
            setattr(owner, name, original)


def ingest(profile, workdir: Path) -> dict:
    profile.set("mail_addresses", "me@example.com")
    for name, text in NOTES.items():
        (workdir / name).write_text(text, encoding="utf-8")
    results = profile.writing.add_paths([workdir])
    profile.writing.add_note("A note typed in the app about baking sourdough bread.")
    return {"statuses": [r.status for r in results], "documents": profile.writing.stats().documents}


def search(profile, _workdir: Path) -> dict:
    return {"top_title": profile.writing.search("mulching tomato beds", k=1)[0].title}


# Each step gets the open profile and a scratch folder, and returns what it found as JSON.
STEPS = {"ingest": ingest, "search": search}


def run_guarded(step_names: list[str]) -> dict:
    with NetworkGuard() as guard:
        from oppu.core.profile import Profile

        results = {}
        with tempfile.TemporaryDirectory() as scratch, Profile("offline") as profile:
            for name in step_names:
                workdir = Path(scratch) / name
                workdir.mkdir()
                results[name] = STEPS[name](profile, workdir)
    return {"attempts": guard.attempts, "results": results}


def test_ingest_and_search_try_no_connection(oppu_home):
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_offline_guard", "ingest", "search"],
        cwd=ROOT, env={**os.environ, "OPPU_HOME": str(oppu_home)},
        capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["attempts"] == []
    assert outcome["results"] == {
        "ingest": {"statuses": ["added", "added", "added"], "documents": 4},
        "search": {"top_title": "garden"},
    }


def test_the_guard_refuses_and_records_connections():
    original = socket.create_connection
    with NetworkGuard() as guard:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        with pytest.raises(ConnectionRefusedError), socket.socket() as raw:
            raw.connect(("127.0.0.1", 9))
        with pytest.raises(ConnectionRefusedError):
            socket.getaddrinfo("example.invalid", 80)
        with pytest.raises(OSError):
            urllib.request.urlopen("http://example.invalid/", timeout=1)
    assert guard.attempts[:3] == ["create_connection(('127.0.0.1', 9),)",
                                  "socket.connect(('127.0.0.1', 9),)",
                                  "getaddrinfo('example.invalid', 80)"]
    assert "example.invalid" in guard.attempts[3]
    assert socket.create_connection is original  # restored on exit


if __name__ == "__main__":
    print(json.dumps(run_guarded(sys.argv[1:])))
