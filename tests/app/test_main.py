"""The `oppu-desktop` entry point, as a user starts it: its own process, fresh data root."""

import os
import subprocess
import sys

HEAVY = ("sqlalchemy", "torch", "llama_cpp", "chromadb", "sentence_transformers")


def run_app(oppu_home, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPPU_HOME=str(oppu_home), QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "oppu.app.main", *flags], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_app_opens_a_fresh_data_root_and_quits_cleanly(oppu_home):
    done = run_app(oppu_home, "--exit-when-ready")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("oppu-ready ")
    assert (oppu_home / "profiles" / "default" / "oppu.db").is_file()
    assert (oppu_home / "desktop.ini").is_file()
    assert "Traceback" not in done.stderr


def test_the_window_is_built_without_core_or_heavy_libraries():
    """What `main` shows first imports Qt and our pages only; core loads once it is up."""
    code = ("import sys, oppu.app.shell, oppu.app.main; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"
