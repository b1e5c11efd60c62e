"""My writing: a note editor, imports with a per-file report, and the searchable list."""

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from oppu.app import widgets
from oppu.app.list_models import ItemRole, documents_model
from oppu.app.markdown import markdown_html
from oppu.app.tables import FittingTable
from oppu.app.widgets import button, card, hint, page_layout
from oppu.core import SUPPORTED_NAMES, SUPPORTED_SUFFIXES

SOURCES = [("All sources", ""), ("Notes", "note"), ("Chat", "chat"), ("Files", "file"),
           ("Mail", "mail")]
REPORT_MAX_HEIGHT = 160
MIN_NOTE_LINES = 5  # the note and the document being read show at least this many lines
MIN_LIST_LINES = 7  # and the list of documents (its header included)
STATUS_COLORS = {"added": "#1a7f37", "duplicate": widgets.HINT_COLOR, "skipped": "#b42318"}


class WritingPage(QWidget):
    saveNoteRequested = Signal(str, str)  # title, text
    importRequested = Signal(list)  # paths as str
    filterChanged = Signal(str, str)  # query, source
    previewRequested = Signal(int)  # document id
    forgetRequested = Signal(list)  # document ids

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        layout, self.banner = page_layout(self, "My writing")
        # In a small window the page scrolls, as the others do, rather than squeezing the
        # note to a line and cutting the import hint.
        scroll = widgets.VerticalScroll("Page")
        scroll.setAccessibleName("My writing")
        content = QVBoxLayout(scroll.body)
        content.setContentsMargins(0, 0, 0, 0)
        content.addWidget(hint("Everything here is your own writing. It stays on this "
                               "computer; your model learns your voice from it and chat can "
                               "quote it."))
        content.addLayout(self._counters())
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._left_column())
        splitter.addWidget(self._right_column())
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        content.addWidget(splitter, 1)
        layout.addWidget(scroll, 1)
        self._filter_timer = QTimer(self, singleShot=True, interval=250)
        self._filter_timer.timeout.connect(self._emit_filter)

    # -- building -----------------------------------------------------------------------

    def _counters(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.counter_labels = {}
        for key, caption in (("words", "Total words"),
                             ("since", "Words since your last model"),
                             ("documents", "Documents")):
            frame, box = card()
            number = QLabel("–")
            number.setObjectName("BigNumber")
            box.addWidget(number)
            box.addWidget(hint(caption))
            self.counter_labels[key] = number
            row.addWidget(frame)
        return row

    def _left_column(self) -> QWidget:
        column, box = widgets.column(right=8)
        note, note_box = card("New note")
        self.note_title = QLineEdit(placeholderText="Title (optional)", accessibleName="Note title")
        self.note_text = widgets.TextEditor("Write something in your own words…")
        self.note_text.setAccessibleName("Note")
        self.save_note = button("Save note", primary=True)
        self.save_note.clicked.connect(self._save_note)
        self.saving = False
        self.note_text.textChanged.connect(self._enable_saving)
        self._enable_saving()
        note_box.addWidget(self.note_title)
        self.note_text.setMinimumHeight(widgets.lines_high(self.note_text, MIN_NOTE_LINES))
        note_box.addWidget(self.note_text, 1)
        note_box.addWidget(self.save_note, 0, Qt.AlignmentFlag.AlignRight)
        box.addWidget(note, 3)

        imports, import_box = card("Import")
        import_box.addWidget(hint(f"Text, Markdown, Word, OpenDocument, web page and mail files "
                                  f"({' '.join(SUPPORTED_NAMES)}). You can also drop files "
                                  "or folders anywhere on this page."))
        buttons = QHBoxLayout()
        self.import_files = button("Import files…")
        self.import_folder = button("Import folder…")
        self.import_files.clicked.connect(self._pick_files)
        self.import_folder.clicked.connect(self._pick_folder)
        buttons.addWidget(self.import_files)
        buttons.addWidget(self.import_folder)
        buttons.addStretch()
        import_box.addLayout(buttons)
        self.import_progress = QProgressBar()
        self.import_progress.hide()
        import_box.addWidget(self.import_progress)
        self.import_report = QListWidget()
        self.import_report.setObjectName("ImportReport")
        self.import_report.setAccessibleName("What the last import did")
        self.import_report.hide()
        self.import_report.setWordWrap(True)
        self.import_report.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.import_report.setMaximumHeight(REPORT_MAX_HEIGHT)  # the note editor keeps its room
        import_box.addWidget(self.import_report, 1)
        import_box.addStretch()
        box.addWidget(imports, 2)
        return column

    def _right_column(self) -> QWidget:
        column, box = widgets.column(left=8)
        filters = QHBoxLayout()
        self.search = QLineEdit(placeholderText="Search your writing…",
                                accessibleName="Search your writing")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _text: self._filter_timer.start())
        self.source = QComboBox()
        for caption, value in SOURCES:
            self.source.addItem(caption, value)
        self.source.currentIndexChanged.connect(lambda _i: self._emit_filter())
        filters.addWidget(self.search, 1)
        filters.addWidget(self.source)
        box.addLayout(filters)

        self.model = documents_model(self)
        self.table = FittingTable(self.model, stretch=0, droppable=(1, 2))  # Source, Date
        self.table.setAccessibleName("Your writing")
        self.table.horizontalHeader().setDefaultAlignment(
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.table.setMinimumHeight(MIN_LIST_LINES
                                    * self.table.verticalHeader().defaultSectionSize())
        box.addWidget(self.table, 3)

        self.preview = QTextBrowser(accessibleName="Document text")
        self.preview.setPlaceholderText("Select a document to read it here.")
        self.preview.setOpenLinks(False)  # a link in the writing is text to read, not to follow
        self.preview.setMinimumHeight(widgets.lines_high(self.preview, MIN_NOTE_LINES))
        box.addWidget(self.preview, 2)
        actions = QHBoxLayout()
        self.empty_hint = hint("")
        actions.addWidget(self.empty_hint, 1)
        self.forget = button("Delete", danger=True,
                             tooltip="Forget the selected writing: its text, passages and vectors")
        self.forget.setEnabled(False)
        self.forget.clicked.connect(self._forget_selected)
        actions.addWidget(self.forget)
        box.addLayout(actions)
        return column

    # -- what the controller calls ------------------------------------------------------

    def set_documents(self, documents: list) -> None:
        selected = self.selected_ids()
        self.model.set_items(documents)
        for document_id in selected:
            row = self.model.row_of(lambda d, i=document_id: d.id == i)
            if row >= 0:
                self.table.selectRow(row)
        if not self.selected_ids():  # a reset model says nothing; a restored row previews
            self._selection_changed()
        filtered = bool(self.search.text() or self.source.currentData())
        self.empty_hint.setText("" if documents else
                                "Nothing matches." if filtered else
                                "Nothing stored yet: write a note or import some files.")

    def clear(self) -> None:
        """Show nothing while another profile's writing opens."""
        self.model.set_items([])
        self.preview.clear()
        self.import_report.clear()
        self.import_report.hide()
        for label in self.counter_labels.values():
            label.setText("–")
        self.empty_hint.setText("Opening your writing…")

    def show_reindexing(self, progress) -> None:
        """While opening: the search index being built again (after a crash, or lost)."""
        self.empty_hint.setText(f"Opening your writing: rebuilding the search index, "
                                f"{progress.done:,} of {progress.total:,} passages…")

    def set_stats(self, stats) -> None:
        self.counter_labels["words"].setText(f"{stats.words:,}")
        self.counter_labels["since"].setText(f"{stats.words_since_adapter:,}")
        self.counter_labels["documents"].setText(f"{stats.documents:,}")

    def set_preview(self, title: str, text: str, markdown: bool) -> None:
        # A title taken from the text's own first line is not shown twice, nor one above
        # a Markdown file's own heading.
        opening = " ".join(text.split())
        repeated = (opening.startswith(title.rstrip("…").strip())
                    or markdown and opening.startswith("#"))
        shown = text if not title or repeated else f"{title}\n\n{text}"
        if markdown:
            self.preview.setHtml(markdown_html(shown))
        else:
            self.preview.setPlainText(shown)

    def note_saved(self) -> None:
        self.note_title.clear()
        self.note_text.clear()
        self.set_busy_saving(False)

    def set_busy_saving(self, busy: bool) -> None:
        self.saving = busy
        self._enable_saving()

    def _enable_saving(self) -> None:
        """Save is offered once there is something to save, and not while it saves."""
        self.save_note.setEnabled(not self.saving and bool(self.note_text.toPlainText().strip()))

    def import_started(self, count_hint: str) -> None:
        self.import_report.clear()
        self.import_report.show()
        self.import_progress.setRange(0, 0)
        self.import_progress.setFormat(count_hint)
        self.import_progress.show()
        self.import_files.setEnabled(False)
        self.import_folder.setEnabled(False)

    def import_progress_step(self, done: int, total: int, result) -> None:
        self.import_progress.setRange(0, total)
        self.import_progress.setValue(done)
        self.import_progress.setFormat(f"{done} of {total} files")
        self.add_report_line(result)

    def import_indexing(self, done: int, total: int) -> None:
        """Between two files: the passages read so far being indexed for search."""
        self.import_progress.setRange(0, total)
        self.import_progress.setValue(done)
        self.import_progress.setFormat(f"Indexing {done:,} of {total:,} passages")

    def add_report_line(self, result) -> None:
        name = Path(result.path).name if result.path else "text"
        words = f"{result.words:,} words" if result.status == "added" and result.words else ""
        detail = "; ".join(part for part in (words, result.reason) if part)  # as the CLI says
        item = QListWidgetItem(f"{result.status}: {name}" + (f" — {detail}" if detail else ""))
        item.setToolTip(result.path or "")
        item.setData(ItemRole, result)
        item.setForeground(QColor(STATUS_COLORS.get(result.status, "#1f2430")))
        self.import_report.addItem(item)

    def import_finished(self) -> None:
        self.import_progress.hide()
        self.import_files.setEnabled(True)
        self.import_folder.setEnabled(True)

    def report_lines(self) -> list[str]:
        return [self.import_report.item(i).text() for i in range(self.import_report.count())]

    def selected_ids(self) -> list[int]:
        return [self.model.item(index.row()).id
                for index in self.table.selectionModel().selectedRows()]

    # -- user actions ------------------------------------------------------------------

    def _save_note(self) -> None:
        text = self.note_text.toPlainText()
        self.set_busy_saving(True)
        self.saveNoteRequested.emit(self.note_title.text().strip(), text)

    def _pick_files(self) -> None:
        paths, _filter = QFileDialog.getOpenFileNames(
            self, "Import your writing", str(Path.home()),
            f"Writing ({' '.join('*' + suffix for suffix in sorted(SUPPORTED_SUFFIXES))});;"
            "All files (*)")
        if paths:
            self.importRequested.emit(paths)

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a folder of your writing",
                                                  str(Path.home()))
        if folder:
            self.importRequested.emit([folder])

    def _emit_filter(self) -> None:
        self.filterChanged.emit(self.search.text().strip(), self.source.currentData() or "")

    def _selection_changed(self, *_args) -> None:
        ids = self.selected_ids()
        self.forget.setEnabled(bool(ids))
        if len(ids) == 1:
            self.previewRequested.emit(ids[0])
        elif not ids:
            self.preview.clear()

    def _forget_selected(self) -> None:
        ids = self.selected_ids()
        if not ids:
            self.banner.show_message("Select the writing to delete.", "info", 4)
            return
        what, its = (("this document", "Its") if len(ids) == 1
                     else (f"these {len(ids)} documents", "Their"))
        if widgets.ask(self, "Delete writing",
                       f"Delete {what}? {its} text and everything the app keeps to search it "
                       "are removed and cannot be brought back. A model trained on it keeps "
                       "what it learned until you retrain.", "Delete"):
            self.forgetRequested.emit(ids)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.importRequested.emit(paths)
