"""Settings, the window shell (profiles, geometry, status bar) and scheduled retraining."""

import time

from PySide6.QtCore import QRect, Qt

from oppu.app.controller import AppController
from oppu.core.settings import load_settings
from tests.app.conftest import wait_jobs


def test_a_changed_setting_is_saved_in_the_profile(qtbot, app):
    page = app.settings_page
    page.editors["retrieval_k"].setValue(7)
    page.editors["auto_retrain"].setChecked(False)
    assert app.profile.settings.retrieval_k == 7
    assert load_settings(app.profile.store).auto_retrain is False
    assert not page.editors["retrain_min_words"].isEnabled()
    page.editors["training_preset"].setCurrentText("quick")
    page.editors["training_preset"].activated.emit(page.editors["training_preset"].currentIndex())
    assert load_settings(app.profile.store).training_preset == "quick"


def test_a_refused_value_is_a_message_and_the_editors_show_the_truth(qtbot, app):
    app.window.show_page("settings")
    app.settings_page.settingChanged.emit("retrieval_k", "many")
    banner = app.settings_page.banner
    assert banner.kind == "error" and "retrieval_k" in banner.label.text()
    assert app.settings_page.editors["retrieval_k"].value() == app.profile.settings.retrieval_k
    # Typed text that was refused stays, to be corrected rather than typed again.
    addresses = app.settings_page.editors["mail_addresses"]
    addresses.setText("me@example.com, not an email")
    addresses.editingFinished.emit()
    assert banner.kind == "error" and "not an email" in banner.label.text()
    assert addresses.text() == "me@example.com, not an email"
    assert not app.profile.settings.mail_addresses


def test_settings_show_the_devices_and_the_data_folder(qtbot, app):
    app.window.show_page("settings")
    qtbot.waitUntil(lambda: app.settings_page.devices.text().startswith("Training will use"),
                    timeout=120_000)
    assert "Chat will use" in app.settings_page.devices.text()
    assert app.settings_page.folder.text() == str(app.profile.folder)


def test_delete_all_my_data_leaves_an_empty_profile(qtbot, app):
    writing = app.profile.writing
    writing.add_note("Something private about my week.", "Private")
    folder = app.profile.folder
    (folder / "adapters" / "v9").mkdir(parents=True)
    app.settings_page.delete_all.click()
    qtbot.waitUntil(lambda: app.writing_open, timeout=60_000)
    assert app.chat.models.current is None  # no model file of the profile held open

    assert app.profile.name == "tester" and app.profile.folder == folder
    assert app.profile.writing.documents() == [] and app.profile.index.count() == 0
    assert not (folder / "adapters" / "v9").exists()
    assert app.writing_page.model.rowCount() == 0
    assert app.settings_page.banner.kind == "success"


def test_a_deletion_that_fails_keeps_the_profile_open_and_whole(qtbot, app, monkeypatch):
    from oppu.app import controller
    from oppu.core.profile import ProfileInUse

    def in_use(profile):
        profile.close()
        raise ProfileInUse(f"profile {profile.name!r} is in use by another program")

    app.profile.writing.add_note("Kept when deleting fails.", "Kept")
    monkeypatch.setattr(controller, "delete_profile_data", in_use)
    app.settings_page.delete_all.click()
    qtbot.waitUntil(lambda: app.writing_open, timeout=60_000)
    assert app.profile.name == "tester" and len(app.profile.writing.documents()) == 1
    assert app.settings_page.banner.kind == "error"
    assert "in use by another program" in app.settings_page.banner.label.text()


def test_the_profile_can_be_renamed_with_everything_it_holds(qtbot, app, monkeypatch):
    from oppu.core import list_profiles

    app.profile.writing.add_note("Written before the profile had its real name.", "Old")
    monkeypatch.setattr("oppu.app.settings_page.QInputDialog.getText",
                        lambda *_args, **_kwargs: ("Ann Smith", True))
    app.settings_page.rename.click()
    qtbot.waitUntil(lambda: app.writing_open, timeout=60_000)
    assert app.profile.name == "Ann Smith" and app.profile.folder.name == "Ann Smith"
    assert [d.title for d in app.profile.writing.documents()] == ["Old"]
    assert app.window.profiles.currentData() == "Ann Smith"
    assert "tester" not in list_profiles(app.data_root)
    assert app.settings_page.folder.text() == str(app.profile.folder)
    assert app.settings_page.banner.kind == "success"


