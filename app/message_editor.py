"""The chat's message field, which knows what was typed and what was pasted into it."""

from PySide6.QtGui import QTextCursor

from oppu.app.widgets import TextEditor

Span = tuple[int, int]


class MessageEditor(TextEditor):
    """A message field that remembers the stretches pasted (or dropped) into it. Only what
    the user typed becomes their writing: pasted text is usually somebody else's (an email
    to answer, an article to sum up). Each stretch is a selection kept by the document, so
    it moves along as text is typed before it, and grows with edits inside it (not with
    text typed at either end). Positions are Qt's, in UTF-16 units: an emoji counts two."""

    def __init__(self, placeholder: str):
        super().__init__(placeholder)
        self._pasted: list[QTextCursor] = []
        self._moving_own_text = False
        self.document().contentsChanged.connect(self._forget_emptied_stretches)

    def insertFromMimeData(self, source) -> None:
        start = self.textCursor().selectionStart()
        super().insertFromMimeData(source)
        if not self._moving_own_text:
            self._mark_pasted(start, self.textCursor().position())

    def dropEvent(self, event) -> None:
        self._moving_own_text = event.source() is self  # the user's own words, dragged
        try:
            super().dropEvent(event)
        finally:
            self._moving_own_text = False

    def message(self) -> tuple[str, list[Span]]:
        """The message without surrounding space, and the (start, end) of its pasted
        stretches, as indices into it (Python's characters, not Qt's UTF-16 units)."""
        text = self.toPlainText()
        lead = len(text) - len(text.lstrip())
        message = text.strip()
        units = text.encode("utf-16-le")

        def index(position: int) -> int:
            return len(units[:2 * position].decode("utf-16-le", "ignore")) - lead

        spans = [(max(index(c.selectionStart()), 0), min(index(c.selectionEnd()), len(message)))
                 for c in self._pasted]
        return message, sorted((start, end) for start, end in spans if end > start)

    def set_message(self, text: str, pasted: list[Span] = ()) -> None:
        """Show `text` again with its pasted stretches (a message that got no reply)."""
        self.setPlainText(text)
        self._pasted.clear()

        def position(index: int) -> int:
            return len(text[:index].encode("utf-16-le")) // 2

        for start, end in pasted:
            self._mark_pasted(position(start), position(end))

    def _mark_pasted(self, start: int, end: int) -> None:
        if end > start:
            stretch = QTextCursor(self.document())
            stretch.setPosition(start)
            stretch.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            stretch.setKeepPositionOnInsert(True)  # what is typed just after it is not pasted
            self._pasted.append(stretch)

    def _forget_emptied_stretches(self) -> None:
        """A stretch deleted, typed over or undone is gone: what is typed there later is
        the user's own (its collapsed cursor would otherwise grow around it)."""
        self._pasted = [stretch for stretch in self._pasted if stretch.hasSelection()]
