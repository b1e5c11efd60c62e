"""`oppu note | add | list | search | forget | stats | config`, run in-process."""

import io
import subprocess
import sys

import pytest

from oppu.core.cli import main

GARDEN = "My tomatoes split again after the storm; next year I water them less."
UNSUPPORTED_PNG = "unsupported file type '.png': use .txt, .md, .docx, .odt, .html, .eml or .mbox"
BIKE = "The chain on my old bicycle keeps slipping when I climb the hill."


@pytest.fixture
def oppu(capsys, embedder):
    """Run `oppu ARGS` on the test profile, empty at first: (exit status, stdout, stderr)."""
    from oppu.core.profile import Profile

    Profile("cli", embedder=embedder).close()

    def run(*args: str) -> tuple[int, str, str]:
        status = main(["--profile", "cli", *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_note_then_list_search_stats_and_forget(oppu):
    assert oppu("note", *GARDEN.split()) == (0, "stored as document 1\n", "")
    assert oppu("note", GARDEN) == (0, "already stored as document 1\n", "")
    assert oppu("note", "--title", "Bike", BIKE)[1] == "stored as document 2\n"

    status, out, _ = oppu("list")
    lines = out.splitlines()
    assert status == 0 and len(lines) == 2
    assert lines[0].split()[:2] == ["2", "note"] and lines[0].endswith("words  Bike")
    assert lines[1].split()[:2] == ["1", "note"] and "My tomatoes split again" in lines[1]
    assert oppu("list", "--filter", "bicycle")[1].splitlines()[0].endswith("Bike")

    status, out, _ = oppu("search", "watering", "tomatoes", "-k", "1")
    first, text = out.splitlines()
    assert status == 0 and first.startswith("[0.") and first.endswith("(document 1)")
    assert text.strip() == GARDEN

    words = len(GARDEN.split()) + len(BIKE.split())
    assert oppu("stats") == (
        0, f"documents: 2\nwords: {words}\nwords since the last adapter: {words}\n", "")
    assert oppu("forget", "1") == (0, "forgot document 1\n", "")
    assert oppu("stats")[1].startswith(f"documents: 1\nwords: {len(BIKE.split())}\n")
    assert oppu("forget", "1") == (1, "", "oppu: no document with id 1\n")


def test_add_reports_each_file_and_a_summary(oppu, tmp_path):
    folder = tmp_path / "writing"
    folder.mkdir()
    (folder / "garden.txt").write_text(GARDEN)
    (folder / "again.md").write_text(GARDEN + "\n")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n")
    status, out, err = oppu("add", str(folder))
    assert status == 0, (out, err)
    assert out.splitlines() == [
        f"added     {folder / 'again.md'}",
        f"duplicate {folder / 'garden.txt'} (its text is already stored)",
        f"skipped   {folder / 'photo.png'} ({UNSUPPORTED_PNG})",
        "1 added, 1 duplicate, 1 skipped",
    ]
    assert "3/3" in err  # the progress bar

    status, out, _ = oppu("add", str(tmp_path / "missing.txt"))
    assert status == 1
    assert out.splitlines()[0] == f"skipped   {tmp_path / 'missing.txt'} (no such file)"


def test_list_filter_finds_an_imported_file_by_its_name(oppu, tmp_path):
    notes = tmp_path / "home" / "sourdough-notes.md"
    notes.parent.mkdir()
    notes.write_text("# Feeding the **starter**\n\n" + GARDEN)
    assert oppu("add", str(notes))[0] == 0
    [line] = oppu("list", "--filter", "sourdough-notes")[1].splitlines()
    assert line.split()[:2] == ["1", "file"] and line.endswith("words  Feeding the starter")
    assert oppu("list", "--filter", "home") == (0, "nothing matches\n", "")


def test_ctrl_c_during_add_ends_between_files_and_lists_what_was_stored(oppu, tmp_path,
                                                                          monkeypatch):
    import os
    import signal

    from oppu.core.cli import writing_commands

    monkeypatch.setattr("oppu.storage.writing.EMBED_GROUP", 1)  # store each file when read
    files = [tmp_path / f"{i}.txt" for i in range(4)]
    for i, path in enumerate(files):
        path.write_text(f"Distinct entry number {i} about the allotment.")

    class InterruptedAfterOne(writing_commands.ProgressBar):
        def __call__(self, progress):
            super().__call__(progress)
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C once

    monkeypatch.setattr(writing_commands, "ProgressBar", InterruptedAfterOne)
    status, out, err = oppu("add", *map(str, files))
    assert status == 130
    assert out.splitlines() == [f"added     {files[0]}", "1 added, 0 duplicate, 0 skipped"]
    assert "interrupted: stopped after 1 of 4 files" in err
    assert [line.split()[-1] for line in oppu("list")[1].splitlines()] == ["0"]  # titles


def test_empty_profile_says_how_to_start(oppu):
    assert oppu("list") == (0, "nothing stored yet: try `oppu note` or `oppu add`\n", "")
    assert oppu("search", "anything") == (0, "no passages found\n", "")
    assert oppu("stats")[1].startswith("documents: 0\n")


def test_config_shows_changes_and_refuses_bad_values(oppu):
    status, out, _ = oppu("config", "retrieval_k")
    assert status == 0 and out.startswith("retrieval_k = 4    # ")
    assert oppu("config", "retrieval_k", "7")[1].startswith("retrieval_k = 7")
    assert oppu("config", "retrieval_k")[1].startswith("retrieval_k = 7")
    assert "mail_addresses = " in oppu("config")[1]
    assert oppu("config", "retrieval_k", "lots")[0] == 1
    assert oppu("config", "base_model", "/nowhere/model.gguf")[0] == 1
    assert oppu("config", "base_model")[1].startswith("base_model = bundled")
    status, out, err = oppu("config", "bogus")
    assert (status, out) == (1, "")
    assert err == "oppu: unknown setting 'bogus'\n"


@pytest.mark.parametrize(("args", "message"), [
    (["forget", "not-a-number"], "not a document id: 'not-a-number'"),
    (["forget", "99999999999999999999999"], "not a document id"),
    (["search", "-k", "0", "x"], "give a number from 1 to 100, not '0'"),
    # `oppu add "$DIR"` with DIR unset would otherwise import the current folder
    (["add", "notes", ""], "argument paths: an empty path (an unset variable?)"),
    (["export", "-o", " "], "argument -o/--output: an empty path"),
    (["import-adapter", ""], "argument path: an empty path"),
])
def test_a_bad_command_line_is_a_usage_error(oppu, capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_an_empty_profile_name_is_an_error_not_the_default_profile(capsys, embedder):
    assert main(["--profile", "", "note", "hello"]) == 1  # e.g. an unset variable in cron
    assert "invalid profile name ''" in capsys.readouterr().err


def test_forget_goes_on_past_a_missing_id_and_says_which(oppu):
    oppu("note", GARDEN)
    oppu("note", BIKE)
    assert oppu("forget", "1", "7", "2", "2") == (
        1, "forgot document 1\nforgot document 2\n", "oppu: no document with id 7\n")
    assert oppu("stats")[1].startswith("documents: 0\n")


def test_forgetting_drops_the_cached_answers_about_the_writing(oppu):
    """The base model's replay answers may quote any document: forgetting one drops them."""
    from oppu.core.profile import Profile
    from oppu.trainer.answer_replay import ANSWER_CACHE_FILE

    oppu("note", GARDEN)
    with Profile("cli") as profile:
        cache = profile.runs_dir / ANSWER_CACHE_FILE
    cache.write_text('{"key": [1, 2, 3]}')
    assert oppu("forget", "1")[0] == 0 and not cache.exists()


def test_list_filter_is_plain_text_and_notes_come_from_stdin(oppu, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("A note piped in: 100% done.\n"))
    assert oppu("note", "--title", "   ", "-") == (0, "stored as document 1\n", "")
    oppu("note", BIKE)
    [line] = oppu("list", "--filter", "100%")[1].splitlines()
    assert line.endswith("A note piped in: 100% done.")
    assert oppu("list", "--filter", "_") == (0, "nothing matches\n", "")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("Caf\xe9 au lait.".encode("cp1252"))))
    assert oppu("note", "-") == (  # read as a file would be, and said so
        0, "stored as document 3\n", "note: standard input: not UTF-8: read as Windows-1252\n")
    assert oppu("list", "--filter", "Caf\xe9")[1].rstrip().endswith("Caf\xe9 au lait.")
    assert oppu("note", " ") == (1, "", "oppu: nothing to store: the note is empty\n")
    assert oppu("search", " ") == (1, "", "oppu: nothing to search for: the query is empty\n")
    assert oppu("search", "\x1b\u200b") == oppu("search", " ")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(bytes(range(256)) * 4)))
    assert oppu("note", "-") == (  # an image piped by mistake
        1, "", "oppu: nothing stored: standard input is binary data, not text\n")
    assert oppu("stats")[1].startswith("documents: 3\n")
    assert oppu("config", "max_file_mb", "0.1")[0] == 0  # as `oppu add` limits a file
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"words " * 20_000)))
    over = "standard input is over the 102.4 KB limit (`oppu config max_file_mb` sets it)"
    assert oppu("note", "-") == (1, "", f"oppu: nothing stored: {over}\n")
    assert oppu("note", "\u200b \ufeff") == (1, "", "oppu: nothing to store: the note is empty\n")
    assert oppu("stats")[1].startswith("documents: 3\n")


