"""The command line's progress: a live bar on a terminal, a few lines in a log."""

import io

from oppu.core.cli.progress_bar import ProgressBar
from oppu.core.progress import Progress


def test_a_log_gets_a_line_per_phase_and_tenth_not_per_update():
    log = io.StringIO()  # not a terminal, as under cron or in a pipe
    bar = ProgressBar(log)
    bar(Progress("prepare", 0, 1, "base model"))
    for step in range(1, 201):
        bar(Progress("train", step, 200))
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("prepare ")
    assert [line.split()[-1] for line in lines[1:]] == [
        f"{s}/200" for s in [1, *range(20, 201, 20)]]  # the first, each tenth, the last


def test_a_log_shows_a_phase_moving_on_to_a_new_step():
    """A retrain's log showed "dataset 0/1 laying out your writing" for the minutes the base
    model spent answering questions: the step's "0/96 asking the base model" was hidden."""
    log = io.StringIO()
    bar = ProgressBar(log)
    bar(Progress("dataset", 0, 1, "laying out your writing"))
    for done in (0, 48, 96):
        bar(Progress("dataset", done, 96, "asking the base model about your writing"))
    assert [line.split(maxsplit=2)[2] for line in log.getvalue().splitlines()] == [
        "0/1 laying out your writing", "0/96 asking the base model about your writing",
        "48/96 asking the base model about your writing",
        "96/96 asking the base model about your writing"]
