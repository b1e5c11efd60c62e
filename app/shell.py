"""The window and its pages, built from Qt alone, so they can be on screen before core loads.

`main` shows the shell first and builds the `AppController` (which imports core, SQLAlchemy
and the rest) once the window is exposed; tests build both at once.
"""

from pathlib import Path

from oppu.app.chat_page import ChatPage
from oppu.app.model_page import ModelPage
from oppu.app.settings_page import SettingsPage
from oppu.app.window import MainWindow, desktop_settings
from oppu.app.writing_page import WritingPage


class Shell:
    def __init__(self, data_root: Path):
        self.state = desktop_settings(data_root)
        self.chat_page = ChatPage()
        self.writing_page = WritingPage()
        self.model_page = ModelPage()
        self.settings_page = SettingsPage()
        self.window = MainWindow([
            ("chat", "Chat", self.chat_page),
            ("writing", "My writing", self.writing_page),
            ("model", "My model", self.model_page),
            ("settings", "Settings", self.settings_page),
        ], self.state)
