"""My writing, driven through the window: notes, imports with a report, search, forget."""

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from tests.app.conftest import wait_jobs


def titles(page) -> list[str]:
    return [page.model.item(row).title for row in range(page.model.rowCount())]


def test_saving_a_note_stores_it_and_updates_the_counters(qtbot, app):
    page = app.writing_page
    app.window.show_page("writing")
    page.note_title.setText("Allotment")
    page.note_text.setPlainText("The beans came up early this year, right along the fence.")
    qtbot.mouseClick(page.save_note, Qt.MouseButton.LeftButton)
    wait_jobs(qtbot, app)

    assert titles(page) == ["Allotment"]
    assert page.counter_labels["words"].text() == "11"
    assert page.counter_labels["since"].text() == "11"
    assert page.note_text.toPlainText() == "" and not page.save_note.isEnabled()
    assert page.banner.isVisible() and page.banner.kind == "success"
    stored = app.profile.writing.documents()
    assert [(d.source, d.title) for d in stored] == [("note", "Allotment")]

    # The same text again, under another title: said so, and kept in the editor.
    page.note_title.setText("Beans")
    page.note_text.setPlainText("The beans came up early this year, right along the fence.")
    qtbot.mouseClick(page.save_note, Qt.MouseButton.LeftButton)
    wait_jobs(qtbot, app)
    assert page.banner.kind == "info" and "already in your writing" in page.banner.label.text()
    assert page.note_text.toPlainText().startswith("The beans") and page.save_note.isEnabled()
    assert titles(page) == ["Allotment"]


def test_a_note_can_be_saved_only_once_it_holds_something(qtbot, app):
    page = app.writing_page
    assert not page.save_note.isEnabled()
    page.note_text.setPlainText("   \n ")
    assert not page.save_note.isEnabled()
    qtbot.mouseClick(page.save_note, Qt.MouseButton.LeftButton)
    assert app.profile.writing.documents() == [] and page.banner.isHidden()
    page.note_text.setPlainText("Figs")
    assert page.save_note.isEnabled()


def test_importing_a_folder_reports_each_file_and_keeps_the_good_ones(qtbot, app, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "walk.txt").write_text("A long walk by the canal, counting herons.")
    (folder / "recipe.md").write_text("# Plum cake\n\nHalve the plums and press them in.")
    (folder / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00" * 40)
    (folder / "old.txt").write_bytes("Caf\xe9 cr\xe8me at the market.".encode("cp1252"))
    page = app.writing_page
    page.importRequested.emit([str(folder)])
    wait_jobs(qtbot, app)

    lines = page.report_lines()
    assert len(lines) == 4
    skipped = [line for line in lines if line.startswith("skipped")]
    assert len(skipped) == 1 and "photo.txt" in skipped[0] and "—" in skipped[0]
    assert sum(line.startswith("added") for line in lines) == 3
    # what an added file's reading had to say is kept, as the command line shows it
    assert "added: old.txt — 5 words; not UTF-8: read as Windows-1252" in lines
    assert sorted(titles(page)) == sorted(d.title for d in app.profile.writing.documents())
    assert len(titles(page)) == 3
    assert "3 added, 1 skipped" in page.banner.label.text()
    assert page.banner.kind == "info", "not all went well: not shown as a plain success"
    assert page.import_files.isEnabled() and not page.import_progress.isVisible()


def test_dropping_files_on_the_page_imports_them(qtbot, app, tmp_path):
    note = tmp_path / "dropped.txt"
    note.write_text("Dropped onto the window from the file manager.")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(note))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    app.writing_page.dropEvent(event)
    wait_jobs(qtbot, app)
    assert app.writing_page.report_lines()[0].startswith("added")
    (stored,) = app.profile.writing.documents()
    assert app.profile.writing.get(stored.id).origin == str(note)


def test_search_filters_and_forget_deletes(qtbot, app):
    writing = app.profile.writing
    writing.add_note("Sourdough needs patience and a warm kitchen.", "Bread")
    writing.add_note("The choir sings on Thursdays in the old hall.", "Choir")
    app.writing.refresh()
    page = app.writing_page
    assert sorted(titles(page)) == ["Bread", "Choir"]

    page.search.setText("choir")
    qtbot.waitUntil(lambda: titles(page) == ["Choir"], timeout=5_000)
    page.table.selectRow(0)
    assert "Thursdays" in page.preview.toPlainText()
    assert page.forget.isEnabled()
    qtbot.mouseClick(page.forget, Qt.MouseButton.LeftButton)
    wait_jobs(qtbot, app)

    assert titles(page) == []
    page.search.clear()
    qtbot.waitUntil(lambda: titles(page) == ["Bread"], timeout=5_000)
    assert [d.title for d in writing.documents()] == ["Bread"]
    assert [p.title for p in writing.search("choir Thursdays hall", k=5)] == ["Bread"]


def test_a_markdown_file_is_previewed_rendered_and_inert(qtbot, app, tmp_path):
    page = app.writing_page
    picture = tmp_path / "secret.png"
    (tmp_path / "trip.md").write_text(
        "# The coast path\n\nWe walked **twelve miles** to the [lighthouse](file:///etc).\n\n"
        f"![the view]({picture.as_uri()})\n\n<b>not bold</b>\n", encoding="utf-8")
    (tmp_path / "list.txt").write_text("# a plain text file\n\n- kept as typed\n",
                                      encoding="utf-8")
    app.writing.import_paths([str(tmp_path / "trip.md"), str(tmp_path / "list.txt")])
    wait_jobs(qtbot, app)
    assert sorted(titles(page)) == ["The coast path", "list"]

    page.table.selectRow(titles(page).index("The coast path"))
    shown = page.preview.toPlainText()
    assert shown.startswith("The coast path\n")  # the heading, once, without its "#"
    assert "twelve miles" in shown and "**" not in shown and "[lighthouse]" not in shown
    assert "[image]" in shown and picture.as_uri() not in page.preview.toHtml()
    assert "<b>not bold</b>" in shown  # HTML in the file is text
    assert not page.preview.openLinks()

    page.table.selectRow(titles(page).index("list"))
    assert page.preview.toPlainText() == "list\n\n# a plain text file\n\n- kept as typed\n"


