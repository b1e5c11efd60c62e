"""Atomic writes: the final name holds the whole new content, or the old one, never a part."""

import os

import pytest

from oppu.storage.atomic import (
    TEMP_PREFIX,
    atomic_path,
    move_in,
    staged_dir,
    write_bytes,
    write_text,
)


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["out.bin"]
    assert write_text(tmp_path / "deep" / "x.txt", "ü").read_text(encoding="utf-8") == "ü"


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"), atomic_path(target) as temp:
        temp.write_bytes(b"half")
        assert temp.parent == tmp_path and temp.name.startswith(TEMP_PREFIX)
        raise OSError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_folder_appears_complete_or_not_at_all(tmp_path):
    final = tmp_path / "v1"
    with pytest.raises(RuntimeError), staged_dir(tmp_path) as staged:
        (staged / "a.txt").write_text("a")
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []

    with staged_dir(tmp_path) as staged:
        (staged / "sub").mkdir()
        (staged / "sub" / "b.txt").write_text("b")
        move_in(staged, final)
    assert (final / "sub" / "b.txt").read_text() == "b"
    assert os.listdir(tmp_path) == ["v1"]


def test_an_existing_folder_is_never_replaced(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "kept.txt").write_text("kept")
    with pytest.raises(FileExistsError), staged_dir(tmp_path) as staged:
        move_in(staged, tmp_path / "v1")
    assert os.listdir(tmp_path) == ["v1"]
    assert os.listdir(tmp_path / "v1") == ["kept.txt"]


def test_a_link_is_written_through_and_a_device_or_pipe_never_replaced(tmp_path):
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    write_bytes(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(OSError, match="exists and is not a regular file"):
        write_bytes(pipe, b"data")
    assert pipe.exists() and not pipe.is_file()


def test_an_error_names_the_file_asked_for_not_the_temporary(tmp_path):
    """An export to a full disk said "No space left on device: …/.oppu-partial-h5utsu9f.zip"."""
    target = tmp_path / "out.bin"
    with pytest.raises(OSError) as failed, atomic_path(target) as temp:
        raise OSError(28, "No space left on device", str(temp))
    assert failed.value.filename == str(target) and TEMP_PREFIX not in str(failed.value)
    assert failed.value.errno == 28 and os.listdir(tmp_path) == []


def test_a_temporary_a_killed_process_left_is_removed_by_the_next_write(tmp_path):
    """A killed `oppu export` left a hidden 145 MB .oppu-partial-*.gguf in the user's folder
    for good: no one else looks there."""
    from tests.support.processes import dead_pid

    left = tmp_path / f"{TEMP_PREFIX}{dead_pid()}-abc.gguf"
    left.write_bytes(b"half a merged model")
    running = tmp_path / f"{TEMP_PREFIX}{os.getpid()}-def.gguf"  # a write still going on
    running.write_bytes(b"being written")
    write_bytes(tmp_path / "mine.gguf", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "mine.gguf"]
