"""A one-line progress bar on stderr for the command line."""

import sys

from oppu.core.progress import Progress


class ProgressBar:
    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr  # looked up now: tests and tools swap sys.stderr
        self.width = width
        self.interactive = self.stream.isatty()
        self._logged = None  # (phase, tenth) of the last line written to a log

    def __call__(self, progress: Progress) -> None:
        filled = int(self.width * progress.fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        extras = [progress.message] if progress.message else []
        if progress.loss is not None:
            extras.append(f"loss {progress.loss:.3f}")
        if progress.eta_s is not None:
            extras.append(f"ETA {int(progress.eta_s) // 60}:{int(progress.eta_s) % 60:02d}")
        line = (f"{progress.phase:<10} [{bar}] {progress.done}/{progress.total} "
                + "  ".join(extras))
        if self.interactive:
            self.stream.write("\r\033[K" + line[:200])
            if progress.total and progress.done >= progress.total:
                self.stream.write("\n")
        else:  # a log (cron, a pipe): a line per phase (and step of it: a new total, as
            # when the dataset starts asking the base model) and per tenth, not per update
            mark = (progress.phase, progress.total, int(10 * progress.fraction))
            if mark == self._logged:
                return
            self._logged = mark
            self.stream.write(line + "\n")
        self.stream.flush()
