"""Training a personal adapter: recorded runs of the child `python -m oppu.trainer train`.

A run is a `training_runs` row. Core creates it ('queued', with the resolved base model
and settings in its config), starts the child, and reads its JSON lines; the child marks
it running, records progress, metrics and the outcome, and writes the adapter version.
The command line uses `run_training`; the app builds the same command with
`training_argv` for its QProcess and finishes with `settle_run`.

A child killed at any moment (SIGKILL, power cut) leaves its row 'running' with a dead
pid; `recover_interrupted` marks such runs failed and clears their half-written files.
It runs whenever a profile opens.
"""

import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from oppu.core.child_process import python_module_argv
from oppu.core.job_runner import run_child
from oppu.core.progress import Report, ShouldStop, ignore, never
from oppu.storage.atomic import remove_abandoned
from oppu.storage.models import Adapter, TrainingRun, utcnow
from oppu.trainer.base_models import resolve_base
from oppu.trainer.config import NotEnoughWriting, run_config
from oppu.trainer.versions import WORK_DIR, read_meta

LIVE = ("queued", "running")
# A queued run without a pid may be one whose starter is about to launch it.
QUEUED_GRACE = timedelta(minutes=2)
# A version folder still being written under a temporary name may be another process's
# import (which merges a copy of the base: minutes for a large one); older ones are junk.
PARTIAL_GRACE_S = 3600
INTERRUPTED = "interrupted: the training process ended without finishing (killed or crashed)"


class TrainingBusy(Exception):
    pass


@dataclass(frozen=True)
class RunOutcome:
    run_id: int
    status: str  # succeeded | failed | cancelled
    version: str | None = None
    promoted: bool = False
    decision: str | None = None
    error: str | None = None
    metrics: dict | None = None

    @property
    def summary(self) -> str:
        if self.status == "succeeded":
            return f"run {self.run_id}: trained {self.version}; {self.decision}"
        if self.status == "cancelled":
            return f"run {self.run_id}: stopped; nothing changed"
        return f"run {self.run_id} failed: {self.error}"


def run_folder(profile, run_id: int) -> Path:
    folder = profile.runs_dir / str(run_id)
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def stop_file(profile, run_id: int) -> Path:
    return run_folder(profile, run_id) / "stop"


def log_path(profile, run_id: int) -> Path:
    return run_folder(profile, run_id) / "train.log"


def data_root_of(profile) -> Path:
    return profile.folder.parent.parent  # <root>/profiles/<name>


def training_argv(profile, run_id: int) -> list[str]:
    """The child's command line, for subprocess here and for the app's QProcess."""
    return python_module_argv("oppu.trainer", *_child_arguments(profile, run_id))


def _child_arguments(profile, run_id: int) -> list[str]:
    return ["train", "--profile", profile.name, "--run", str(run_id),
            "--root", str(data_root_of(profile))]


_newest_live = (select(TrainingRun.id).where(TrainingRun.status.in_(LIVE))
                .order_by(TrainingRun.id.desc()).limit(1))


def live_run(profile) -> int | None:
    with profile.store.read() as session:
        return session.scalar(_newest_live)


def create_run(profile, overrides: dict | None = None, reason: str = "manual",
               preset: str | None = None) -> int:
    """Record a queued run with everything the child needs; refuse a second live one."""
    recover_interrupted(profile)
    settings = profile.settings
    config = {"base": str(resolve_base(settings.base_model)), "base_setting": settings.base_model,
              "preset": preset or settings.training_preset, "device": settings.training_device,
              "overrides": dict(overrides or {}),
              "reason": reason}
    needed = run_config(config["preset"], config["device"], config["overrides"]).min_words
    words = profile.writing.stats().words
    if words < needed:  # before a run is recorded, not minutes into one
        raise NotEnoughWriting(words, needed)
    with profile.store.write() as session:  # checked and recorded under one write lock
        busy = session.scalar(_newest_live)
        if busy is not None:
            raise TrainingBusy(f"training run {busy} is still in progress")
        run = TrainingRun(status="queued", config=config)
        session.add(run)
        session.flush()
        return run.id


def set_pid(profile, run_id: int, pid: int) -> None:
    with profile.store.write() as session:
        run = session.get(TrainingRun, run_id)
        if run is not None and run.status in LIVE:
            run.pid = pid


def request_stop(profile, run_id: int) -> None:
    """Ask a running child to stop (it polls this file; the app may also send SIGTERM)."""
    stop_file(profile, run_id).touch()


def settle_run(profile, run_id: int, returncode: int | None, stop_requested: bool = False
               ) -> RunOutcome:
    """After the child has ended: its recorded outcome, or a failure if it died first."""
    with profile.store.write() as session:
        run = session.get(TrainingRun, run_id)
        died = run.status in LIVE
        if died:
            run.status = "cancelled" if stop_requested else "failed"
            run.error = None if stop_requested else _death_reason(returncode)
            run.finished_at = utcnow()
    stop_file(profile, run_id).unlink(missing_ok=True)
    if died:
        recover_interrupted(profile)  # clears what it left half-written, as an open would
    return outcome_of(profile, run_id)


