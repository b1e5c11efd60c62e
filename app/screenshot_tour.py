"""`oppu-desktop --screenshot DIR`: drive the real app through its pages and save one PNG each.

For the README's screenshots (run it under Xvfb on a prepared profile): My writing with a
document open, Chat with a reply (stopped after a few lines) citing its sources from the
writing, My model during a retrain (which is then cancelled, so nothing changes), and
Settings. Uses only what a user could click, and leaves the profile as it found it: the
tour's conversation, and the writing its question became, are deleted at the end.
"""

from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

QUESTION = "What do I usually pack for a long weekend of sailing? Answer in my voice."
STREAMED_PIECES = 40  # the reply is stopped after this many pieces
LOSS_POINTS = 12  # the My model screenshot waits for this many points on the loss plot
# Short steps (and epochs enough that max_steps decides), so the loss plot fills within a
# minute on a CPU; the run is cancelled anyway.
TOUR_TRAINING = {"seq_len": 256, "batch_size": 1, "max_steps": 60, "epochs": 10.0,
                 "max_minutes": 0}


class Tour(QObject):
    def __init__(self, app, folder: Path):
        super().__init__(app)
        self.app = app
        self.folder = folder
        self.pieces = 0
        self.took_model = False
        self.started = False
        self.steps = [self.writing, self.chat, self.model, self.settings, self.finish]

    def begin(self) -> None:
        if not self.started:  # the writing may reopen later (a setting): start only once
            self.started = True
            self.next(1500)

    def grab(self, name: str) -> None:
        window = self.app.window
        QApplication.processEvents()
        screen = window.screen()
        image = screen.grabWindow(window.winId())
        if image.isNull() or image.width() < 100:  # no real screen (offscreen): render it
            image = window.grab()
        path = self.folder / f"{name}.png"
        image.save(str(path))
        print(f"saved {path}", flush=True)

    def next(self, delay_ms: int = 800) -> None:
        QTimer.singleShot(delay_ms, self, self.steps.pop(0))

    def writing(self) -> None:
        self.app.window.show_page("writing")
        page = self.app.writing_page
        if page.model.rowCount():
            page.table.selectRow(min(1, page.model.rowCount() - 1))
        QTimer.singleShot(1000, self, lambda: (self.grab("writing"), self.next()))

    def chat(self) -> None:
        self.app.window.show_page("chat")
        page = self.app.chat_page
        page.composer.setPlainText(QUESTION)
        page.send.click()
        self.app.chat.job.signals.progress.connect(self._piece)
        self.app.chat.job.signals.ended.connect(lambda: QTimer.singleShot(800, self, self._reply))

    def _piece(self, _piece: str) -> None:
        self.pieces += 1
        if self.pieces == STREAMED_PIECES:
            self.app.chat.stop()  # the rest of the reply is not needed

    def _reply(self) -> None:
        self.grab("chat")
        self.next()

    def model(self) -> None:
        self.app.window.show_page("model")
        training = self.app.model.training
        training.progress.connect(self._training)
        training.finished.connect(lambda _outcome: self.next(1500))
        self.app.model.training_overrides = dict(TOUR_TRAINING)
        self.app.model_page.retrain.click()

    def _training(self, progress) -> None:
        plot = self.app.model_page.plot
        if not self.took_model and progress.phase == "train" and len(plot.points) >= LOSS_POINTS:
            self.took_model = True
            self.grab("model")
            self.app.model.cancel_training()

    def settings(self) -> None:
        self.app.window.show_page("settings")
        self._when(lambda: self.app.settings_page.devices.text().startswith("Training"),
                   lambda: (self.grab("settings"), self.next()))

    def _when(self, ready, then, tries: int = 240) -> None:
        if ready() or tries <= 0:
            then()
        else:
            QTimer.singleShot(500, self, lambda: self._when(ready, then, tries - 1))

    def finish(self) -> None:
        from oppu.core.conversations import delete_conversation

        conversation = self.app.chat.session.conversation_id
        if conversation is not None:
            delete_conversation(self.app.profile, conversation, forget_writing=True)
        self.app.window.close()


def start_tour(app, folder: str) -> Tour:
    """Start once the window is up and the writing is open."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    tour = Tour(app, target)
    app.window.setGeometry(0, 0, 1180, 760)
    app.writingReady.connect(tour.begin)
    return tour
