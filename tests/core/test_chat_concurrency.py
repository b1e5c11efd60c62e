"""Chat in this process while a training child writes to the same SQLite file."""

import subprocess
import sys
import time

from sqlalchemy import func, select

from oppu.core.chat import ChatOptions, ChatSession, Models
from oppu.engine.chat import Sampling
from oppu.storage.models import Message, TrainingRun

# What a training child does to the store: short write transactions, over and over.
TRAINER = """
import sys, time
from pathlib import Path
from oppu.storage.db import Store
from oppu.storage.models import TrainingRun
store = Store(Path(sys.argv[1]))
stop = Path(sys.argv[2])
with store.write() as s:
    run = TrainingRun(status="running", config={"preset": "quick"})
    s.add(run)
    s.flush()
    run_id = run.id
written = 1
while not stop.exists():
    with store.write() as s:
        s.get(TrainingRun, run_id).loss_curve = [1.0 / (i + 1) for i in range(written)]
        s.add(TrainingRun(status="queued"))
    written += 1
print(written, flush=True)
"""


def test_chat_and_a_training_child_write_the_same_store(profile, tiny_gguf, tmp_path):
    profile.set("base_model", str(tiny_gguf))
    profile.set("context_tokens", 512)
    profile.writing.add_note("I water the tomatoes every evening.", "Garden")
    stop_file = tmp_path / "stop"
    child = subprocess.Popen([sys.executable, "-c", TRAINER, str(profile.store.path),
                              str(stop_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    models = Models(n_threads=1)
    try:
        while _runs(profile) == 0:  # the child is writing before the chat starts
            assert child.poll() is None, child.stderr.read()
            time.sleep(0.05)
        chat = ChatSession(profile, models, ChatOptions(sampling=Sampling.greedy(8)))
        before = _runs(profile)
        replies = [chat.send(f"How are the tomatoes today, day {day}?") for day in range(4)]
        after = _runs(profile)
    finally:
        stop_file.touch()
        out, err = child.communicate(timeout=60)
        models.close()
    assert child.returncode == 0, err
    assert "locked" not in err
    written = int(out.split()[-1])
    assert after > before  # the child kept writing while the chat wrote
    with profile.store.read() as s:
        assert s.scalar(select(func.count(TrainingRun.id))) == written
        assert s.scalar(select(func.count(Message.id))) == 8
        run = s.get(TrainingRun, 1)
        assert len(run.loss_curve) == written - 1
    assert all(r.sources for r in replies)


def _runs(profile) -> int:
    with profile.store.read() as s:
        return s.scalar(select(func.count(TrainingRun.id)))
