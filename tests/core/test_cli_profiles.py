"""`oppu profiles`: listing the profiles and deleting one for good, run in-process."""

import io

import pytest

from oppu.core.cli import main
from oppu.core.profile import Profile
from oppu.storage.paths import list_profiles


@pytest.fixture
def two(oppu_home, embedder):
    """Two profiles with writing: 'ann' (two notes) and 'bob' (one)."""
    for name, notes in {"ann": ["Bees swarmed twice in May.", "The starter is Gerald."],
                        "bob": ["My chain keeps slipping on the hill."]}.items():
        with Profile(name, embedder=embedder) as profile:
            for note in notes:
                profile.writing.add_note(note)
    return oppu_home


def oppu(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_profiles_are_listed_with_their_writing(two, capsys):
    status, out, _ = oppu(capsys, "profiles")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert status == 0 and rows == {"ann": ["2", "9", "-"], "bob": ["1", "7", "-"]}


def test_delete_removes_one_profile_and_nothing_else(two, capsys):
    bob_folder = two / "profiles" / "bob"
    assert oppu(capsys, "profiles", "--delete", "ann", "--yes")[0] == 0
    assert list_profiles() == ["bob"] and not (two / "profiles" / "ann").exists()
    assert (bob_folder / "oppu.db").is_file()
    assert oppu(capsys, "--profile", "bob", "stats")[1].startswith("documents: 1\n")


def test_delete_asks_first_and_refuses_what_it_cannot_do(two, capsys, monkeypatch):
    status, _, err = oppu(capsys, "profiles", "--delete", "carol", "--yes")
    assert status == 1 and "no profile 'carol' (profiles: ann, bob)" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("ann\n"))  # not a terminal: no prompt
    status, _, err = oppu(capsys, "profiles", "--delete", "ann")
    assert status == 1 and "cannot be undone: add --yes" in err

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal("bob\n"))  # the wrong name typed
    assert oppu(capsys, "profiles", "--delete", "ann")[1].endswith("nothing deleted\n")
    monkeypatch.setattr("sys.stdin", Terminal("ann\n"))
    assert oppu(capsys, "profiles", "--delete", "ann")[0] == 0
    assert list_profiles() == ["bob"]


def test_a_profile_in_training_is_not_deleted(two, capsys):
    from oppu.core.training import create_run

    with Profile("bob") as profile:
        run = create_run(profile, {"min_words": 1})  # a live run; its few words do not matter
    status, _, err = oppu(capsys, "profiles", "--delete", "bob", "--yes")
    assert status == 1 and f"training run {run} of 'bob' is still running" in err
    assert list_profiles() == ["ann", "bob"]


def test_the_base_model_does_not_change_under_a_training_run(two, capsys):
    from oppu.core.training import create_run

    with Profile("bob") as profile:
        run = create_run(profile, {"min_words": 1})  # a live run; its few words do not matter
    for command in (("base", "use", "bundled"), ("config", "base_model", "bundled")):
        status, _, err = oppu(capsys, "--profile", "bob", *command)
        assert status == 1 and err == (f"oppu: training run {run} of 'bob' is still running: "
                                       "stop it or let it finish, then change the base model\n")


def test_a_profile_in_use_is_left_whole(two, capsys, monkeypatch):
    """Where open files cannot be renamed (Windows), nothing of the profile is deleted."""
    from pathlib import Path

    real_rename = Path.rename

    def in_use(self, target):
        if self.name == "ann":
            raise PermissionError(32, "The process cannot access the file", str(self))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", in_use)
    status, _, err = oppu(capsys, "profiles", "--delete", "ann", "--yes")
    assert status == 1 and "'ann' is in use by another program" in err
    assert "nothing was deleted" in err and list_profiles() == ["ann", "bob"]
    assert oppu(capsys, "--profile", "ann", "stats")[1].startswith("documents: 2\n")


def test_a_deletion_cut_short_is_not_a_profile(two, capsys):
    leftover = two / "profiles" / ".oppu-partial-deleted-ann"
    (two / "profiles" / "ann").rename(leftover)  # killed before its files were removed
    assert list_profiles() == ["bob"]
    with Profile("ann") as fresh:
        pass
    assert oppu(capsys, "profiles", "--delete", "ann", "--yes")[0] == 0
    assert not leftover.exists() and not fresh.folder.exists()