def test_a_long_note_shows_its_passages_being_indexed(oppu, monkeypatch):
    monkeypatch.setattr("oppu.storage.writing.EMBED_SLICE", 2)
    diary = "\n\n".join(f"Day {i}: " + "rain and a long walk. " * 60 for i in range(5))
    monkeypatch.setattr("sys.stdin", io.StringIO(diary))
    status, out, err = oppu("note", "-")
    assert (status, out) == (0, "stored as document 1\n")
    assert err.splitlines()[-1] == ("index      [##############################] 10/10 passages "
                                    "of your writing")


def test_list_and_search_show_control_characters_escaped(oppu):
    """A title with a newline or a terminal escape stays on its line, and inert."""
    assert oppu("note", "--title", "diary\nentry \x1b[31mRED", BIKE)[0] == 0
    [line] = oppu("list")[1].splitlines()
    assert line.endswith("diary\\nentry \\x1b[31mRED") and "\x1b" not in line
    first, _text = oppu("search", "bicycle chain")[1].splitlines()
    assert "diary\\nentry \\x1b[31mRED" in first


def test_a_fresh_process_prints_only_the_answer(oppu_home):
    """Loading the embedder must not draw transformers' "Loading weights" bar."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from oppu.core.cli import main; sys.exit(main())",
         "note", "Quiet", "please."],
        check=False, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout, done.stderr) == (0, "stored as document 1\n", "")


def test_list_shows_times_in_the_users_time_zone(oppu, monkeypatch):
    """The store keeps UTC; the app showed local times, the command line UTC unlabelled."""
    import time
    from datetime import UTC, datetime

    monkeypatch.setenv("TZ", "Asia/Kathmandu")  # UTC+05:45 all year
    time.tzset()
    try:
        oppu("note", GARDEN)
        shown = oppu("list")[1].split()[2:4]
        now = datetime.now(UTC).astimezone()
        stored = datetime.strptime(" ".join(shown), "%Y-%m-%d %H:%M").replace(tzinfo=now.tzinfo)
        assert abs((now - stored).total_seconds()) < 120
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_choosing_the_training_device_says_what_training_will_use(oppu):
    """`training_device cuda` on a machine without CUDA was accepted in silence and failed
    only mid-run, after the base model was prepared."""
    import torch

    status, out, _ = oppu("config", "training_device", "cuda")
    assert status == 0
    expected = ("Training will use the GPU" if torch.cuda.is_available() else
                "Training cannot run: training device 'cuda' was asked for but no CUDA GPU is "
                "available. Choose auto (the GPU when there is one) or cpu.")
    assert out.startswith(expected)
