"""Choosing the base model a profile trains on, and downloading a curated one.

The download is the app's only network use. It runs as a child process
(`python -m oppu.trainer download ...`) started with `online_env()`: that child's
environment alone lifts the offline guard, never this process's.
"""

from dataclasses import dataclass
from pathlib import Path

from oppu.core.child_process import python_module_argv
from oppu.core.job_runner import run_child
from oppu.core.progress import Report, ShouldStop, Stopped, ignore, never
from oppu.storage.privacy import online_env
from oppu.trainer.base_models import (
    BUNDLED,
    CURATED,
    BaseChoice,
    HubModel,
    available_bases,
    downloaded,
    models_dir,
    resolve_base,
    validate_gguf,
)


class DownloadFailed(Exception):
    pass


@dataclass(frozen=True)
class CuratedEntry:
    model: HubModel
    path: Path | None  # where it is, once downloaded


def bases() -> list[BaseChoice]:
    return available_bases()


def curated() -> list[CuratedEntry]:
    return [CuratedEntry(m, downloaded(m)) for m in CURATED]


def use_base(profile, setting: str) -> str:
    """Point `profile` at a base model: `bundled`, a downloaded curated model (stored by its
    key, so that a moved data folder keeps it) or a GGUF file we can train on. Refused while
    the profile trains: the run's adapter would be made for the base it left."""
    from oppu.core.profile import refuse_while_training

    refuse_while_training(profile, "change the base model")
    if setting in {BUNDLED, *(m.key for m in CURATED)}:
        validate_gguf(resolve_base(setting))
    else:
        path = Path(setting).expanduser()
        validate_gguf(path)  # a one-line BaseModelError for anything we cannot train
        setting = str(path.resolve())  # after: a loop of links makes resolve() raise
    profile.set("base_model", setting)
    return setting


def download_argv(model: HubModel, dest: Path, stop_file: Path) -> list[str]:
    args = ["download", "--repo", model.repo, "--file", model.filename,
            "--revision", model.revision, "--dest", str(dest), "--stop-file", str(stop_file)]
    if model.sha256:
        args += ["--sha256", model.sha256]
    return python_module_argv("oppu.trainer", *args)


def download_base(model: HubModel, report: Report = ignore, should_stop: ShouldStop = never,
                  dest: Path | None = None) -> Path:
    """Fetch `model` (resuming a partial download) and return the verified file."""
    dest = dest or models_dir()
    stop_file = dest / f"{model.filename}.stop"
    log_path = dest / f"{model.filename}.log"  # the child's stderr, kept when it fails
    stop_file.unlink(missing_ok=True)
    try:
        outcome = run_child(download_argv(model, dest, stop_file), report, should_stop,
                            env=online_env(), stop_file=stop_file, log_path=log_path)
    finally:
        stop_file.unlink(missing_ok=True)
    result = outcome.result or {}
    if result.get("status") == "succeeded":
        log_path.unlink(missing_ok=True)
        return Path(result["path"])
    if outcome.stop_requested:
        raise Stopped(f"download of {model.filename} stopped; it resumes next time")
    raise DownloadFailed(result.get("error") or
                         f"the download process ended unexpectedly (exit {outcome.returncode})")
