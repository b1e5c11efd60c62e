"""`oppu-desktop`: the window."""

import sys


def main() -> int:
    from oppu.storage.privacy import go_offline

    go_offline()
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication(sys.argv)
    label = QLabel("OPPU desktop")
    label.resize(480, 320)
    label.show()
    return app.exec()
