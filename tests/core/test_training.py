"""Training runs through core: stop requests, kill -9, the promotion gate, clear failures,
recovery on open, and the command line."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from oppu.core.adapters import active, list_adapters
from oppu.core.cli import main
from oppu.core.profile import Profile
from oppu.core.training import (
    INTERRUPTED,
    TrainingBusy,
    recent_runs,
    run_training,
    training_argv,
)
from oppu.storage.models import Adapter, AdapterDocument, TrainingRun, utcnow
from oppu.trainer.config import PRESETS, NotEnoughWriting
from oppu.trainer.versions import GGUF_FILE, MERGED_FILE, WORK_DIR, recorded_path, write_meta
from tests.support.processes import dead_pid
from tests.support.sample_writing import add_notes
from tests.support.training_setup import (  # noqa: F401 - fixtures
    FAST,
    base_cache_fixture,
    start_run,
    trainee_fixture,
    writing_template_fixture,
)


def add_active_adapter(profile) -> dict:
    """An active version for another base (so the gate does not evaluate it); its bytes."""
    folder = profile.adapters_dir / "v1"
    (folder / "peft").mkdir(parents=True)
    (folder / GGUF_FILE).write_bytes(b"GGUF adapter bytes")
    (folder / "peft" / "adapter_model.safetensors").write_bytes(b"weights")
    with profile.store.write() as session:
        session.add(Adapter(version="v1", path=recorded_path(profile.folder, folder),
                            base_sha256="f" * 64,
                            is_active=True, activated_at=utcnow()))
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_unchanged(profile, files: dict) -> None:
    assert active(profile).version == "v1"
    assert [v.version for v in list_adapters(profile)] == ["v1"]
    assert [p.name for p in profile.adapters_dir.iterdir()] == ["v1"]
    assert {p: p.read_bytes() for p in files} == files


def test_a_stop_request_cancels_and_changes_nothing(trainee):
    files = add_active_adapter(trainee)
    seen = []
    outcome = run_training(trainee, seen.append,
                           lambda: any(p.phase == "train" for p in seen),
                           {**FAST, "max_steps": 500})
    assert outcome.status == "cancelled" and outcome.error is None
    assert "stopped; nothing changed" in outcome.summary
    assert_unchanged(trainee, files)
    assert not (trainee.runs_dir / str(outcome.run_id) / "stop").exists()


@pytest.mark.parametrize("phase", ["train", "save"])
def test_kill_9_at_any_moment_leaves_the_store_intact(trainee, phase):
    files = add_active_adapter(trainee)
    run_id, child = start_run(trainee, FAST)
    for line in child.stdout:
        if json.loads(line).get("phase") == phase:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    with trainee.store.read() as session:
        left = session.get(TrainingRun, run_id).status
    assert left in ("running", "succeeded")  # as the kill left it, until the next open:

    with Profile(trainee.name, embedder=trainee.index.embedder) as reopened:
        with reopened.store.read() as session:
            run = session.get(TrainingRun, run_id)
        if run.status == "succeeded":  # the kill came after the commit: all of it is there
            assert {p.name for p in reopened.adapters_dir.iterdir()} == {"v1", "v2"}
            assert (reopened.adapters_dir / "v2" / GGUF_FILE).is_file()
        else:
            assert run.status == "failed" and run.error == INTERRUPTED
            assert_unchanged(reopened, files)


def test_a_child_killed_while_saving_leaves_no_work_files(trainee):
    """Through `run_training` (and the app's `settle_run`), not only on the next open."""
    files = add_active_adapter(trainee)

    def kill_when_saving(progress) -> None:
        if progress.phase == "save":
            with trainee.store.read() as session:
                pid = session.scalar(select(TrainingRun.pid).where(TrainingRun.status == "running"))
            os.kill(pid, signal.SIGKILL)

    outcome = run_training(trainee, kill_when_saving, overrides=FAST)
    assert outcome.status == "failed" and "killed by signal 9" in outcome.error
    assert not (trainee.runs_dir / str(outcome.run_id) / WORK_DIR).exists()
    assert_unchanged(trainee, files)
    assert run_training(trainee, overrides=FAST).version == "v2"


def test_the_gate_keeps_a_better_adapter_and_rollback_restores_it(trainee, capsys):
    strong = run_training(trainee, overrides={**FAST, "max_steps": 8, "learning_rate": 3e-3})
    assert strong.promoted, strong.decision
    first = active(trainee)
    assert first is not None and first.version == "v1"
    assert first.metrics["new"]["loss"] < first.metrics["base"]["loss"]

    frozen = run_training(trainee, overrides={**FAST, "max_steps": 1, "learning_rate": 1e-9})
    assert frozen.status == "succeeded" and not frozen.promoted
    assert frozen.decision.startswith("not promoted: held-out perplexity")
    assert frozen.metrics["active_version"] == "v1"
    assert active(trainee).version == "v1"

    (trainee.adapters_dir / "v2" / MERGED_FILE).unlink()  # dropped as older versions' are
    assert main(["--profile", trainee.name, "activate", "v2"]) == 0
    assert (trainee.adapters_dir / "v2" / MERGED_FILE).is_file()  # written again for chat
    assert main(["--profile", trainee.name, "rollback"]) == 0
    assert active(trainee).version == "v1"
    assert main(["--profile", trainee.name, "adapters"]) == 0
    out = capsys.readouterr().out
    assert "* v1" in out and "  v2" in out and "rolled back: v1 is active again" in out
    assert f" {first.perplexity():.2f} {first.perplexity('base'):.2f} " in out
    assert main(["--profile", trainee.name, "train", "--if-due"]) == 0
    assert "not due: 0 new words" in capsys.readouterr().out


@pytest.mark.parametrize("notes", [0, 2])
def test_too_little_writing_is_refused_before_a_run_starts(profile, tiny_gguf, notes, capsys):
    profile.set("base_model", str(tiny_gguf))
    add_notes(profile, count=notes, words_each=40)
    words, needed = profile.writing.stats().words, PRESETS["balanced"].min_words
    with pytest.raises(NotEnoughWriting) as refused:
        run_training(profile, overrides=FAST)
    assert (refused.value.words, refused.value.needed) == (words, needed)
    message = (f"not enough writing yet: {words:,} words, and a model needs at least "
               f"{needed:,}; add notes or import files first")
    assert str(refused.value) == message
    assert main(["--profile", profile.name, "train"]) == 1  # one line, no traceback
    assert capsys.readouterr().err == f"oppu: {message}\n"
    assert recent_runs(profile) == [] and list_adapters(profile) == []


def test_two_runs_asked_for_at_once_make_one(trainee, monkeypatch):
    """The check for a live run and the new run's row share one write lock."""
    import contextlib
    import threading
    import time

    from oppu.core.training import create_run

    recorded, real_write = threading.Event(), trainee.store.write

    @contextlib.contextmanager
    def slow_write():  # the first run's row is written, its lock held a while before commit
        with real_write() as session:
            yield session
            recorded.set()
            time.sleep(0.5)

    monkeypatch.setattr(trainee.store, "write", slow_write)
    first = threading.Thread(target=create_run, args=(trainee,))
    first.start()
    assert recorded.wait(10)
    with pytest.raises(TrainingBusy, match="training run 1 is still in progress"):
        create_run(trainee)
    first.join()
    with trainee.store.read() as session:
        assert session.query(TrainingRun).count() == 1


def test_writing_forgotten_during_a_run_flags_the_new_adapter(trainee):
    forgotten: list[int] = []

    def forget_all_once(progress) -> None:
        if progress.phase == "train" and not forgotten:
            forgotten.extend(d.id for d in trainee.writing.documents())
            for document_id in forgotten:
                trainee.writing.forget(document_id)

    outcome = run_training(trainee, forget_all_once, overrides=FAST)
    assert outcome.status == "succeeded" and forgotten
    assert list_adapters(trainee)[0].trained_on_deleted


def test_a_corrupt_base_is_a_clear_failure(trainee, tiny_gguf, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_gguf.read_bytes()[:100_000])
    trainee.set("base_model", str(broken))
    outcome = run_training(trainee, overrides=FAST)
    assert outcome.status == "failed"
    assert outcome.error.startswith("broken.gguf is truncated")


def test_opening_a_profile_settles_runs_whose_process_is_gone(profile, embedder):
    adapters = profile.adapters_dir
    (adapters / ".oppu-partial-abc").mkdir()
    hours_ago = time.time() - 7200
    os.utime(adapters / ".oppu-partial-abc", (hours_ago, hours_ago))
    (adapters / ".oppu-partial-now").mkdir()  # another process's import, still going
    (adapters / f".oppu-partial-{dead_pid()}-staged").mkdir()  # a killed run's new version
    write_meta(_mkdir(adapters / "v4"), {"run_id": 4})  # renamed in, never committed
    write_meta(_mkdir(adapters / "imported"), {"origin": "imported"})  # maybe still going
    write_meta(_mkdir(adapters / "v7"), {"origin": "imported"})  # killed before its row
    os.utime(adapters / "v7", (hours_ago, hours_ago))
    # a process now holding run 5's old pid: another run's training child
    other_run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                  *training_argv(profile, 99)[1:]])
    with profile.store.write() as session:
        session.add_all([
            TrainingRun(id=1, status="running", pid=dead_pid()),
            TrainingRun(id=2, status="running", pid=os.getpid()),  # not a trainer
            TrainingRun(id=3, status="queued", pid=None),  # its starter may be about to run it
            TrainingRun(id=4, status="queued", pid=None,
                        started_at=utcnow() - timedelta(hours=1)),
            TrainingRun(id=5, status="running", pid=other_run.pid),
        ])
    try:
        with Profile(profile.name, embedder=embedder) as reopened, \
                reopened.store.read() as session:
            status = {r.id: (r.status, r.error) for r in session.query(TrainingRun)}
    finally:
        other_run.kill()
    assert status == {1: ("failed", INTERRUPTED), 2: ("failed", INTERRUPTED),
                      3: ("queued", None), 4: ("failed", INTERRUPTED),
                      5: ("failed", INTERRUPTED)}
    names = {p.name for p in adapters.iterdir()}
    assert names - {".oppu-partial-abc", ".oppu-partial-now", "v4", "imported", "v7"} == {
        next(n for n in names if n.endswith("-staged"))}  # run 3 may still write there

    with profile.store.write() as session:
        session.get(TrainingRun, 3).status = "cancelled"
    with Profile(profile.name, embedder=embedder):
        assert sorted(p.name for p in adapters.iterdir()) == [".oppu-partial-now", "imported"]


