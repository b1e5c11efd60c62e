"""The chat's message field, which knows what was typed and what was pasted into it."""

from PySide6.QtGui import QTextCursor

from oppu.app.widgets import TextEditor

Span = tuple[int, int]


class MessageEditor(TextEditor):
    """A message field that remembers the stretches pasted (or dropped) into it. Only what
    the user typed becomes their writing: pasted text is usually somebody else's (an email
    to answer, an article to sum up). Each stretch is a selection kept by the document, so
    it moves along as text is typed before it, and grows with edits inside it (not with
    text typed at either end)."""

    def __init__(self, placeholder: str):
        super().__init__(placeholder)
        self._pasted: list[QTextCursor] = []
        self.textChanged.connect(self._forget_pasted_when_emptied)

    def insertFromMimeData(self, source) -> None:
        start = self.textCursor().selectionStart()
        super().insertFromMimeData(source)
        self._mark_pasted(start, self.textCursor().position())

    def message(self) -> tuple[str, list[Span]]:
        """The message without surrounding space, and the (start, end) of its pasted
        stretches."""
        text = self.toPlainText()
        lead = len(text) - len(text.lstrip())
        message = text.strip()
        spans = [(max(c.selectionStart() - lead, 0), min(c.selectionEnd() - lead, len(message)))
                 for c in self._pasted]
        return message, sorted((start, end) for start, end in spans if end > start)

    def set_message(self, text: str, pasted: list[Span] = ()) -> None:
        """Show `text` again with its pasted stretches (a message that got no reply)."""
        self.setPlainText(text)
        self._pasted.clear()
        for start, end in pasted:
            self._mark_pasted(start, end)

    def _mark_pasted(self, start: int, end: int) -> None:
        if end > start:
            stretch = QTextCursor(self.document())
            stretch.setPosition(start)
            stretch.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            stretch.setKeepPositionOnInsert(True)  # what is typed just after it is not pasted
            self._pasted.append(stretch)

    def _forget_pasted_when_emptied(self) -> None:
        if self.document().isEmpty():
            self._pasted.clear()
