"""The training child process: its JSON-line protocol, its records, SIGTERM, the gate rule."""

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from oppu.core.training import log_path, training_argv
from oppu.storage.models import Adapter, AdapterDocument, TrainingRun
from oppu.trainer.answer_replay import ANSWER_CACHE_FILE
from oppu.trainer.child import Protocol, StopControl, StopRequested
from oppu.trainer.config import TrainConfig
from oppu.trainer.disk_needs import SLACK, adapter_bytes
from oppu.trainer.job import TrainingJob, decide, is_out_of_memory
from oppu.trainer.versions import GGUF_FILE, MERGED_FILE, META_FILE, PEFT_DIR
from tests.support.training_setup import (  # noqa: F401 - fixtures
    FAST,
    base_cache_fixture,
    start_run,
    trainee_fixture,
    writing_template_fixture,
)


def test_the_child_reports_progress_and_records_a_complete_adapter(trainee):
    run_id, child = start_run(trainee, FAST)
    records = [json.loads(line) for line in child.stdout]
    assert child.wait() == 0, log_path(trainee, run_id).read_text()

    progress, result = records[:-1], records[-1]["result"]
    phases = [r["phase"] for r in progress]
    assert phases[0] == "prepare" and phases[-1] == "save"
    assert {"dataset", "evaluate", "train"} <= set(phases)
    steps = [r for r in progress if r["phase"] == "train"]
    assert [r["step"] for r in steps] == list(range(1, FAST["max_steps"] + 1))
    assert all(r["total"] == FAST["max_steps"] for r in steps)
    assert all(r["loss"] > 0 and r["tokens_per_s"] > 0 and r["eta_s"] >= 0 for r in steps)
    assert steps[-1]["eta_s"] == 0
    assert result["status"] == "succeeded" and result["version"] == "v1"

    folder = trainee.adapters_dir / "v1"
    assert {p.name for p in (folder / PEFT_DIR).iterdir()} >= {
        "adapter_config.json", "adapter_model.safetensors"}
    assert (folder / GGUF_FILE).read_bytes()[:4] == b"GGUF"
    assert (folder / MERGED_FILE).read_bytes()[:4] == b"GGUF"  # what chat serves
    config = json.loads((folder / PEFT_DIR / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == Path(trainee.settings.base_model).name  # no path
    assert not (folder / PEFT_DIR / "README.md").exists()
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["run_id"] == run_id and meta["version"] == "v1"
    assert meta["base"]["sha256"] and meta["app_version"] and meta["created"]
    assert meta["config"]["seq_len"] == FAST["seq_len"]
    assert set(meta["metrics"]) >= {"base", "new", "train", "curve"}
    # The learning curve: the base at step 0, then held-out perplexity along the run, the
    # last point being the adapter the gate measured.
    curve = meta["metrics"]["curve"]
    assert curve[0] == {"step": 0, "words_seen": 0,
                        "perplexity": meta["metrics"]["base"]["perplexity"]}
    assert [p["step"] for p in curve] == [0, 1, 2, 3]
    assert curve[-1]["perplexity"] == meta["metrics"]["new"]["perplexity"]
    assert 0 < curve[1]["words_seen"] < curve[2]["words_seen"] < curve[3]["words_seen"]
    assert meta["decision"] == result["decision"]
    # What the run checked for before training covers the adapter it wrote, not inflated.
    written = sum(p.stat().st_size for p in folder.rglob("*")
                  if p.is_file() and p.name != MERGED_FILE)
    estimate = adapter_bytes(Path(trainee.settings.base_model),
                             TrainConfig.from_dict(meta["config"]))
    assert 0.9 * (estimate - SLACK) <= written <= estimate

    with trainee.store.read() as session:
        run = session.get(TrainingRun, run_id)
        adapter = session.query(Adapter).one()
        linked = {d.document_id for d in session.query(AdapterDocument)}
    assert run.status == "succeeded" and run.adapter_version == "v1" and run.error is None
    assert [point[0] for point in run.loss_curve] == [1, 2, 3]
    assert run.config["train"]["max_steps"] == FAST["max_steps"]
    assert run.decision == meta["decision"] and run.promoted == adapter.is_active
    assert linked == set(meta["train_document_ids"]) | set(meta["heldout_document_ids"])
    assert meta["heldout_document_ids"] and meta["train_document_ids"]
    assert adapter.base_sha256 == meta["base"]["sha256"]
    assert adapter.path == "adapters/v1"  # relative: the data folder may move
    assert trainee.writing.stats().words_since_adapter == 0


def test_a_retrain_on_the_same_writing_asks_the_base_model_nothing_again(trainee):
    asking = "asking the base model about your writing"
    messages = []
    for _ in range(2):
        run_id, child = start_run(trainee, FAST)
        records = [json.loads(line) for line in child.stdout]
        assert child.wait() == 0, log_path(trainee, run_id).read_text()
        messages.append([r.get("message") for r in records[:-1] if r.get("phase") == "dataset"])
    assert asking in messages[0] and asking not in messages[1]
    saved = json.loads((trainee.runs_dir / ANSWER_CACHE_FILE).read_text())
    assert saved and all(reply is None or isinstance(reply, list) for reply in saved.values())


def test_writing_forgotten_while_the_base_model_answers_leaves_no_cached_answers(trainee):
    """The child is paused as it starts asking, the parent forgets a document (deleting
    the cache file first), and only then are the answers, which may quote it, written."""
    document_id = trainee.writing.documents()[0].id
    run_id, child = start_run(trainee, FAST)
    for line in child.stdout:
        record = json.loads(line)
        if record.get("message") == "asking the base model about your writing":
            child.send_signal(signal.SIGSTOP)
            trainee.forget(document_id)
            child.send_signal(signal.SIGCONT)
            break
    records = [json.loads(line) for line in child.stdout]
    assert child.wait() == 0, log_path(trainee, run_id).read_text()
    assert records[-1]["result"]["status"] == "succeeded"
    assert not (trainee.runs_dir / ANSWER_CACHE_FILE).exists()
    meta = json.loads((trainee.adapters_dir / "v1" / META_FILE).read_text())
    with trainee.store.read() as session:
        flagged = session.query(Adapter).one().trained_on_deleted
    assert flagged == (document_id in meta["train_document_ids"])  # read before it went


def test_a_run_whose_base_model_was_changed_meanwhile_is_kept_but_not_made_active(trainee):
    run_id, child = start_run(trainee, FAST)
    for line in child.stdout:
        if json.loads(line).get("phase") == "train":
            child.send_signal(signal.SIGSTOP)
            trainee.set("base_model", "bundled-but-another.gguf")  # the user picks another
            child.send_signal(signal.SIGCONT)
            break
    result = [json.loads(line) for line in child.stdout][-1]["result"]
    assert child.wait() == 0, log_path(trainee, run_id).read_text()
    assert result["promoted"] is False
    assert result["decision"] == "not promoted: the base model was changed during training"
    with trainee.store.read() as session:
        assert [(a.version, a.is_active) for a in session.query(Adapter)] == [("v1", False)]


def test_sigterm_cancels_cleanly(trainee):
    run_id, child = start_run(trainee, {**FAST, "max_steps": 500})
    seen = []
    for line in child.stdout:
        seen.append(json.loads(line))
        if seen[-1].get("phase") == "train":
            child.send_signal(signal.SIGTERM)
            break
    seen.extend(json.loads(line) for line in child.stdout)
    assert child.wait() == 3
    assert seen[-1]["result"]["status"] == "cancelled"
    with trainee.store.read() as session:
        run = session.get(TrainingRun, run_id)
        assert run.status == "cancelled" and run.finished_at is not None and run.error is None
        assert session.query(Adapter).count() == 0
    assert list(trainee.adapters_dir.iterdir()) == []


def test_a_second_stop_signal_does_not_cut_short_the_first():
    """The parent sends SIGTERM and touches the stop file, whose watcher sends another."""
    previous = signal.getsignal(signal.SIGTERM)
    control = StopControl().install()
    try:
        with pytest.raises(StopRequested):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGTERM)  # while the first is being recorded
        time.sleep(0.1)
        assert control.requested
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_stop_during_the_commit_lets_the_commit_finish():
    """A finished run's version is stored whole even when the stop comes as it commits."""
    previous = signal.getsignal(signal.SIGTERM)
    control = StopControl().install()
    steps = []
    try:
        with control.critical():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            steps.append("committed")
        assert steps == ["committed"] and control.requested
        with pytest.raises(StopRequested):
            control.check()  # and the run ends at its next check
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_second_child_for_the_same_run_leaves_it_to_the_first(trainee):
    run_id, first = start_run(trainee, FAST)
    assert json.loads(first.stdout.readline())["phase"] == "prepare"  # it runs the run now
    second = subprocess.run(training_argv(trainee, run_id), capture_output=True, text=True,
                            check=False)
    assert second.returncode == 1
    assert "training run 1 is already running" in second.stdout
    assert json.loads(first.stdout.read().splitlines()[-1])["result"]["status"] == "succeeded"
    assert first.wait() == 0
    with trainee.store.read() as session:
        run = session.get(TrainingRun, run_id)
        assert (run.status, run.adapter_version, run.error) == ("succeeded", "v1", None)
        assert session.query(Adapter).count() == 1


def test_a_stop_after_the_commit_does_not_rewrite_the_outcome(profile):
    with profile.store.write() as session:
        session.add(TrainingRun(id=1, status="queued", config={"preset": "quick"}))
    job = TrainingJob(profile.store, profile.folder, 1, Protocol(io.StringIO()), StopControl())
    job._start()
    with profile.store.write() as session:  # what the commit records, in one transaction
        session.get(TrainingRun, 1).status = "succeeded"
    assert job._end("cancelled") == 3
    with profile.store.read() as session:
        assert session.get(TrainingRun, 1).status == "succeeded"


def test_unknown_training_options_are_refused_before_a_run_is_recorded(trainee):
    from oppu.core.training import create_run, recent_runs

    with pytest.raises(ValueError, match="^unknown training option lr; known: rank, alpha"):
        create_run(trainee, {"lr": 0.1})
    with pytest.raises(ValueError, match="unknown training preset 'fast'"):
        create_run(trainee, preset="fast")
    assert recent_runs(trainee) == []


def test_writing_too_few_documents_to_hold_one_out_still_gets_a_model(trainee):
    """One long journal file: nothing can be held out to measure on, so the gate cannot
    compare; the run used to train for minutes and then refuse a 'not finite' loss."""
    from oppu.core.adapters import active

    run_id, child = start_run(trainee, {**FAST, "heldout_fraction": 0.0})
    result = [json.loads(line) for line in child.stdout][-1]["result"]
    assert child.wait() == 0, log_path(trainee, run_id).read_text()
    assert result["status"] == "succeeded" and result["promoted"], result["decision"]
    assert result["decision"].startswith("promoted without a held-out check: your writing is "
                                         "too few documents")
    version = active(trainee)
    assert version.version == "v1" and version.perplexity("new") is None
    assert version.perplexity("base") is None  # shown as not measured, not as nan


def test_the_gate_promotes_only_what_beats_both():
    base, good, better = {"loss": 3.0, "tokens": 9}, {"loss": 2.5}, {"loss": 2.0}
    assert decide(good, base, None, None) == (
        True, "promoted: held-out perplexity 12.18 beats the base model's 20.09")
    assert decide(better, base, good, "v1")[0]
    promoted, why = decide(good, base, better, "v1")
    assert not promoted and why == ("not promoted: held-out perplexity 12.18 does not beat the "
                                    "active v1's 7.39; v1 stays active")
    promoted, why = decide(base, base, None, None)
    assert not promoted and "does not beat the base model's 20.09" in why
    # Trained on writing since deleted: the retrain that forgets it needs only beat the base.
    assert decide(good, base, better, "v1", active_forgotten=True) == (
        True, ("promoted: held-out perplexity 12.18 beats the base model's 20.09; it replaces v1, "
               "which was trained on writing you have since deleted"))
    assert not decide(base, base, better, "v1", active_forgotten=True)[0]


def test_real_out_of_memory_errors_are_recognised():
    import torch

    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**50, dtype=torch.uint8)
    assert is_out_of_memory(caught.value)
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert not is_out_of_memory(ValueError("bad value"))


