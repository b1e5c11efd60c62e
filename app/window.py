"""The main window: a sidebar of pages, a profile switcher and a status bar. No logic."""

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from oppu.app.resources import icon
from oppu.app.widgets import keys_text

NEW_PROFILE = "\0new"  # item data of the "New profile…" entry


def desktop_settings(data_root: Path) -> QSettings:
    """Window state lives with the user's data (OPPU_HOME), not in the platform registry."""
    return QSettings(str(data_root / "desktop.ini"), QSettings.Format.IniFormat)


class MainWindow(QMainWindow):
    profileRequested = Signal(str)
    newProfileRequested = Signal(str)  # a name typed for a new profile
    pageShown = Signal(str)
    closing = Signal()
    exposed = Signal()  # once, when the window first reaches the screen

    def __init__(self, pages: list[tuple[str, str, QWidget]], state: QSettings):
        """`pages`: (key, caption, widget) in sidebar order; icons are named after the key."""
        super().__init__()
        self.state = state
        self._profile = ""
        self.was_exposed = False
        self.setWindowTitle("OPPU")
        self.setWindowIcon(icon("oppu"))
        self.page_keys = [key for key, _caption, _widget in pages]
        self.stack = QStackedWidget()
        self.nav = QListWidget()
        self.nav.setObjectName("Sidebar")
        self.nav.setAccessibleName("Pages")
        for number, (key, caption, widget) in enumerate(pages, 1):
            item = QListWidgetItem(icon(key), caption, self.nav)
            shortcut = QShortcut(QKeySequence(f"Ctrl+{number}"), self)
            shortcut.activated.connect(lambda key=key: self.show_page(key))
            item.setToolTip(f"{caption} ({keys_text(shortcut.key())})")
            self.stack.addWidget(widget)
        self.nav.currentRowChanged.connect(self._show_row)

        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self._sidebar())
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self._status_bar()
        self.resize(1180, 760)
        self.restore_state()

    def _sidebar(self) -> QWidget:
        panel = QWidget()
        panel.setObjectName("SidebarPanel")
        panel.setFixedWidth(190)
        box = QVBoxLayout(panel)
        box.setContentsMargins(0, 0, 0, 8)
        box.setSpacing(2)
        title = QLabel("OPPU")
        title.setObjectName("SidebarTitle")
        caption = QLabel("Profile")
        caption.setObjectName("SidebarCaption")
        self.profiles = QComboBox()
        self.profiles.setToolTip("Each profile is one person: their own writing, chats and model")
        self.profiles.activated.connect(self._profile_chosen)
        box.addWidget(title)
        box.addWidget(caption)
        box.addWidget(self.profiles)
        box.addWidget(self.nav, 1)
        return panel

    def _status_bar(self) -> None:
        bar = self.statusBar()
        self.base_label = QLabel()
        self.adapter_label = QLabel()
        self.adapter_shown: tuple[str | None, bool] = (None, False)
        self.adapter_used_in_chat = True
        self.training_label = QLabel()
        self.training_bar = QProgressBar()
        self.training_bar.setFixedWidth(120)
        self.training_bar.setRange(0, 100)
        self.training_bar.setTextVisible(False)
        bar.addWidget(self.base_label)
        bar.addWidget(self.adapter_label)
        bar.addPermanentWidget(self.training_label)
        bar.addPermanentWidget(self.training_bar)
        self.set_training(None)

    # -- what the controller calls ------------------------------------------------------

    def set_profiles(self, names: list[str], current: str) -> None:
        self.profiles.blockSignals(True)
        self.profiles.clear()
        for name in names:
            self.profiles.addItem(name, name)
        self.profiles.insertSeparator(self.profiles.count())
        self.profiles.addItem("New profile…", NEW_PROFILE)
        self.profiles.setCurrentIndex(self.profiles.findData(current))
        self.profiles.blockSignals(False)
        self._profile = current

    def set_base_model(self, text: str) -> None:
        self.base_label.setText(f"Base model: {text}")

    def set_adapter(self, version: str | None, has_versions: bool = False) -> None:
        self.adapter_shown = (version, has_versions)
        self._show_adapter()

    def set_adapter_used_in_chat(self, used: bool) -> None:
        """Chat's Personal model toggle: off there, the status bar says so."""
        self.adapter_used_in_chat = used
        self._show_adapter()

    def _show_adapter(self) -> None:
        version, has_versions = self.adapter_shown
        off_here = "" if self.adapter_used_in_chat else " (off in this chat)"
        self.adapter_label.setText(f"Your model: {version}{off_here}" if version else
                                   "Your model: off (base model only)" if has_versions
                                   else "Your model: not trained yet")

    def set_training(self, caption: str | None, percent: int | None = None) -> None:
        """"Retraining… N% (CAPTION)"; a busy bar where the percent is not known; `None`
        hides the indicator."""
        running = caption is not None
        self.training_label.setVisible(running)
        self.training_bar.setVisible(running)
        if running:
            self.training_label.setText("Retraining…" + (f" {percent}%" if percent is not None
                                                         else "") + f" ({caption})")
            self.training_bar.setRange(0, 0 if percent is None else 100)
            self.training_bar.setValue(percent or 0)

    def show_page(self, key: str) -> None:
        self.nav.setCurrentRow(self.page_keys.index(key))

    def current_page(self) -> str:
        return self.page_keys[max(self.nav.currentRow(), 0)]

    def restore_state(self) -> None:
        geometry = self.state.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        page = self.state.value("window/page", "chat")
        self.show_page(page if page in self.page_keys else self.page_keys[0])

    def save_state(self) -> None:
        self.state.setValue("window/geometry", self.saveGeometry())
        self.state.setValue("window/page", self.current_page())
        self.state.sync()

    # -- events -------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        handle = self.windowHandle()
        if not self.was_exposed and handle is not None:
            handle.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (event.type() == QEvent.Type.Expose and not self.was_exposed
                and watched is self.windowHandle() and self.windowHandle().isExposed()):
            self.was_exposed = True
            watched.removeEventFilter(self)
            self.exposed.emit()
        return False

    def _show_row(self, row: int) -> None:
        if row >= 0:
            self.stack.setCurrentIndex(row)
            self.pageShown.emit(self.page_keys[row])

    def _profile_chosen(self, index: int) -> None:
        name = self.profiles.itemData(index)
        if name == NEW_PROFILE:
            self.ask_new_profile()
        else:
            self.profileRequested.emit(name)

    def ask_new_profile(self, typed: str = "", problem: str = "") -> None:
        """The name of a new profile; asked again, with what was typed and why it cannot be,
        when the controller finds it unfit."""
        question = "Name of the new profile (one per person):"
        name, ok = QInputDialog.getText(self, "New profile",
                                        f"{problem}\n\n{question}" if problem else question,
                                        text=typed)
        if not ok or not name.strip():
            self.profiles.setCurrentIndex(self.profiles.findData(self._profile))
            return
        self.newProfileRequested.emit(name.strip())

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_state()
        self.closing.emit()
        super().closeEvent(event)
        event.accept()
