"""Icons, the style sheet and the desktop entry come from the installed `oppu.assets`."""

import re
from configparser import ConfigParser
from importlib.resources import files
from pathlib import Path

from oppu.app.resources import icon, style_sheet


def test_every_page_icon_loads_from_svg_and_png(qapp):
    for name in ("chat", "writing", "model", "settings", "oppu"):
        loaded = icon(name)
        assert not loaded.isNull(), name
        assert files("oppu.assets").joinpath(f"{name}.png").is_file()


def test_the_style_sheet_points_at_files_that_exist(qapp):
    text = style_sheet()
    assert "{assets}" not in text
    urls = re.findall(r"url\(([^)]+)\)", text)
    assert urls and all(Path(url).is_file() for url in urls)


def test_the_desktop_entry_starts_the_app():
    entry = ConfigParser(interpolation=None)
    entry.read_string(files("oppu.assets").joinpath("oppu-desktop.desktop").read_text())
    section = entry["Desktop Entry"]
    assert section["Exec"] == "oppu-desktop" and section["Icon"] == "oppu"
    assert section["Type"] == "Application"