def test_a_failing_import_shows_a_message_and_the_app_goes_on(qtbot, app, tmp_path):
    app.window.show_page("writing")
    app.writing_page.importRequested.emit([str(tmp_path / "does-not-exist")])
    wait_jobs(qtbot, app)
    page = app.writing_page
    assert page.report_lines() == ["skipped: does-not-exist — no such file"]
    assert page.banner.isVisible() and page.banner.kind == "error"
    assert page.banner.label.text() == "Import finished: 1 skipped."
    assert page.import_files.isEnabled()


def test_a_core_failure_shows_one_readable_line(qtbot, app, monkeypatch):
    """Whatever core raises reaches the user as a message, never as a traceback."""

    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device", "/data/oppu.db")

    monkeypatch.setattr(app.profile.writing, "add_text", broken)
    app.window.show_page("writing")
    app.writing_page.note_text.setPlainText("A note that cannot be stored.")
    qtbot.mouseClick(app.writing_page.save_note, Qt.MouseButton.LeftButton)
    wait_jobs(qtbot, app)
    banner = app.writing_page.banner
    assert banner.kind == "error" and banner.isVisible()
    assert banner.label.text() == "No space left on device (/data/oppu.db)"
    assert app.writing_page.save_note.isEnabled()
    assert app.writing_page.note_text.toPlainText() == "A note that cannot be stored."


def _drop(widget, paths) -> None:
    """Drag `paths` onto `widget` as Qt delivers it: to the nearest widget that accepts
    drops, then on up to its parents while the drag is ignored."""
    from PySide6.QtCore import QMimeData, QPoint, QPointF, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    target = widget
    while target is not None:
        if target.acceptDrops():
            enter = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, mime,
                                    Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
            QApplication.sendEvent(target, enter)
            if enter.isAccepted():
                QApplication.sendEvent(target, QDropEvent(
                    QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier))
                return
        target = target.parentWidget()


def test_a_file_dropped_on_the_note_editor_is_imported_not_pasted(qtbot, app, tmp_path):
    """The editor took the drop as text: the note became file:///…/walk.txt."""
    walk = tmp_path / "walk.txt"
    walk.write_text("A long walk by the canal, counting herons.")
    page = app.writing_page
    app.window.show_page("writing")
    _drop(page.note_text.viewport(), [walk])
    wait_jobs(qtbot, app)
    assert page.note_text.toPlainText() == ""
    assert titles(page) == ["walk"]


def test_tab_leaves_a_text_field_instead_of_typing_a_tab(qtbot, app):
    from PySide6.QtTest import QTest

    app.window.show_page("chat")
    composer = app.chat_page.composer
    composer.setFocus()
    composer.setPlainText("Tell me about sailing")
    QTest.keyClick(composer, Qt.Key.Key_Tab)
    assert composer.toPlainText() == "Tell me about sailing" and not composer.hasFocus()


def test_a_narrow_window_hides_source_then_date_before_squeezing_titles(qtbot, app):
    app.profile.writing.add_note("We walked home along the cliffs after dark.",
                                 "The long walk home along the coast")
    app.writing.refresh()
    app.window.show_page("writing")
    table = app.writing_page.table
    shown = lambda: [not table.isColumnHidden(c) for c in range(4)]

    app.window.resize(1400, 800)
    qtbot.waitUntil(lambda: shown() == [True] * 4, timeout=5_000)
    app.window.resize(app.window.minimumSizeHint().width(), 700)
    qtbot.waitUntil(lambda: not shown()[1], timeout=5_000)  # Source goes first
    assert shown()[0] and shown()[3]
    assert table.columnWidth(0) >= table.min_stretch or not any(shown()[1:3])
    app.window.resize(1400, 800)
    qtbot.waitUntil(lambda: shown() == [True] * 4, timeout=5_000)


def test_a_large_import_shows_its_passages_being_indexed(qtbot, app, tmp_path, monkeypatch):
    monkeypatch.setattr("oppu.storage.writing.EMBED_SLICE", 2)
    page = app.writing_page
    shown = []
    monkeypatch.setattr(page, "import_indexing", lambda done, total: shown.append(
        (done, total, page.import_progress.format())))
    diary = tmp_path / "diary.txt"
    diary.write_text("\n\n".join(f"Day {i}: " + "rain and a long walk. " * 60 for i in range(6)))
    app.writing.import_paths([str(diary)])
    wait_jobs(qtbot, app)
    assert shown and shown[-1][0] == shown[-1][1] > 2
    monkeypatch.undo()
    page.import_indexing(3, 10)
    assert page.import_progress.format() == "Indexing 3 of 10 passages"
    assert (page.import_progress.value(), page.import_progress.maximum()) == (3, 10)


def test_a_small_window_scrolls_the_page_instead_of_squeezing_the_note(qtbot, app):
    """At the smallest window the note was one clipped line and the import hint cut off."""
    from oppu.app.widgets import lines_high

    app.window.show_page("writing")
    app.window.resize(640, 480)
    page = app.writing_page
    qtbot.waitUntil(lambda: page.note_text.height() >= lines_high(page.note_text, 5))
    assert page.preview.height() >= lines_high(page.preview, 5)