def test_a_refused_rename_keeps_the_profile_open_and_whole(qtbot, app, monkeypatch):
    app.switch_profile("second")
    qtbot.waitUntil(lambda: app.writing_open, timeout=60_000)
    app.profile.writing.add_note("Kept when renaming is refused.", "Kept")
    monkeypatch.setattr("oppu.app.settings_page.QInputDialog.getText",
                        lambda *_args, **_kwargs: ("tester", True))
    app.settings_page.rename.click()
    qtbot.waitUntil(lambda: app.writing_open, timeout=60_000)
    assert app.profile.name == "second" and len(app.profile.writing.documents()) == 1
    assert app.settings_page.banner.kind == "error"
    assert "A profile named 'tester' already exists" in app.settings_page.banner.label.text()


def test_profiles_can_be_created_and_switched(qtbot, app):
    app.profile.writing.add_note("Written by the first person.", "First")
    assert app.switch_profile("second")
    qtbot.waitUntil(lambda: app.writing_open, timeout=60_000)
    combo = app.window.profiles
    names = [combo.itemData(i) for i in range(combo.count()) if combo.itemData(i)]
    assert {"tester", "second"} <= set(names)
    assert combo.currentData() == "second"
    assert app.writing_page.model.rowCount() == 0

    assert not app.switch_profile("../escape")
    assert app.profile.name == "second"
    assert "Invalid profile name" in app.current_banner().label.text()

    assert app.switch_profile("tester")
    qtbot.waitUntil(lambda: app.writing_open, timeout=60_000)
    assert [d.title for d in app.profile.writing.documents()] == ["First"]


def test_a_new_profile_name_that_cannot_be_is_asked_again_with_why(qtbot, app, monkeypatch):
    """The dialog closed, the name was lost and the rule showed in a banner behind it."""
    asked = []
    answers = iter([("Ana María", True), ("Ana Maria", True)])

    def get_text(_parent, _title, label, text=""):
        asked.append((label, text))
        return next(answers)

    monkeypatch.setattr("oppu.app.window.QInputDialog.getText", get_text)
    app.window.ask_new_profile()
    qtbot.waitUntil(lambda: app.profile.name == "Ana Maria", timeout=60_000)
    (first, _), (why, typed) = asked
    assert typed == "Ana María" and why.endswith(first)
    assert why.startswith("Invalid profile name 'Ana María': up to 64 plain letters")


def test_the_window_remembers_its_place_in_the_data_folder(qtbot, app, oppu_home, open_profile):
    app.window.setGeometry(QRect(0, 40, 780, 520))  # inside the offscreen 800x600 screen
    app.window.show_page("model")
    size = app.window.size()
    assert size.height() == 520
    app.window.close()
    assert (oppu_home / "desktop.ini").is_file()

    again = AppController(oppu_home, open_profile)
    qtbot.addWidget(again.window)
    assert again.profile.name == "tester"
    assert again.window.size() == size
    assert again.window.current_page() == "model"
    again.shutdown()


def test_a_remembered_profile_deleted_meanwhile_is_not_made_again(qtbot, app, oppu_home,
                                                                   open_profile):
    """`oppu profiles --delete tester` while the app was closed: the next start made an
    empty 'tester' again, from the name it remembered."""
    from oppu.core import list_profiles
    from oppu.core.profile import Profile, delete_profile_data

    app.window.close()
    delete_profile_data(Profile("tester", root=oppu_home))
    again = AppController(oppu_home, open_profile)
    qtbot.addWidget(again.window)
    assert again.profile.name == "default"
    assert list_profiles(oppu_home) == ["default"]
    again.state.sync()
    assert "tester" not in (oppu_home / "desktop.ini").read_text()
    again.shutdown()


def test_the_status_bar_names_the_base_model_and_the_adapter(app):
    assert app.window.base_label.text() == "Base model: tiny-llama.gguf"
    assert app.window.adapter_label.text() == "Your model: not trained yet"
    assert app.window.training_label.isHidden()


