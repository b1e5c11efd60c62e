"""Wires the My writing page to core: notes, imports, listing and forgetting."""

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from oppu.app.writing_page import WritingPage


class WritingController(QObject):
    changed = Signal()  # the user's writing changed: counters elsewhere may refresh

    def __init__(self, app, page: WritingPage):
        super().__init__(app)
        self.app = app
        self.page = page
        page.saveNoteRequested.connect(self.save_note)
        page.importRequested.connect(self.import_paths)
        page.filterChanged.connect(lambda _query, _source: self.refresh())
        page.previewRequested.connect(self.preview)
        page.forgetRequested.connect(self.forget)
        app.writingReady.connect(self.refresh)
        app.profileOpened.connect(lambda _profile: page.clear())

    def _writing(self):
        """The open `Writing`, or None with a message while it is still opening."""
        return self.app.profile.writing if self.app.writing_ready(self.page.banner) else None

    def refresh(self) -> None:
        if not self.app.writing_open:
            return
        writing = self.app.profile.writing
        query = self.page.search.text().strip()
        source = self.page.source.currentData() or None
        try:
            self.page.set_documents(writing.documents(query, source))
            self.page.set_stats(writing.stats())
        except Exception as error:  # noqa: BLE001 - shown, never raised into Qt
            self.app.report_error(self.page.banner, error)

    def save_note(self, title: str, text: str) -> None:
        writing = self._writing()
        if writing is None:
            self.page.set_busy_saving(False)
            return

        def saved(stored: tuple[int, bool]) -> None:
            if not stored[1]:  # the note stays in the editor: nothing of it was taken
                self.page.set_busy_saving(False)
                self.page.banner.show_message("This text is already in your writing; nothing "
                                              "new was saved.", "info", 6)
                return
            self.page.note_saved()
            self.page.banner.show_message("Note saved to your writing.", "success", 4)
            self._changed()

        def failed(message: str) -> None:
            self.page.set_busy_saving(False)
            self.page.banner.show_message(message, "error")

        self.app.jobs.start("save-note", lambda _r, _s: writing.add_text("note", text, title),
                            saved, failed=failed)

    def import_paths(self, paths: list[str]) -> None:
        writing = self._writing()
        if writing is None:
            return
        if self.app.jobs.is_running("import"):
            self.page.banner.show_message("An import is already running.", "info", 4)
            return
        self.page.import_started("Looking for files…")

        def work(report, should_stop):
            return writing.add_paths([Path(p) for p in paths],
                                     lambda *step: report(("file", *step)), should_stop,
                                     lambda *step: report(("passages", *step)))

        def finished(results) -> None:
            self.page.import_finished()
            counts = {s: sum(r.status == s for r in results)
                      for s in ("added", "duplicate", "skipped")}
            summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            kind = ("error" if results and counts["skipped"] == len(results)
                    else "info" if counts["skipped"] else "success")
            self.page.banner.show_message(f"Import finished: {summary or 'no files found'}.",
                                          kind, 6)
            self._changed()

        def failed(message: str) -> None:
            self.page.import_finished()
            self.page.banner.show_message(f"Import failed: {message}", "error")
            self._changed()

        self.app.jobs.start("import", work, finished,
                            progress=lambda step: (self.page.import_progress_step
                                                   if step[0] == "file"
                                                   else self.page.import_indexing)(*step[1:]),
                            failed=failed)

    def preview(self, document_id: int) -> None:
        writing = self._writing()
        if writing is None:
            return
        try:
            document = writing.get(document_id)
        except Exception as error:  # noqa: BLE001 - e.g. deleted meanwhile
            self.app.report_error(self.page.banner, error)
            return
        self.page.set_preview(document.title, document.text, document.is_markdown)

    def forget(self, document_ids: list[int]) -> None:
        if self._writing() is None:
            return
        profile = self.app.profile

        def work(_report, _should_stop):
            profile.forget(*document_ids)
            return len(document_ids)

        def done(count: int) -> None:
            self.page.preview.clear()
            self.page.banner.show_message(
                f"Deleted {count} document{'s' if count != 1 else ''} and "
                f"{'their' if count != 1 else 'its'} passages.",
                "success", 5)
            self._changed()

        def failed(message: str) -> None:
            self.page.banner.show_message(message, "error")
            self._changed()

        self.app.jobs.start("forget", work, done, failed=failed)

    def _changed(self) -> None:
        self.refresh()
        self.changed.emit()
