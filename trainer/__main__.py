"""`python -m oppu.trainer train|download ...`: the child processes core starts.

Each prints JSON lines on stdout (see `oppu.trainer.child`) and exits 0 on success,
1 on failure, 3 when stopped on request.
"""

import argparse
import sys
from pathlib import Path

from oppu.storage.privacy import go_offline
from oppu.trainer.child import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    Protocol,
    StopControl,
    StopRequested,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m oppu.trainer")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="run one recorded training run of a profile")
    train.add_argument("--profile", required=True)
    train.add_argument("--run", type=int, required=True)
    train.add_argument("--root", type=Path, default=None, help="the data root (OPPU_HOME)")
    download = commands.add_parser("download", help="fetch a base GGUF from the model hub")
    download.add_argument("--repo", required=True)
    download.add_argument("--file", required=True)
    download.add_argument("--revision", default="main")
    download.add_argument("--sha256", default=None)
    download.add_argument("--dest", type=Path, default=None)
    download.add_argument("--stop-file", type=Path, default=None)
    return parser


def run_download(args, protocol) -> int:
    from oppu.trainer.base_models import HubModel, models_dir
    from oppu.trainer.download import DownloadError, download_model
    from oppu.trainer.prepare import BaseModelError, one_line

    model = HubModel(args.file, args.repo, args.file, 0, "", "", args.sha256, args.revision)
    try:
        path = download_model(model, args.dest or models_dir(), protocol.emit)
    except (DownloadError, BaseModelError) as error:
        protocol.result(status="failed", error=str(error))
        return EXIT_FAILED
    except OSError as error:  # saving it: a full disk, a folder in the way
        protocol.result(status="failed", error=f"cannot save {args.file}: {one_line(error)}")
        return EXIT_FAILED
    protocol.result(status="succeeded", path=str(path))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        go_offline()  # before any library that could phone home is imported
    protocol = Protocol()
    if args.command == "train":
        from oppu.trainer.job import run_job

        return run_job(args.profile, args.run, args.root, protocol)
    control = StopControl(args.stop_file).install()
    try:
        return run_download(args, protocol)
    except StopRequested:
        protocol.result(status="cancelled")
        return EXIT_STOPPED
    finally:
        control.close()


if __name__ == "__main__":
    sys.exit(main())
