"""Packages for the wheel: every folder with an __init__.py under the folders that
pyproject.toml maps into `oppu` (tool.setuptools.package-dir), so a new subpackage ships
without anyone editing a list. All other configuration lives in pyproject.toml."""

import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def oppu_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = []
    for name, folder in config["tool"]["setuptools"]["package-dir"].items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT / folder).parts
            packages.append(".".join((name, *parts)))
    return packages


setup(packages=oppu_packages())