def test_a_mistyped_profile_is_an_error_not_a_new_profile(two, capsys):
    for command in (["stats"], ["list"], ["adapters"], ["ask", "Hello?"], ["train"]):
        status, _, err = oppu(capsys, "--profile", "an", *command)
        assert status == 1 and "no profile 'an' (profiles: ann, bob)" in err
    assert list_profiles() == ["ann", "bob"]
    assert oppu(capsys, "--profile", "carol", "note", "A first note.")[0] == 0  # storing makes one
    assert list_profiles() == ["ann", "bob", "carol"]


def test_rename_moves_a_profile_with_everything_it_holds(two, capsys, embedder):
    status, out, _ = oppu(capsys, "profiles", "--rename", "ann", "Ann Smith")
    assert status == 0 and out == "renamed profile 'ann' to 'Ann Smith'\n"
    assert list_profiles() == ["Ann Smith", "bob"] and not (two / "profiles" / "ann").exists()
    with Profile("Ann Smith", embedder=embedder) as renamed:
        assert renamed.writing.stats().documents == 2
        [hit, *_] = renamed.writing.search("Who is the starter?")  # the index moved along
        assert "Gerald" in hit.text


def test_rename_may_change_just_the_case(two, capsys):
    assert oppu(capsys, "profiles", "--rename", "ann", "Ann")[0] == 0
    assert list_profiles() == ["Ann", "bob"]


def test_rename_refuses_what_it_cannot_do_and_changes_nothing(two, capsys):
    from oppu.core.training import create_run

    for new_name, reason in [("bob", "a profile named 'bob' already exists"),
                             ("../x", "invalid profile name '../x'"),
                             ("ann", "already called 'ann'"),
                             ("BOB", "a profile named 'bob' exists, and Windows and macOS"),
                             ("nul", "Windows keeps it for a device")]:
        status, _, err = oppu(capsys, "profiles", "--rename", "ann", new_name)
        assert status == 1 and reason in err
    assert oppu(capsys, "profiles", "--rename", "carol", "dan")[2].endswith(
        "no profile 'carol' (profiles: ann, bob)\n")
    with Profile("bob") as profile:
        run = create_run(profile, {"min_words": 1})  # a live run; its few words do not matter
    status, _, err = oppu(capsys, "profiles", "--rename", "bob", "robert")
    assert status == 1 and f"training run {run} of 'bob' is still running" in err
    assert list_profiles() == ["ann", "bob"]
    assert oppu(capsys, "--profile", "ann", "stats")[1].startswith("documents: 2\n")


def test_a_damaged_profile_is_listed_as_such_and_can_be_deleted(two, capsys):
    """Its database is no SQLite file: `oppu profiles` failed for every profile, and the
    way out, --delete, failed too."""
    (two / "profiles" / "bob" / "oppu.db").write_bytes(b"not a database at all " * 500)
    status, out, _ = oppu(capsys, "profiles")
    ann, bob = out.splitlines()[1:]
    assert status == 0 and ann.split()[:3] == ["ann", "2", "9"]
    assert bob.startswith("bob") and "cannot be opened" in bob and "is damaged" in bob
    assert oppu(capsys, "profiles", "--delete", "bob", "--yes")[0] == 0
    assert list_profiles() == ["ann"]


def test_reading_the_settings_of_a_mistyped_profile_does_not_create_it(two, capsys):
    status, _, err = oppu(capsys, "--profile", "ane", "config")
    assert status == 1 and "no profile 'ane'" in err
    assert oppu(capsys, "--profile", "ann", "config", "")[2] == (
        "oppu: say which setting: `oppu config` lists them\n")
    assert list_profiles() == ["ann", "bob"]


def test_a_mistyped_profile_that_stores_nothing_is_not_left_behind(two, capsys, tmp_path):
    broken = tmp_path / "adapter.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    assert oppu(capsys, "--profile", "tpyo", "add", str(tmp_path / "missing.txt"))[0] == 1
    assert oppu(capsys, "--profile", "tpyo", "import-adapter", str(broken))[0] == 1
    assert oppu(capsys, "--profile", "tpyo", "config", "retrieval_k", "abc")[0] == 1
    assert list_profiles() == ["ann", "bob"]
    assert oppu(capsys, "--profile", "dave", "config", "retrieval_k", "3")[0] == 0
    assert list_profiles() == ["ann", "bob", "dave"]  # a stored setting makes it real
    (tmp_path / "note.txt").write_text("A note that makes the profile real.")
    assert oppu(capsys, "--profile", "carol", "add", str(tmp_path / "note.txt"))[0] == 0
    assert list_profiles() == ["ann", "bob", "carol", "dave"]
