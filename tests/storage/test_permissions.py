"""The user's data is private: folders 0700, files 0600, the database and Chroma's included."""

import stat

import pytest

from oppu.core.profile import Profile
from oppu.storage.paths import InvalidProfileName, data_root, list_profiles, profile_dir


def modes(root) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")]}


def test_profile_folders_and_files_are_private(oppu_home, embedder, tmp_path):
    with Profile("tester", embedder=embedder) as profile:
        profile.writing.add_note("Private words that only the owner may read.")
        # While open: the SQLite WAL and shared-memory files exist too.
        found = modes(oppu_home)
        assert {"profiles/tester/oppu.db", "profiles/tester/oppu.db-wal",
                "profiles/tester/chroma/chroma.sqlite3"} <= found.keys()
        assert any(name.endswith(".bin") for name in found)  # Chroma's HNSW segment files
        profile.adapters_dir, profile.runs_dir  # noqa: B018 - created on first use
        found = modes(oppu_home)
    folders = {n for n in found if (oppu_home / n).is_dir()}
    assert {n: m for n, m in found.items() if n in folders} == dict.fromkeys(folders, 0o700)
    assert {n: m for n, m in found.items() if n not in folders} == {
        n: 0o600 for n in found if n not in folders}


def test_data_root_follows_oppu_home_and_profiles_are_listed(oppu_home, embedder):
    assert data_root() == oppu_home
    assert list_profiles() == []
    with Profile("work notes", embedder=embedder):
        pass
    assert list_profiles() == ["work notes"]
    assert profile_dir("work notes") == oppu_home / "profiles" / "work notes"


@pytest.mark.parametrize("bad", ["..", "../evil", "a/b", "", ".hidden", "x" * 65,
                                 "nl\n", "trailing "])  # look like another name
def test_profile_names_cannot_escape_the_data_root(oppu_home, bad):
    with pytest.raises(InvalidProfileName, match="invalid profile name"):
        profile_dir(bad)
    assert not (oppu_home / "profiles").exists() or list_profiles() == []


@pytest.mark.parametrize(("name", "reason"), [
    ("CON", "Windows keeps it for a device"), ("lpt1.notes", "Windows keeps it for a device"),
    ("Aux..", "Windows keeps it for a device"), ("con .txt", "Windows keeps it for a device"),
    ("notes.", "cannot end with '.'"),
    ("Work", "a profile named 'work' exists, and Windows and macOS do not tell"),
])
def test_a_new_profile_needs_a_name_every_os_can_hold(oppu_home, embedder, name, reason):
    with Profile("work", embedder=embedder):
        pass
    with pytest.raises(InvalidProfileName, match=reason):
        profile_dir(name)
    assert list_profiles() == ["work"]


def test_a_profile_that_exists_opens_under_a_name_no_longer_allowed_for_new_ones(oppu_home):
    made_by_hand = oppu_home / "profiles" / "con"
    made_by_hand.mkdir(parents=True)
    assert profile_dir("con") == made_by_hand
    assert profile_dir("Console").is_dir()  # only whole device names are kept from new ones


def test_a_bad_profile_name_is_told_the_rules_and_not_echoed_at_length(oppu_home):
    with pytest.raises(InvalidProfileName) as raised:
        profile_dir("-rf" + "x" * 300)
    message = str(raised.value)
    assert "up to 64 plain letters" in message and "after the first character" in message
    assert len(message) < 200