def test_the_scheduler_asks_the_policy_and_starts_a_run_when_due(qtbot, trainee_app):
    app = trainee_app
    reasons = []
    app.scheduler.checked.connect(lambda due, why: reasons.append((due, why)))
    app.profile.set("retrain_min_words", 10_000_000)
    assert not app.scheduler.check()
    assert reasons[-1][0] is False and "an automatic retrain waits for 10,000,000" in reasons[-1][1]

    app.profile.set("retrain_min_words", 100)
    app.profile.set("retrain_only_idle", True)
    app.scheduler.last_input = time.monotonic()  # the user was just active
    assert not app.scheduler.check()
    assert "waiting until you are idle" in reasons[-1][1]

    app.profile.set("retrain_only_idle", False)
    with qtbot.waitSignal(app.model.training.finished, timeout=300_000) as ended:
        assert app.scheduler.check()
        assert app.model.training.running and not app.model_page.cancel.isHidden()
        app.model.cancel_training()
    assert ended.args[0].status == "cancelled"
    wait_jobs(qtbot, app)


def test_an_unexpected_error_is_one_line_in_the_window(app, capsys):
    app.window.show_page("writing")
    try:
        raise KeyError("conversation 7")
    except KeyError as error:
        app.unexpected_error(type(error), error, error.__traceback__)
    banner = app.writing_page.banner
    assert banner.kind == "error" and banner.isVisible()
    assert banner.label.text() == "Something went wrong: KeyError: 'conversation 7'."
    assert "Traceback" in capsys.readouterr().err  # the details go to the log, not a dialog


def test_cards_stack_in_one_column_when_the_page_is_too_narrow_for_two(qtbot):
    from oppu.app.settings_page import SettingsPage
    from oppu.app.widgets import CardGrid

    page = SettingsPage()
    qtbot.addWidget(page)
    grid = page.findChild(CardGrid)
    page.resize(1000, 700)
    page.show()
    qtbot.waitUntil(lambda: grid.columns == 2)
    [(retrain, _), (training, _), *_] = grid.cards
    assert retrain.geometry().top() == training.geometry().top()  # side by side
    page.folder.setText("/home/jane.doe/.local/share/oppu/profiles/Jane Doe's writing, 2026")
    page.resize(560, 700)
    qtbot.waitUntil(lambda: grid.columns == 1)
    qtbot.wait(50)
    assert retrain.geometry().bottom() < training.geometry().top()  # one under the other
    assert all(card.geometry().right() <= grid.viewport().width() for card, _ in grid.cards)
    page.resize(1000, 700)
    qtbot.waitUntil(lambda: grid.columns == 2)


def test_pages_and_a_new_chat_have_keyboard_shortcuts(qtbot, app):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    window = app.window
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    for number, key in enumerate(window.page_keys, 1):
        QTest.keyClick(window, Qt.Key(Qt.Key.Key_0 + number), Qt.KeyboardModifier.ControlModifier)
        assert window.current_page() == key
        assert window.nav.item(number - 1).toolTip().endswith(f"(Ctrl+{number})")
    window.show_page("chat")
    app.chat_page.composer.setFocus()
    with qtbot.waitSignal(app.chat_page.newConversationRequested):
        QTest.keyClick(app.chat_page.composer, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert app.chat_page.new_chat.toolTip() == "New chat (Ctrl+N)"


def test_every_control_the_keyboard_reaches_has_a_name_a_screen_reader_can_say(app, qtbot):
    from PySide6.QtGui import QAccessible
    from PySide6.QtWidgets import QListView, QWidget

    nameless = set()
    for page in ("chat", "writing", "model", "settings"):
        app.window.show_page(page)
        qtbot.wait(50)
        for widget in app.window.findChildren(QWidget):
            inner = type(widget) is QListView or widget.objectName() == "qt_spinbox_lineedit"
            if (widget.focusPolicy() == Qt.FocusPolicy.NoFocus or inner  # a combo's popup,
                    or not widget.isVisibleTo(app.window)):  # a spin box's field: named
                continue  # by their owners
            name = QAccessible.queryAccessibleInterface(widget).text(QAccessible.Text.Name)
            if not name.strip():
                nameless.add(f"{type(widget).__name__} {widget.objectName()}".strip())
    assert nameless == set()


def test_messages_end_as_sentences_but_not_after_a_path():
    from oppu.app.messages import full_stop

    assert full_stop("Import finished: 2 added") == "Import finished: 2 added."
    assert full_stop("Exported v2 to /home/ana/mine.gguf") == "Exported v2 to /home/ana/mine.gguf"
    assert full_stop(r"Exported v2 to C:\Users\ana\mine.zip") == r"Exported v2 to C:\Users\ana\mine.zip"
    assert full_stop("Done!") == "Done!" and full_stop("") == ""
