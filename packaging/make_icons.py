"""Render the app icon (assets/oppu.svg) into the formats installers need, in assets/:
oppu.png (512 px; Linux hicolor icons), oppu.ico (Windows) and oppu.icns (macOS).

Run by packaging/build.sh; redoes nothing while the outputs are newer than the SVG.
    python packaging/make_icons.py [--force]
"""

import io
import os
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SOURCE = ASSETS / "oppu.svg"
OUTPUTS = {"png": ASSETS / "oppu.png", "ico": ASSETS / "oppu.ico", "icns": ASSETS / "oppu.icns"}
ICO_SIZES = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]


def render_png(svg: Path, size: int) -> bytes:
    """The SVG drawn at size x size through Qt's SVG renderer (no display needed)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 (fonts need it)
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data)


def make_icons(force: bool = False) -> list[Path]:
    """Write the outputs that are missing or older than the SVG; return those written."""
    from PIL import Image

    stale = [path for path in OUTPUTS.values()
             if force or not path.exists() or path.stat().st_mtime < SOURCE.stat().st_mtime]
    if not stale:
        return []
    image = Image.open(io.BytesIO(render_png(SOURCE, 1024))).convert("RGBA")
    for path in stale:
        if path.suffix == ".png":
            image.resize((512, 512), Image.Resampling.LANCZOS).save(path)
        elif path.suffix == ".ico":
            image.save(path, sizes=ICO_SIZES)
        else:
            image.save(path)  # Pillow's ICNS writer makes every size from 16 to 1024
    return stale


if __name__ == "__main__":
    if not SOURCE.is_file():
        sys.exit(f"make_icons: {SOURCE} is missing")
    for written in make_icons(force="--force" in sys.argv):
        print(f"wrote {written.relative_to(ASSETS.parent)}")
