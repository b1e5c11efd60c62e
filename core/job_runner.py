"""Running one of our child processes (`python -m oppu.trainer ...`) from core.

The child speaks JSON lines on stdout (see `oppu.trainer.child`): progress records, then
one `{"result": {...}}`. `run_child` turns them into `Progress` callbacks and turns
`should_stop()` into a stop request: the stop file (if any), then SIGTERM, then SIGKILL
if the child has not ended after `kill_after_s`. The app's QProcess uses `parse_line`
on the same stream.
"""

import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from oppu.core.progress import Progress, Report, ShouldStop, ignore, never

POLL_S = 0.2
KILL_AFTER_S = 30.0


@dataclass(frozen=True)
class ChildOutcome:
    returncode: int
    result: dict | None  # the child's final record; None if it died before sending it
    stop_requested: bool


def parse_line(line: str) -> Progress | dict | None:
    """A progress line as `Progress`, the final line as its result dict, anything else None."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("result"), dict):
        return record["result"]
    if "phase" not in record:
        return None
    return Progress(phase=str(record["phase"]), done=int(record.get("step") or 0),
                    total=int(record.get("total") or 0), message=str(record.get("message", "")),
                    loss=record.get("loss"), tokens_per_s=record.get("tokens_per_s"),
                    eta_s=record.get("eta_s"))


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_child(argv: list[str], report: Report = ignore, should_stop: ShouldStop = never, *,
              env: dict | None = None, log_path: Path | None = None,
              stop_file: Path | None = None, on_start=None,
              kill_after_s: float = KILL_AFTER_S) -> ChildOutcome:
    """Run the child to its end, reporting its progress; Ctrl-C asks it to stop."""
    with open(log_path or os.devnull, "ab") as log:
        # Its own session: a Ctrl-C in the terminal reaches us only, and we stop it cleanly.
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                                 encoding="utf-8", errors="replace", start_new_session=True)
    if on_start:
        on_start(child.pid)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True).start()
    result, stop_at = None, None
    while True:
        try:
            if stop_at is None and should_stop():
                stop_at = _request_stop(child, stop_file)
            elif stop_at is not None and time.monotonic() - stop_at > kill_after_s:
                child.kill()
            try:
                line = lines.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if line is None:
                break
            parsed = parse_line(line)
            if isinstance(parsed, Progress):
                report(parsed)
            elif isinstance(parsed, dict):
                result = parsed
        except KeyboardInterrupt:
            if stop_at is None:
                stop_at = _request_stop(child, stop_file)
    return ChildOutcome(child.wait(), result, stop_at is not None)


def _request_stop(child: subprocess.Popen, stop_file: Path | None) -> float:
    if stop_file is not None:
        stop_file.parent.mkdir(parents=True, exist_ok=True)
        stop_file.touch()
    if os.name == "posix":  # elsewhere a "signal" terminates at once: the stop file must do
        try:
            os.kill(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return time.monotonic()
