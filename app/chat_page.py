"""Chat: conversations, the streaming transcript, the composer and the toolbar toggles."""

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from oppu.app import widgets
from oppu.app.chat_view import Transcript
from oppu.app.list_models import conversations_model
from oppu.app.message_editor import MessageEditor
from oppu.app.widgets import button, hint, page_layout

EMPTY_CHAT = ("Ask anything. Your model answers in your voice, and quotes your own writing "
              "when it helps.")
ADAPTER_TIP = "Answer with your personal model (off: the plain base model)"
NO_ADAPTER_TIP = ("You have no personal model yet: replies come from the base model. Train "
                  "one on the My model page.")
NO_ACTIVE_TIP = ("No version of your model is active: replies come from the base model. "
                 "Activate one on the My model page.")
EMPTY_BASE = ("Ask anything. Until you train your own model (My model), the base model "
              "answers, and quotes your own writing when it helps.")
EMPTY_INCOGNITO = "Incognito: nothing from this conversation is stored, not even your messages."


class ChatPage(QWidget):
    sendRequested = Signal(str, list)  # the message, and its pasted (start, end) stretches
    stopRequested = Signal()
    newConversationRequested = Signal()
    conversationSelected = Signal(int)
    renameRequested = Signal(int, str)
    deleteRequested = Signal(int)
    adapterToggled = Signal(bool)
    adapterScaleChanged = Signal(float)
    retrievalToggled = Signal(bool)
    incognitoToggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout, self.banner = page_layout(self, "Chat")
        layout.addLayout(self._toolbar())
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._conversation_column())
        splitter.addWidget(self._chat_column())
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([230, 800])
        layout.addWidget(splitter, 1)
        self.generating = False
        self.adapter_wanted = True  # the conversation's choice, kept while there is no model
        self._enable_conversation_actions()

    # -- building -----------------------------------------------------------------------

    def _conversation_column(self) -> QWidget:
        column, box = widgets.column(right=8)
        self.new_chat = button("New chat", primary=True)
        self.new_chat.clicked.connect(self.newConversationRequested)
        box.addWidget(self.new_chat)
        self.model = conversations_model(self)
        self.conversations = widgets.ListWithPlaceholder(
            "No chats yet. Write a message to start one; it is kept here.")
        self.conversations.setModel(self.model)
        self.conversations.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.conversations.setObjectName("Conversations")
        self.conversations.setAccessibleName("Conversations")
        self.conversations.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conversations.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Moving to a row opens it (click or arrow keys), so the highlighted conversation is
        # always the one shown, the one Rename and Delete act on.
        self._showing = False  # set while the controller moves the highlight itself
        self.conversations.selectionModel().currentChanged.connect(self._current_changed)
        box.addWidget(self.conversations, 1)
        row = QHBoxLayout()
        self.rename = button("Rename")
        self.rename.clicked.connect(self._rename)
        self.delete = button("Delete", danger=True)
        self.delete.clicked.connect(self._delete)
        row.addWidget(self.rename)
        row.addWidget(self.delete)
        box.addLayout(row)
        for key, action in ((QKeySequence.StandardKey.Delete, self.delete),  # in the list
                            (Qt.Key.Key_F2, self.rename)):
            shortcut = QShortcut(QKeySequence(key), self.conversations)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(action.click)  # a no-op while it is disabled
            action.setToolTip(f"{action.text()} ({widgets.keys_text(shortcut.key())})")
        return column

    def _chat_column(self) -> QWidget:
        column, box = widgets.column(left=8)
        self.transcript = Transcript()
        self.transcript.setAccessibleName("Conversation")
        self.transcript.set_empty_text(EMPTY_CHAT)
        box.addWidget(self.transcript, 1)

        composer = QHBoxLayout()
        self.composer = MessageEditor("Write a message…  (Ctrl+Enter sends)")
        self.composer.setAccessibleName("Message")
        self.composer.setToolTip("What you type becomes your writing; text you paste in is "
                                 "read by the model but not kept as yours")
        self.composer.setFixedHeight(84)
        self.composer.installEventFilter(self)
        self.send = button("Send", primary=True, tooltip="Send (Ctrl+Enter)")
        self.send.clicked.connect(self._send)
        self.send.setEnabled(False)  # nothing written yet
        self.composer.textChanged.connect(
            lambda: self.send.setEnabled(bool(self.composer.toPlainText().strip())))
        self.stop = button("Stop", tooltip="Stop the reply (Esc)")
        self.stop.clicked.connect(self.stopRequested)
        self.stop.hide()
        composer.addWidget(self.composer, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send)
        buttons.addWidget(self.stop)
        buttons.addStretch()
        composer.addLayout(buttons)
        box.addLayout(composer)
        self.status = hint("")
        box.addWidget(self.status)
        escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        escape.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        escape.activated.connect(self._escape)
        new_chat = QShortcut(QKeySequence.StandardKey.New, self)  # Ctrl+N, ⌘N
        new_chat.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        new_chat.activated.connect(self.new_chat.click)  # a no-op while it is disabled
        self.new_chat.setToolTip(f"New chat ({widgets.keys_text(new_chat.key())})")
        return column

    def _toolbar(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.use_adapter = QCheckBox("Personal model")
        self.use_adapter.setToolTip(ADAPTER_TIP)
        self.use_adapter.setChecked(True)
        self.use_adapter.toggled.connect(self._adapter_toggled)
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setAccessibleName("Personal model strength")
        self.strength.setRange(0, 200)
        self.strength.setSingleStep(5)
        self.strength.setPageStep(25)
        self.strength.setFixedWidth(100)
        self.strength.setToolTip("How strongly your personal model shapes replies: 1.00 is as "
                                 "trained, 0 the plain base model, above 1 exaggerates it")
        self.strength_label = QLabel()
        self.strength.valueChanged.connect(
            lambda v: self.strength_label.setText(f"strength {v / 100:.2f}"))
        self.strength.sliderReleased.connect(self._strength_chosen)
        self.strength.valueChanged.connect(
            lambda _v: None if self.strength.isSliderDown() else self._strength_chosen())
        self.use_writing = QCheckBox("Use my writing")
        self.use_writing.setToolTip("Put the most relevant passages of your writing into the "
                                    "prompt, and show them under each reply")
        self.use_writing.setChecked(True)
        self.use_writing.toggled.connect(self.retrievalToggled)
        self.incognito = QCheckBox("Incognito")
        self.incognito.setToolTip("Store nothing from this conversation")
        self.incognito.toggled.connect(self._incognito_toggled)
        for widget in (self.use_adapter, self.strength, self.strength_label, self.use_writing,
                       self.incognito):
            row.addWidget(widget)
        row.insertSpacing(3, 12)
        row.addStretch()
        return row

    # -- what the controller calls ------------------------------------------------------

    def set_conversations(self, conversations: list, current: int | None) -> None:
        self.model.set_items(conversations)
        self.select_conversation(current)

    def select_conversation(self, conversation_id: int | None) -> None:
        """Highlight the conversation shown (None: a new one), without opening it again."""
        row = self.model.row_of(lambda c: c.id == conversation_id)
        self._showing = True
        try:
            if row >= 0:
                self.conversations.setCurrentIndex(self.model.index(row, 0))
            else:
                self.conversations.clearSelection()
                self.conversations.setCurrentIndex(self.model.index(-1, 0))
        finally:
            self._showing = False
        self._enable_conversation_actions()

    def _current_changed(self, current, _previous) -> None:
        self._enable_conversation_actions()
        if not self._showing and current.isValid():
            self.conversationSelected.emit(self.model.item(current.row()).id)

    def _enable_conversation_actions(self) -> None:
        """Rename and Delete act on the highlighted conversation: none, nothing to act on."""
        on = self._selected() is not None and not self.generating
        self.rename.setEnabled(on)
        self.delete.setEnabled(on)

    def show_options(self, use_adapter: bool, scale: float, use_retrieval: bool,
                     incognito: bool) -> None:
        self.adapter_wanted = use_adapter
        self._show_adapter_choice()
        for widget, value in ((self.use_writing, use_retrieval), (self.incognito, incognito)):
            widget.blockSignals(True)
            widget.setChecked(value)
            widget.blockSignals(False)
        self.strength.blockSignals(True)
        self.strength.setValue(round(scale * 100))
        self.strength.blockSignals(False)
        self.strength_label.setText(f"strength {scale:.2f}")
        self._enable_strength()
        self._show_empty_text()

    def set_personal_model(self, available: bool, has_versions: bool) -> None:
        """Without an active adapter the toggle and the strength have nothing to act on: the
        toggle shows off until there is one, then the conversation's own choice again."""
        self.use_adapter.setEnabled(available)
        self._show_adapter_choice()
        self._show_empty_text()
        self.use_adapter.setToolTip(ADAPTER_TIP if available else NO_ACTIVE_TIP if has_versions
                                    else NO_ADAPTER_TIP)
        self._enable_strength()

    def _show_adapter_choice(self) -> None:
        """The toggle shows the conversation's choice, and off while there is no model."""
        self.use_adapter.blockSignals(True)
        self.use_adapter.setChecked(self.use_adapter.isEnabled() and self.adapter_wanted)
        self.use_adapter.blockSignals(False)

    def _enable_strength(self) -> None:
        on = self.use_adapter.isEnabled() and self.use_adapter.isChecked()
        self.strength.setEnabled(on)
        self.strength_label.setEnabled(on)

    def set_generating(self, on: bool) -> None:
        self.generating = on
        self.send.setVisible(not on)
        self.stop.setVisible(on)
        for widget in (self.new_chat, self.conversations):
            widget.setEnabled(not on)
        self._enable_conversation_actions()

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    # -- user actions -------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.composer and event.type() == QEvent.Type.KeyPress:
            key_event: QKeyEvent = event
            if (key_event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
                    and key_event.modifiers() & Qt.KeyboardModifier.ControlModifier):
                self._send()
                return True
            if key_event.key() == Qt.Key.Key_Escape and self.generating:
                self.stopRequested.emit()
                return True
        return super().eventFilter(watched, event)

    def _send(self) -> None:
        text, pasted = self.composer.message()
        if text and not self.generating:
            self.composer.clear()
            self.sendRequested.emit(text, pasted)

    def _escape(self) -> None:
        if self.generating:
            self.stopRequested.emit()

    def _adapter_toggled(self, on: bool) -> None:
        self.adapter_wanted = on
        self._enable_strength()
        self.adapterToggled.emit(on)

    def _strength_chosen(self) -> None:
        self.adapterScaleChanged.emit(self.strength.value() / 100)

    def _incognito_toggled(self, on: bool) -> None:
        self._show_empty_text()
        self.incognitoToggled.emit(on)

    def _show_empty_text(self) -> None:
        self.transcript.set_empty_text(EMPTY_INCOGNITO if self.incognito.isChecked() else
                                       EMPTY_CHAT if self.use_adapter.isEnabled() else EMPTY_BASE)

    def _selected(self):
        index = self.conversations.currentIndex()
        return self.model.item(index.row()) if index.isValid() else None

    def _rename(self) -> None:
        conversation = self._selected()
        if conversation is None:
            return
        title, ok = QInputDialog.getText(self, "Rename conversation", "New title:",
                                         text=conversation.title)
        if ok and title.strip():
            self.renameRequested.emit(conversation.id, title.strip())

    def _delete(self) -> None:
        conversation = self._selected()
        if conversation is None:
            return
        if widgets.ask(self, "Delete conversation",
                       f"Delete “{conversation.title}” and all its messages? What you wrote "
                       "in it is also removed from your writing, so your model will not "
                       "learn from it.", "Delete"):
            self.deleteRequested.emit(conversation.id)