def test_a_disk_too_full_for_the_new_version_fails_the_run_before_training(trainee,
                                                                           monkeypatch):
    from oppu.core.training import create_run
    from oppu.storage import disk_space

    real_disk_usage = disk_space.shutil.disk_usage

    def disk_usage(folder):
        usage = real_disk_usage(folder)
        if Path(folder) == trainee.folder:  # the profile's disk is full, the cache's is not
            return usage._replace(free=1 << 20)
        return usage

    monkeypatch.setattr(disk_space.shutil, "disk_usage", disk_usage)
    run_id = create_run(trainee, FAST)
    out = io.StringIO()
    job = TrainingJob(trainee.store, trainee.folder, run_id, Protocol(out), StopControl())
    assert job.run() == 1
    with trainee.store.read() as session:
        run = session.get(TrainingRun, run_id)
        assert run.status == "failed" and session.query(Adapter).count() == 0
    assert run.error.startswith("not enough free disk space to save the trained model: it "
                                "needs about ")
    assert run.error.endswith(f"and 1 MB is free in {trainee.folder}; free some space and "
                              "try again")
    assert not any(p["phase"] == "train" for p in map(json.loads, out.getvalue().splitlines())
                   if "phase" in p)
    assert not list(trainee.adapters_dir.iterdir())
