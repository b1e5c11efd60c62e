"""`oppu train | adapters | activate | rollback | base`: the personal adapter."""

import argparse
from contextlib import contextmanager

from oppu.core.cli import CommandError, open_profile
from oppu.core.cli.progress_bar import ProgressBar
from oppu.core.times import local_time
from oppu.trainer.config import PRESETS


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def register(commands) -> None:
    train = commands.add_parser("train", help="train your personal adapter now")
    train.add_argument("--if-due", action="store_true",
                       help="only if enough is new (for cron or a systemd timer)")
    train.add_argument("--preset", choices=tuple(PRESETS),
                       help="override the training_preset setting for this run")
    train.add_argument("--max-steps", type=positive_int,
                       help="stop training after this many steps")
    train.add_argument("--stop", action="store_true",
                       help="stop the run in progress (started by the app, a timer or another "
                            "terminal); nothing changes unless it is already saving")
    train.set_defaults(run=run_train)

    adapters = commands.add_parser("adapters", help="list your adapter versions and metrics")
    adapters.add_argument("--delete", metavar="VERSION", help="delete an inactive version")
    adapters.set_defaults(run=run_adapters)

    activate = commands.add_parser("activate", help="make an adapter version the active one")
    activate.add_argument("version")
    activate.set_defaults(run=run_activate)

    rollback = commands.add_parser("rollback", help="go back to the previously active adapter")
    rollback.set_defaults(run=run_rollback)

    deactivate = commands.add_parser("deactivate", help="chat with the base model only; your "
                                                        "versions stay (`oppu activate` again)")
    deactivate.set_defaults(run=run_deactivate)

    base = commands.add_parser("base", help="show, choose or download the base model")
    base.add_argument("action", nargs="?", choices=["list", "use", "download"], default="list")
    base.add_argument("target", nargs="?",
                      help="for use: 'bundled' or a .gguf path; for download: a model key")
    base.set_defaults(run=run_base)


@contextmanager
def _opened(args, *errors):
    """The profile; any of `errors` raised meanwhile is reported as one line."""
    with open_profile(args) as profile:
        try:
            yield profile
        except errors as error:
            raise CommandError(str(error)) from None


def run_train(args) -> int:
    from oppu.core.policy import retrain_due
    from oppu.core.training import TrainingBusy, run_training
    from oppu.trainer.prepare import BaseModelError

    if args.stop:
        return _stop_training(args)
    overrides = {"max_steps": args.max_steps} if args.max_steps is not None else {}
    with _opened(args, TrainingBusy, BaseModelError) as profile:
        if args.if_due:
            due, why = retrain_due(profile)
            print(("retraining: " if due else "not due: ") + why)
            if not due:
                return 0
        try:
            outcome = run_training(profile, ProgressBar(), overrides=overrides,
                                   reason="scheduled" if args.if_due else "manual",
                                   preset=args.preset)
        except TrainingBusy as error:
            if not args.if_due:
                raise
            print(f"not started: {error}")  # a scheduler's second start: another run won
            return 0
    print(outcome.summary)
    return {"succeeded": 0, "cancelled": 130}.get(outcome.status, 1)


def _stop_training(args) -> int:
    from oppu.core.training import live_run, request_stop

    with open_profile(args) as profile:
        run_id = live_run(profile)
        if run_id is not None:
            request_stop(profile, run_id)
    print("no training run is in progress" if run_id is None else
          f"asked training run {run_id} to stop: it ends within seconds and changes nothing, "
          "unless it was already saving its new version")
    return 0


def run_adapters(args) -> int:
    from oppu.core.adapters import AdapterError, delete, list_adapters

    with _opened(args, AdapterError) as profile:
        if args.delete:
            delete(profile, args.delete)
            print(f"deleted {args.delete}")
        versions = list_adapters(profile)
    if not versions:
        print("no adapters yet: run `oppu train`")
        return 0
    print(f"  {'version':<8} {'created':<16} {'words':>7} {'ppl':>7} {'base':>7} {'eval':>6}"
          "  base model")
    for v in versions:
        flags = " (trained on deleted writing: retrain)" if v.trained_on_deleted else ""
        print(f"{'*' if v.is_active else ' '} {v.version:<8} {local_time(v.created_at):<16} "
              f"{v.words_trained:>7} {_number(v.perplexity('new')):>7} "
              f"{_number(v.perplexity('base')):>7} {_evaluated_cut(v.metrics):>6}  "
              f"{v.base_name}{flags}")
    print("* active; ppl, base: held-out perplexity of the version and of the base model, "
          "measured when it was trained (lower is better); eval: how much `oppu eval` found "
          "the version with retrieval cuts the base's perplexity on your held-out writing "
          "(- where not measured)")
    return 0


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _evaluated_cut(metrics: dict) -> str:
    from oppu.core.evaluation import evaluation_in

    evaluation = evaluation_in(metrics)
    return "-" if evaluation is None else f"{evaluation.reduction_vs_base:.0%}"


def run_activate(args) -> int:
    from oppu.core.adapters import AdapterError, activate

    with _opened(args, AdapterError) as profile:
        version = activate(profile, args.version)
        print(f"{version.version} is now active", flush=True)
        serve_version(profile, version)
    return 0


def serve_version(profile, version) -> None:
    """Ready a version just made active for chat, or say why chat will go without it."""
    from oppu.core.adapters import made_for_another_base, restore_merged_copy
    from oppu.engine.errors import ModelFileError

    try:
        foreign = made_for_another_base(version, profile.settings.base_model)
    except ModelFileError:
        foreign = False  # no base model to compare with: chat says so itself
    if foreign:
        print(f"note: {version.version} was trained on another base model ({version.base_name})"
              " than the one chosen now: chat replies without it until you choose that base "
              "again (`oppu base use`)")
        return
    restore_merged_copy(profile, version.version, ProgressBar())


def run_rollback(args) -> int:
    from oppu.core.adapters import AdapterError, rollback

    with _opened(args, AdapterError) as profile:
        version = rollback(profile)
        print(f"rolled back: {version.version} is active again", flush=True)
        serve_version(profile, version)
    return 0


def run_deactivate(args) -> int:
    from oppu.core.adapters import deactivate

    with open_profile(args) as profile:
        deactivate(profile)
    print("no adapter is active: chat uses the base model only")
    return 0


def run_base(args) -> int:
    from oppu.core.bases import DownloadFailed, bases, curated, download_base, use_base
    from oppu.core.profile import ProfileInUse
    from oppu.core.progress import Stopped
    from oppu.trainer.base_models import curated as curated_model
    from oppu.trainer.prepare import BaseModelError

    with _opened(args, BaseModelError, DownloadFailed, Stopped, ProfileInUse) as profile:
        if args.action == "use":
            if not args.target:
                raise CommandError("say which: `oppu base use bundled`, a downloaded model's "
                                   "key or a .gguf path")
            print(f"base model: {use_base(profile, args.target)}")
        elif args.action == "download":
            if not args.target:
                raise CommandError("say which model key; `oppu base` lists them")
            path = download_base(curated_model(args.target), ProgressBar())
            print(f"downloaded {path}\nuse it with: oppu base use {args.target}")
        else:
            print(f"current: {profile.settings.base_model}")
            for choice in bases():
                print(f"  {choice.kind:<10} {choice.name}: {choice.setting}")
            print("downloadable (oppu base download KEY):")
            for entry in curated():
                where = "downloaded" if entry.path else f"{entry.model.size_mb} MB"
                print(f"  {entry.model.key:<14} {entry.model.description} [{where}]")
    return 0