def _death_reason(returncode: int | None) -> str:
    """Why a child ended that did not record its own outcome; None: it never started."""
    if returncode is None:
        return "the training process could not be started"
    if returncode < 0:
        hint = (" (by the system when memory runs out, or by someone's kill -9)"
                if returncode == -9 else "")
        return f"the training process was killed by signal {-returncode}{hint}"
    return f"the training process ended unexpectedly (exit status {returncode}); see its log"


def outcome_of(profile, run_id: int) -> RunOutcome:
    with profile.store.read() as session:
        run = session.get(TrainingRun, run_id)
        return RunOutcome(run.id, run.status, run.adapter_version, run.promoted, run.decision,
                          run.error, run.metrics or None)


def run_training(profile, report: Report = ignore, should_stop: ShouldStop = never,
                 overrides: dict | None = None, reason: str = "manual",
                 preset: str | None = None) -> RunOutcome:
    """Train now in a child process; returns how the run ended (never raises for it)."""
    run_id = create_run(profile, overrides, reason, preset)
    outcome = run_child(training_argv(profile, run_id), report, should_stop,
                        log_path=log_path(profile, run_id), stop_file=stop_file(profile, run_id),
                        on_start=lambda pid: set_pid(profile, run_id, pid))
    return settle_run(profile, run_id, outcome.returncode, outcome.stop_requested)


def _alive(profile, run_id: int, pid: int | None) -> bool:
    """Whether `pid` is still the run's training child: not a zombie, and not a reused pid,
    even one that another run's child got (its arguments name the run)."""
    import psutil

    if not pid:
        return False
    # not the data root: the same folder may be spelt differently (a symlink) by the opener
    naming_the_run = _child_arguments(profile, run_id)[:5]
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
    return "oppu.trainer" in cmdline and any(
        cmdline[i:i + 5] == naming_the_run for i in range(len(cmdline)))


def recover_interrupted(profile) -> list[int]:
    """Mark runs whose process is gone as failed; clear the files they left half-written."""
    cutoff = utcnow() - QUEUED_GRACE
    with profile.store.read() as session:
        live = session.execute(select(TrainingRun.id, TrainingRun.pid, TrainingRun.started_at)
                               .where(TrainingRun.status.in_(LIVE))).all()
        known = set(session.scalars(select(Adapter.version)))
    dead = [run_id for run_id, pid, started in live
            if not _alive(profile, run_id, pid) and (pid or started < cutoff)]
    if dead:
        with profile.store.write() as session:
            for run in session.scalars(select(TrainingRun).where(TrainingRun.id.in_(dead),
                                                                 TrainingRun.status.in_(LIVE))):
                run.status, run.error, run.finished_at = "failed", INTERRUPTED, utcnow()
    ended = dead
    if len(dead) == len(live):  # no run is in progress: whatever is half-written is junk
        _sweep_adapters_dir(profile.adapters_dir, known)
        ended = [folder.name for folder in profile.runs_dir.iterdir()]
    for run_id in ended:
        shutil.rmtree(profile.runs_dir / str(run_id) / WORK_DIR, ignore_errors=True)
    return dead


def _sweep_adapters_dir(adapters_dir: Path, known: set[str]) -> None:
    """Remove what a killed run, import or delete left: half-renamed folders, and row-less
    ones that a run or an import made (an import's only after the grace time: another
    process may be between its folder's rename and its row)."""
    for folder in adapters_dir.iterdir():
        if not folder.is_dir() or folder.name in known:
            continue
        old = time.time() - folder.stat().st_mtime >= PARTIAL_GRACE_S
        meta = read_meta(folder)
        if isinstance(meta.get("run_id"), int) or meta.get("origin") == "imported" and old:
            shutil.rmtree(folder, ignore_errors=True)
    remove_abandoned(adapters_dir)  # staged versions of killed runs and imports
    for version in known:  # and a merged copy that a killed activation was writing
        if (adapters_dir / version).is_dir():
            remove_abandoned(adapters_dir / version)


@dataclass(frozen=True)
class LossCurve:
    run_id: int
    status: str
    version: str | None
    finished_at: datetime | None
    points: list[tuple[int, float]]  # (step, training loss)


def last_loss_curve(profile, look_back: int = 20) -> LossCurve | None:
    """The training loss of the newest ended run that trained; None before any did."""
    columns = (TrainingRun.id, TrainingRun.status, TrainingRun.adapter_version,
               TrainingRun.finished_at, TrainingRun.loss_curve)
    with profile.store.read() as session:
        runs = session.execute(select(*columns).where(TrainingRun.status.not_in(LIVE))
                               .order_by(TrainingRun.id.desc()).limit(look_back))
        run = next((r for r in runs if r.loss_curve), None)
    if run is None:
        return None
    return LossCurve(run.id, run.status, run.adapter_version, run.finished_at,
                     [(int(step), float(loss)) for step, loss in run.loss_curve])


def recent_runs(profile, limit: int = 10) -> list[RunOutcome]:
    with profile.store.read() as session:
        ids = list(session.scalars(select(TrainingRun.id).order_by(TrainingRun.id.desc())
                                   .limit(limit)))
    return [outcome_of(profile, run_id) for run_id in ids]
