"""Icons and the style sheet, read from the installed `oppu.assets` package, never by path."""

from importlib.resources import files

from PySide6.QtGui import QIcon, QPixmap

ASSETS = "oppu.assets"


def style_sheet() -> str:
    """The style sheet, its `{assets}` placeholder pointing at the installed icons."""
    folder = files(ASSETS)
    text = folder.joinpath("oppu.qss").read_text(encoding="utf-8")
    return text.replace("{assets}", str(folder).replace("\\", "/"))


def icon(name: str) -> QIcon:
    """The icon `name` from its SVG, with the PNG as a fallback where SVG cannot be read."""
    result = QIcon()
    for suffix in ("svg", "png"):
        resource = files(ASSETS).joinpath(f"{name}.{suffix}")
        if resource.is_file():
            pixmap = QPixmap()
            if pixmap.loadFromData(resource.read_bytes()):
                result.addPixmap(pixmap)
    return result