def _mkdir(path):
    path.mkdir()
    return path


@pytest.mark.parametrize("steps", ["0", "-5", "ten"])
def test_a_step_count_below_one_is_refused_before_any_run(profile, capsys, steps):
    with pytest.raises(SystemExit):
        main(["--profile", profile.name, "train", "--max-steps", steps])
    assert "must be a whole number of at least 1" in capsys.readouterr().err
    assert recent_runs(profile) == []


def test_oppu_train_runs_now_and_forgetting_what_it_trained_on_flags_it(trainee, capsys):
    assert main(["--profile", trainee.name, "train", "--preset", "quick", "--max-steps", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("run 1: trained v1; ")
    assert "train " in captured.err and "2/2" in captured.err  # the progress bar
    with trainee.store.read() as session:
        run = session.get(TrainingRun, 1)
        used = dict(session.query(AdapterDocument.document_id, AdapterDocument.held_out).all())
    assert run.config["preset"] == "quick" and run.config["train"]["retrieval_k"] > 0
    held = [d for d, held_out in used.items() if held_out]
    trained = [d for d, held_out in used.items() if not held_out]
    assert held and trained
    trainee.writing.forget(held[0])
    assert not list_adapters(trainee)[0].trained_on_deleted  # only measured on, never trained
    assert trainee.writing.stats().words_since_adapter == 0  # held-out writing is not new
    trainee.writing.forget(trained[0])
    assert list_adapters(trainee)[0].trained_on_deleted


def test_sigterm_to_oppu_train_stops_its_child_cleanly(trainee, capsys, monkeypatch):
    from oppu.core.cli import training_commands

    files = add_active_adapter(trainee)

    class TerminatedWhileTraining(training_commands.ProgressBar):
        def __call__(self, progress):
            super().__call__(progress)
            if progress.phase == "train":
                os.kill(os.getpid(), signal.SIGTERM)  # `kill PID`, `timeout`, a service stop

    monkeypatch.setattr(training_commands, "ProgressBar", TerminatedWhileTraining)
    assert main(["--profile", trainee.name, "train", "--max-steps", "500"]) == 130
    assert "stopped; nothing changed" in capsys.readouterr().out
    assert_unchanged(trainee, files)
    (run,) = recent_runs(trainee)
    assert run.status == "cancelled"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # as it was before `main`


def test_the_last_loss_curve_is_the_newest_ended_run_that_trained(profile):
    from oppu.core.training import last_loss_curve

    assert last_loss_curve(profile) is None
    with profile.store.write() as session:
        session.add_all([
            TrainingRun(id=1, status="succeeded", adapter_version="v1",
                        loss_curve=[[1, 3.5], [2, 3.1]], finished_at=utcnow()),
            TrainingRun(id=2, status="failed", loss_curve=[[1, 3.4]], finished_at=utcnow()),
            TrainingRun(id=3, status="failed", error="killed before its first step"),
            TrainingRun(id=4, status="running", loss_curve=[[1, 3.3]])])
    curve = last_loss_curve(profile)
    assert (curve.run_id, curve.status, curve.version, curve.points) == (2, "failed", None,
                                                                        [(1, 3.4)])
    assert last_loss_curve(profile, look_back=0) is None


def test_oppu_train_stop_stops_a_run_started_elsewhere(trainee, capsys, monkeypatch):
    """A run whose starter is gone (the app closed, a terminal killed) can still be stopped."""
    from oppu.core.cli import training_commands

    files = add_active_adapter(trainee)
    assert main(["--profile", trainee.name, "train", "--stop"]) == 0
    assert capsys.readouterr().out == "no training run is in progress\n"

    class StoppedFromAnotherTerminal(training_commands.ProgressBar):
        def __call__(self, progress):
            super().__call__(progress)
            if progress.phase == "train" and not asked:
                asked.append(main(["--profile", trainee.name, "train", "--stop"]))

    asked = []
    monkeypatch.setattr(training_commands, "ProgressBar", StoppedFromAnotherTerminal)
    assert main(["--profile", trainee.name, "train", "--max-steps", "500"]) == 130
    out = capsys.readouterr().out
    assert asked == [0] and "asked training run 1 to stop" in out
    assert "stopped; nothing changed" in out
    assert_unchanged(trainee, files)
    assert recent_runs(trainee)[0].status == "cancelled"
