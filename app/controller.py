"""The one place that builds the window and wires every page's requests to core.

Pages only emit `...Requested` signals and show what they are given; this module and the
per-page controllers it creates are the only code that calls core.
"""

import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from oppu.app.chat_controller import ChatController
from oppu.app.jobs import Jobs
from oppu.app.messages import describe, full_stop, sentence
from oppu.app.model_controller import ModelController
from oppu.app.scheduler import RetrainScheduler
from oppu.app.shell import Shell
from oppu.app.widgets import Banner
from oppu.app.writing_controller import WritingController
from oppu.core import DEFAULT_PROFILE, list_profiles
from oppu.core.bases import bases
from oppu.core.devices import device_summary
from oppu.core.profile import Profile, delete_profile_data, profile_name_problem, rename_profile
from oppu.core.progress import ignore
from oppu.core.settings import Settings

ProfileFactory = Callable[[str], Profile]


class AppController(QObject):
    profileOpened = Signal(object)  # Profile
    writingReady = Signal()  # the profile's writing (index included) is open

    def __init__(self, data_root: Path, open_profile: ProfileFactory = Profile,
                 profile_name: str | None = None, shell: Shell | None = None):
        """Wire `shell` (built here when not given, perhaps already on screen) to core."""
        super().__init__()
        self.data_root = data_root
        self.open_profile = open_profile
        self.profile: Profile | None = None
        self.writing_open = False
        self.devices: dict[str, str] = {}  # training_device setting -> what will be used
        self.jobs = Jobs(self)
        shell = shell or Shell(data_root)
        self.state = shell.state
        self.window = shell.window
        self.chat_page, self.writing_page = shell.chat_page, shell.writing_page
        self.model_page, self.settings_page = shell.model_page, shell.settings_page
        self.settings_page.set_help(Settings.help())
        self.chat = ChatController(self, self.chat_page)
        self.writing = WritingController(self, self.writing_page)
        self.model = ModelController(self, self.model_page)
        self.writing.changed.connect(self.model.refresh)
        self.chat.changed.connect(self.writing.refresh)
        self.chat.changed.connect(self.model.refresh)
        self.model.trainingChanged.connect(lambda _running: self.writing.refresh())
        self._wire_settings()
        self.scheduler = RetrainScheduler(
            lambda: self.profile if self.writing_open else None,
            self.busy,
            self.model.start_training, self)
        self.window.profileRequested.connect(self.switch_profile)
        self.window.newProfileRequested.connect(self._new_profile)
        self.window.exposed.connect(self._open_writing)
        self.window.closing.connect(self.shutdown)
        self.jobs.failed.connect(lambda _name, message: self.current_banner().show_message(
            message, "error"))

        remembered = self.state.value("profile")
        if remembered not in list_profiles(self.data_root):
            remembered = None  # deleted meanwhile (`oppu profiles --delete`): not made again
            self.state.remove("profile")
        name = profile_name or remembered or DEFAULT_PROFILE
        if not self.switch_profile(name) and name != DEFAULT_PROFILE:
            self.switch_profile(DEFAULT_PROFILE)

    # -- profiles -----------------------------------------------------------------------

    def _new_profile(self, name: str) -> None:
        """A name typed for a new profile; one that cannot be is asked for again, with why
        (after this returns: the dialog is not opened from within its own signal)."""
        problem = profile_name_problem(name, self.data_root)
        if problem is None:
            self.switch_profile(name)
        else:
            QTimer.singleShot(0, lambda: self.window.ask_new_profile(
                name, full_stop(sentence(problem))))

    def switch_profile(self, name: str) -> bool:
        """Open profile `name` (creating it if new); on failure keep the current one."""
        if self.profile is not None and name == self.profile.name:
            return True
        if self.busy():
            self.current_banner().show_message(
                "Wait for the running task or training to finish before switching profiles.",
                "info")
            self._show_profiles()
            return False
        try:
            profile = self.open_profile(name)
        except Exception as error:  # noqa: BLE001 - an invalid name or a broken store
            self.report_error(self.current_banner(), error)
            self._show_profiles()
            return False
        if self.profile is not None:
            self.profile.close()
        for page in (self.chat_page, self.writing_page, self.model_page, self.settings_page):
            page.banner.hide()  # news of the profile left behind
        self.profile = profile
        self.writing_open = False
        self.state.setValue("profile", name)
        self._show_profiles()
        self._show_profile_basics()
        self.profileOpened.emit(profile)
        if self.window.was_exposed:
            self._open_writing()
        return True

    def _open_writing(self) -> None:
        """Open the index (Chroma loads here) off the GUI thread, once the window is up."""
        profile = self.profile
        if profile is None or self.writing_open or self.jobs.is_running("open-writing"):
            return
        def work(report, _should_stop):
            profile.on_reindex = report
            try:
                return profile.writing
            finally:
                profile.on_reindex = ignore  # this job's signals end with it

        self.jobs.start("open-writing", work, lambda _writing: self._writing_opened(profile),
                        progress=self.writing_page.show_reindexing,
                        failed=lambda message: self.writing_page.banner.show_message(
                            f"Could not open your writing: {message}", "error"))

    def _writing_opened(self, profile: Profile) -> None:
        if profile is self.profile:
            self.writing_open = True
            self.writingReady.emit()
            if self.window.current_page() == "settings":
                self.show_devices()

    def _show_profiles(self) -> None:
        names = set(list_profiles(self.data_root))
        if self.profile is not None:
            names.add(self.profile.name)
        self.window.set_profiles(sorted(names), self.profile.name if self.profile else "")

    def _show_profile_basics(self) -> None:
        settings = self.profile.settings
        self.settings_page.show_settings(settings)
        self.settings_page.show_folder(self.profile.folder)
        self.base_model_changed()

    def base_model_changed(self) -> None:
        setting = self.profile.settings.base_model
        names = {choice.setting: choice.name for choice in bases()}
        self.window.set_base_model(names.get(setting) or Path(setting).name)

    # -- settings -----------------------------------------------------------------------

    def _wire_settings(self) -> None:
        page = self.settings_page
        page.settingChanged.connect(self.change_setting)
        page.openFolderRequested.connect(lambda: page.open_folder(self.profile.folder))
        page.renameRequested.connect(self.rename_profile)
        page.deleteAllRequested.connect(self.delete_all_data)
        self.window.pageShown.connect(lambda key: self.show_devices() if key == "settings"
                                      else None)

    def show_devices(self) -> None:
        """Which device training and chat will use; finding out loads torch, so off-thread."""
        if self.profile is None:
            return
        setting = self.profile.settings.training_device
        if setting in self.devices:
            self.settings_page.show_devices(self.devices[setting])
            return

        def found(text: str) -> None:
            self.devices[setting] = text
            self.settings_page.show_devices(text)

        self.jobs.start("devices", lambda _r, _s: device_summary(setting), found,
                        failed=lambda message: self.settings_page.show_devices(
                            f"Could not check the devices: {message}"), background=True)

    def rename_profile(self, new_name: str) -> None:
        """Give the current profile another name and open it under that name."""
        old_name = self.profile.name
        self._change_profile_folder(
            "rename", lambda profile: rename_profile(profile, new_name), new_name,
            f"Profile “{old_name}” is now called “{new_name}”.")

    def delete_all_data(self) -> None:
        """Delete everything of the current profile and start it afresh, empty."""
        name = self.profile.name
        self._change_profile_folder(
            "delete", delete_profile_data, name,
            f"All data of profile “{name}” was deleted: its writing, chats, models and "
            "settings.")

    def _change_profile_folder(self, action: str, change, then_open: str, done: str) -> None:
        """Run core's `change(profile)`, which closes the profile, then open `then_open`, or
        the profile as it was if `change` failed. Refused while anything could write to it."""
        if self.busy():
            self.settings_page.banner.show_message(
                f"Wait for the running task or training to finish, then {action}.", "info")
            return
        name = self.profile.name
        self.chat.models.close()  # it may hold a merged model from the profile's folder
        failure = None
        try:
            change(self.profile)
        except Exception as error:  # noqa: BLE001 - refused or failed: shown, the app goes on
            failure = error
        self.profile, self.writing_open = None, False
        self.switch_profile(name if failure else then_open)
        if failure is not None:
            self.report_error(self.settings_page.banner, failure)
            return
        self.settings_page.banner.show_message(done, "success", 15)

    def change_setting(self, key: str, value) -> bool:
        try:
            self.profile.set(key, value)
        except Exception as error:  # noqa: BLE001 - a value core refuses
            self.report_error(self.current_banner(), error)
            self.settings_page.show_settings(self.profile.settings, refused=key)
            return False
        if key == "training_device":
            self.show_devices()
        return True

    # -- errors and shutdown -------------------------------------------------------------

    def current_banner(self) -> Banner:
        return self.window.stack.currentWidget().banner

    def busy(self) -> bool:
        """A task on the profile (an import, an export, measuring, a reply) or a training
        run is going on: no automatic run starts over it, and the profile stays open."""
        return self.jobs.busy() or self.model.training.running

    def writing_ready(self, banner: Banner, again: str = "try again") -> bool:
        """Whether the writing is open; if not (it opens off the GUI thread, which reading
        it would block, for minutes while the index is rebuilt), `banner` says so."""
        if not self.writing_open:
            banner.show_message(f"Your writing is still being opened; {again} in a moment.",
                                "info", 4)
        return self.writing_open

    def report_error(self, banner: Banner, error: BaseException) -> None:
        banner.show_message(describe(error), "error")

    def unexpected_error(self, kind, error, trace) -> None:
        """For sys.excepthook: a bug in a slot is logged and shown as one line; the app goes on."""
        sys.__excepthook__(kind, error, trace)
        if self.window is not None and isinstance(error, Exception):
            self.current_banner().show_message(f"Something went wrong: {describe(error)}",
                                               "error")

    def shutdown(self) -> None:
        """Stop background work and close the store; safe to call twice."""
        self.scheduler.timer.stop()
        self.model.shutdown()
        self.chat.stop()
        self.jobs.stop_all()
        finished = self.jobs.wait(10_000)
        self.chat.shutdown()
        self.writing_open = False
        if self.profile is not None and finished:
            self.profile.close()
        # Else a task that does not stop at once (an index rebuild, a slice of embedding)
        # still uses the store: it ends with the process, which the store is made to survive.
        self.profile = None
