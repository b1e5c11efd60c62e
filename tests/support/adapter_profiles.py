"""Profiles holding an adapter version as a training run leaves one, for the adapter
file tests (their fixtures are in tests/core/conftest.py)."""

import shutil

from oppu.core.adapters import list_adapters
from oppu.core.profile import Profile
from oppu.storage.models import Adapter
from oppu.trainer.prepare import sha256_file
from oppu.trainer.versions import app_version, recorded_path, write_meta, write_model_files


def open_profile(name, base):
    profile = Profile(name)
    profile.set("base_model", str(base))
    return profile


def install_trained_version(profile, adapter_dir, base) -> str:
    """An adapter version laid out as the training job leaves one, active."""
    folder = profile.adapters_dir / "v1"
    shutil.copytree(adapter_dir, folder / "peft")
    sha = sha256_file(base)
    write_model_files(folder, base, sha)
    write_meta(folder, {"version": "v1", "run_id": 1, "train_words": 1234,
                        "metrics": {"new": {"loss": 2.5}, "base": {"loss": 3.0}},
                        "config": {"rank": 8}, "created": "2026-01-01T00:00:00",
                        "app_version": app_version()})
    with profile.store.write() as session:
        session.add(Adapter(version="v1", path=recorded_path(profile.folder, folder),
                            base_name=base.name,
                            base_sha256=sha, origin="trained", is_active=True,
                            metrics={"new": {"loss": 2.5}}, words_trained=1234))
    return "v1"


def snapshot(profile):
    files = sorted(str(p.relative_to(profile.folder)) for p in profile.adapters_dir.rglob("*"))
    rows = [(a.version, str(a.path), a.is_active) for a in list_adapters(profile)]
    return files, rows
