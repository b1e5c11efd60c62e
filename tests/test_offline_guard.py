"""Nothing leaves the machine: the app's work, from ingest to chat, runs with every
connection refused.

`python -m tests.test_offline_guard BASE STEP...` runs pipeline steps in a fresh process on
the base model GGUF `BASE`. The test starts it with tests/support/offline_site on
PYTHONPATH, so that its sitecustomize installs the guard before anything of ours (or of
chromadb, transformers, ...) is imported, in that process and in every process it starts
(the training child). Each process reports what it tried; the test asserts no attempt.
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

import pytest

from tests.support.network_guard import NetworkGuard

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_SITE = ROOT / "tests" / "support" / "offline_site"
NOTES = {
    "garden.txt": "The tomatoes split after the storm; next year I will mulch with straw.",
    "bike.md": "# Bike\n\nThe chain keeps slipping on the third gear when I climb the hill.",
    "sent.eml": "From: me@example.com\nSubject: Lighthouses\n\nI read the lighthouse book "
                "twice and then gave it to my niece.\n",
}


def ingest(profile, workdir: Path) -> dict:
    profile.set("mail_addresses", "me@example.com")
    for name, text in NOTES.items():
        (workdir / name).write_text(text, encoding="utf-8")
    results = profile.writing.add_paths([workdir])
    profile.writing.add_note("A note typed in the app about baking sourdough bread.")
    return {"statuses": [r.status for r in results], "documents": profile.writing.stats().documents}


def search(profile, _workdir: Path) -> dict:
    return {"top_title": profile.writing.search("mulching tomato beds", k=1)[0].title}


def train(profile, _workdir: Path) -> dict:
    """A real run in the trainer's child process (which converts the adapter to GGUF),
    made the active version whether or not it beat the base."""
    from oppu.core.adapters import activate
    from oppu.core.training import run_training
    from tests.support.sample_writing import add_notes
    from tests.support.training_setup import FAST

    add_notes(profile, count=12, words_each=130)
    outcome = run_training(profile, overrides=FAST)
    activate(profile, outcome.version)
    return {"status": outcome.status}


def export(profile, workdir: Path) -> dict:
    from oppu.core.adapter_files import export

    return {"exported": export(profile, format="gguf", out=workdir / "mine.gguf").name}


def chat(profile, _workdir: Path) -> dict:
    from oppu.core.chat import ChatOptions, ChatSession, Models
    from oppu.engine.chat import Sampling

    models = Models(n_threads=1)
    try:
        reply = ChatSession(profile, models, ChatOptions(sampling=Sampling.greedy(8))).send(
            "How do I keep my tomatoes from splitting?")
    finally:
        models.close()
    return {"answered_by": reply.adapter_version, "first_source": reply.sources[0].title}


# Each step gets the open profile and a scratch folder, and returns what it found as JSON.
STEPS = {"ingest": ingest, "search": search, "train": train, "export": export, "chat": chat}


def run_steps(base: str, step_names: list[str]) -> dict:
    from oppu.core.profile import Profile

    results = {}
    with tempfile.TemporaryDirectory() as scratch, Profile("offline") as profile:
        profile.set("base_model", base)
        profile.set("context_tokens", 512)
        for name in step_names:
            workdir = Path(scratch) / name
            workdir.mkdir()
            results[name] = STEPS[name](profile, workdir)
    return results


def test_ingest_to_chat_tries_no_connection(oppu_home, tiny_gguf, tmp_path):
    log = tmp_path / "attempts.jsonl"
    env = {**os.environ, "OPPU_HOME": str(oppu_home), "OPPU_OFFLINE_GUARD_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(OFFLINE_SITE), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_offline_guard", str(tiny_gguf), *STEPS],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "ingest": {"statuses": ["added", "added", "added"], "documents": 4},
        "search": {"top_title": "garden"},
        "train": {"status": "succeeded"},
        "export": {"exported": "mine.gguf"},
        "chat": {"answered_by": "v1", "first_source": "garden"},
    }
    processes = [json.loads(line) for line in log.read_text().splitlines()]
    assert any("--run" in p["argv"] for p in processes)  # the training child reported too
    assert [p["attempts"] for p in processes] == [[]] * len(processes)


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
    print(json.dumps(run_steps(sys.argv[1], sys.argv[2:])))
