"""Packaging: child processes in a frozen bundle, the wheel's contents, the Linux installer."""

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from oppu.core.child_process import RUN_MODULE_FLAG, python_module_argv, run_module_from_argv

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]


def run(argv, **options) -> subprocess.CompletedProcess:
    """Run a command to completion, its output as text; the caller checks the exit status."""
    return subprocess.run(argv, check=False, capture_output=True, text=True,
                          timeout=options.pop("timeout", 300), **options)


@pytest.fixture
def echo_module(tmp_path, monkeypatch) -> str:
    """An importable module that records the argv it ran with and exits 3."""
    (tmp_path / "argv_echo.py").write_text(textwrap.dedent("""
        import json, sys
        from pathlib import Path
        if __name__ == "__main__":
            Path(sys.argv[1]).write_text(json.dumps(sys.argv[1:]))
            sys.exit(3)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    return "argv_echo"


def test_installed_child_is_python_dash_m(monkeypatch):
    monkeypatch.delattr(sys, "frozen", raising=False)
    argv = python_module_argv("oppu.trainer", "train", "--profile", "p")
    assert argv == [sys.executable, "-m", "oppu.trainer", "train", "--profile", "p"]


def test_frozen_child_reruns_the_bundle_executable(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    argv = python_module_argv("oppu.trainer", "train", "--run", "7")
    assert argv == [sys.executable, RUN_MODULE_FLAG, "oppu.trainer", "train", "--run", "7"]


def test_run_module_runs_it_as_main_with_its_own_arguments(echo_module, tmp_path):
    record = tmp_path / "argv.json"
    with pytest.raises(SystemExit) as stopped:
        run_module_from_argv(["/bundle/oppu", RUN_MODULE_FLAG, echo_module, str(record), "--x"])
    assert stopped.value.code == 3
    assert record.read_text() == f'["{record}", "--x"]'
    assert sys.argv == ["/bundle/oppu", str(record), "--x"]


def test_ordinary_arguments_are_left_to_the_app(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["oppu", "stats"])
    assert run_module_from_argv(["oppu", "stats"]) is False
    assert run_module_from_argv(["oppu"]) is False
    assert sys.argv == ["oppu", "stats"]


@pytest.mark.parametrize("argv", [["oppu", RUN_MODULE_FLAG], ["oppu", RUN_MODULE_FLAG, "--help"]])
def test_run_module_without_a_module_is_a_clear_error(argv):
    with pytest.raises(SystemExit, match="needs a module name"):
        run_module_from_argv(argv)


def test_the_bundle_launcher_runs_children_and_the_command_line(tmp_path):
    """packaging/launcher.py, unfrozen: `--run-module` runs the module, anything else is `oppu`."""
    launcher = [sys.executable, str(ROOT / "packaging" / "launcher.py")]
    data = tmp_path / "in.json"
    data.write_text('{"b": 1, "a": [2]}')
    child = run([*launcher, RUN_MODULE_FLAG, "json.tool", "--sort-keys", str(data)])
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["{", '"a":', "[", "2", "],", '"b":', "1", "}"]
    cli = run([*launcher, "--help"])
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("usage: oppu")


def source_packages() -> set[str]:
    """Every package the source tree maps into `oppu` (folders with an __init__.py)."""
    packages = set()
    for name, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            packages.add(".".join((name, *init.parent.relative_to(ROOT / folder).parts)))
    return packages


def asset_files() -> list[str]:
    folder = ROOT / PACKAGE_DIRS["oppu.assets"]
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """`python -m build` on a copy of the project's packaging inputs (the tree stays clean)."""
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in PACKAGE_DIRS.values():
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # No isolation: the build backend is already installed, and CI may have no network.
    result = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"),
                  str(source)], timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"wheel": next((work / "dist").glob("*.whl")),
            "sdist": next((work / "dist").glob("*.tar.gz")), "work": work}


@pytest.mark.slow
def test_wheel_carries_every_package_the_assets_and_both_commands(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        entry_points_file = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = configparser.ConfigParser()
        entry_points.read_string(wheel.read(entry_points_file).decode())
    assert dict(entry_points["console_scripts"]) == PYPROJECT["project"]["scripts"]
    assert entry_points["console_scripts"]["oppu-desktop"] == "oppu.app.main:main"
    missing_packages = {p for p in source_packages()
                        if f"{p.replace('.', '/')}/__init__.py" not in names}
    assert not missing_packages
    assert {"oppu.png", "oppu.svg", "oppu.qss", "oppu.ico", "oppu.icns"} <= set(asset_files())
    missing_assets = {a for a in asset_files() if f"oppu/assets/{a}" not in names}
    assert not missing_assets
    assert not [n for n in names if n.startswith(("tests/", "bench/", "packaging/"))]


@pytest.mark.slow
def test_sdist_rebuilds_the_same_package(built):
    with tarfile.open(built["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "setup.py", "README.md", "core/child_process.py",
            "assets/oppu.qss"} <= names


@pytest.mark.slow
def test_installed_wheel_runs_from_its_own_copy(built):
    """Install the wheel into a fresh venv (no dependencies: those come from this environment
    through a .pth file, as pipx would have installed them) and run `oppu` from it."""
    env_dir = built["work"] / "venv"
    venv.create(env_dir, with_pip=False)
    env_python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site_packages = run([str(env_python), "-c",
                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(site_packages, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = run([sys.executable, "-m", "pip", "--python", str(env_python), "install",
                   "--no-deps", "--no-index", "--quiet", str(built["wheel"])])
    assert install.returncode == 0, install.stderr
    bin_dir = env_python.parent
    assert (bin_dir / "oppu-desktop").exists() or (bin_dir / "oppu-desktop.exe").exists()
    home = built["work"] / "home"
    environment = {**os.environ, "OPPU_HOME": str(home)}
    config = run([str(bin_dir / "oppu"), "config", "retrieval_k"], env=environment,
                 cwd=built["work"])
    assert config.returncode == 0, config.stderr
    assert config.stdout.startswith("retrieval_k = ")
    assert (home / "profiles" / "default" / "oppu.db").is_file()
    code = ("import oppu.app.main; from importlib.resources import files; "
            "print(oppu.app.main.__file__); "
            "print(len(files('oppu.assets').joinpath('oppu.qss').read_text()))")
    probe = run([str(env_python), "-c", code], env=environment, cwd=built["work"])
    assert probe.returncode == 0, probe.stderr
    module_file, qss_length = probe.stdout.split()
    assert Path(module_file).is_relative_to(Path(site_packages))
    assert int(qss_length) == len((ROOT / "assets" / "oppu.qss").read_text())


@pytest.fixture
def user_home(tmp_path) -> dict[str, str]:
    """An environment whose HOME is an empty folder, with no XDG or OPPU_HOME overrides."""
    home = tmp_path / "home"
    home.mkdir()
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("XDG_") and key not in ("OPPU_HOME", "PREFIX")}
    return {**environment, "HOME": str(home)}


@pytest.fixture
def bundle_layout(tmp_path) -> Path:
    """A folder laid out as build.sh leaves dist/oppu (a real bundle takes minutes to build;
    the installer only moves files, so its executables here just report how they were called)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "assets", bundle / "_internal" / "oppu" / "assets",
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copytree(ROOT / "packaging" / "systemd", bundle / "systemd")
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy2(ROOT / "packaging" / "linux" / script, bundle / script)
    executable = bundle / "oppu"
    executable.write_text('#!/bin/sh\necho "started as $(basename "$0") $*"\n')
    executable.chmod(0o755)
    (bundle / "oppu-desktop").symlink_to("oppu")
    return bundle


@pytest.mark.skipif(sys.platform != "linux", reason="the Linux installer")
def test_linux_install_then_uninstall_keeps_the_data(bundle_layout, user_home):
    home = Path(user_home["HOME"])
    installed = run(["bash", str(bundle_layout / "install.sh"), "--timer"], env=user_home)
    assert installed.returncode == 0, installed.stderr
    local = home / ".local"
    assert run([str(local / "bin" / "oppu-desktop")]).stdout.strip() == "started as oppu-desktop"
    assert (local / "lib" / "oppu" / "_internal" / "oppu" / "assets" / "oppu.qss").is_file()
    entry = (local / "share" / "applications" / "oppu-desktop.desktop").read_text()
    assert f"\nExec={local}/bin/oppu-desktop\n" in entry
    assert "\nIcon=oppu\n" in entry
    icons = local / "share" / "icons" / "hicolor"
    assert (icons / "scalable" / "apps" / "oppu.svg").is_file()
    assert (icons / "512x512" / "apps" / "oppu.png").is_file()
    units = home / ".config" / "systemd" / "user"
    assert f"\nExecStart={local}/bin/oppu train --if-due\n" in (
        units / "oppu-retrain.service").read_text()
    assert (units / "oppu-retrain.timer").is_file()

    data = home / ".local" / "share" / "oppu" / "profiles" / "default"
    data.mkdir(parents=True)
    (data / "oppu.db").write_text("the user's writing")
    removed = run(["bash", str(local / "lib" / "oppu" / "uninstall.sh")], env=user_home)
    assert removed.returncode == 0, removed.stderr
    assert f"Your data (writing, adapters, settings) is still in {home}/.local/share/oppu" in (
        removed.stdout)
    assert not (local / "lib" / "oppu").exists()
    assert not (local / "bin" / "oppu").exists() and not (local / "bin" / "oppu-desktop").exists()
    assert not (local / "share" / "applications" / "oppu-desktop.desktop").exists()
    assert not (units / "oppu-retrain.service").exists()
    assert (data / "oppu.db").read_text() == "the user's writing"


@pytest.mark.skipif(sys.platform != "linux", reason="the Linux installer")
def test_linux_uninstall_deletes_data_only_when_confirmed(bundle_layout, user_home):
    data = Path(user_home["HOME"]) / "elsewhere"
    (data / "profiles").mkdir(parents=True)
    environment = {**user_home, "OPPU_HOME": str(data)}
    uninstall = ["bash", str(bundle_layout / "uninstall.sh"), "--delete-data"]
    refused = run(uninstall, env=environment, input="yes\n")
    assert refused.returncode == 1
    assert f"Not confirmed: your data is still in {data}" in refused.stdout
    assert (data / "profiles").is_dir()
    confirmed = run(uninstall, env=environment, input="delete\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert not data.exists()


def test_linux_installer_refuses_a_folder_without_a_bundle(tmp_path, user_home):
    result = run(["bash", str(ROOT / "packaging" / "linux" / "install.sh"), "--bundle",
                  str(tmp_path)], env=user_home)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"install.sh: no OPPU bundle at {tmp_path}: build one with 'bash packaging/build.sh' "
        "or pass --bundle DIR")
