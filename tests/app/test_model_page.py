"""My model through the window: Retrain (a real QProcess child), versions, toggles, files."""

import re
import zipfile

from PySide6.QtCore import Qt

from oppu.core import adapters
from oppu.core.training import recent_runs
from oppu.trainer.versions import MERGED_FILE, read_meta
from tests.app.conftest import wait_jobs
from tests.app.test_chat_page import send
from tests.support.adapter_zips import lora_b_doubled, rezip, weights_changed
from tests.support.training_setup import FAST

STRONG = {**FAST, "max_steps": 8, "learning_rate": 3e-3}  # enough to beat the base: promoted
TRAINING_TIMEOUT_MS = 600_000


def retrain(qtbot, app):
    """Click Retrain and wait for the run to end; (outcome, progress seen, status texts)."""
    page = app.model_page
    seen, status = [], []

    def watch(progress) -> None:
        seen.append(progress)
        status.append((app.window.training_label.text(), app.window.training_bar.value()))

    app.model.training.progress.connect(watch)
    with qtbot.waitSignal(app.model.training.finished, timeout=TRAINING_TIMEOUT_MS) as ended:
        qtbot.mouseClick(page.retrain, Qt.MouseButton.LeftButton)
        assert not page.retrain.isEnabled() and not page.cancel.isHidden()
        assert not page.base_card.choices.isEnabled()  # a run trains for the base it began on
    app.model.training.progress.disconnect(watch)
    assert page.base_card.choices.isEnabled()
    return ended.args[0], seen, status


def test_retrain_toggle_and_export_the_whole_way(qtbot, trainee_app, tmp_path):
    app = trainee_app
    app.model.training_overrides = dict(STRONG)
    app.window.show_page("model")
    page = app.model_page
    assert page.version_label.text() == "Not trained yet" and not page.export.isEnabled()

    outcome, seen, status = retrain(qtbot, app)

    assert outcome.status == "succeeded" and outcome.promoted, outcome.decision
    phases = [p.phase for p in seen]
    assert phases[0] == "prepare" and phases[-1] == "save" and "train" in phases
    percents = [value for _text, value in status]
    assert percents == sorted(percents) and 0 < percents[-1] <= 100
    assert all(text.startswith("Retraining… ") and "%" in text for text, _value in status)
    assert {text.split("% ")[1] for text, _value in status} >= {"(training)",
                                                                 "(saving your model)"}
    assert len(page.plot.points) == STRONG["max_steps"]
    assert page.plot.caption.startswith("Run 1 · trained v1 · 20")  # and when, in local time
    assert page.banner.kind == "success" and "v1 is active: held-out perplexity" in \
        page.banner.label.text()
    assert page.version_label.text() == "v1" and "perplexity" in page.quality.text()
    assert [v.version for v in page.versions.items] == ["v1"] and page.versions.items[0].is_active
    assert app.window.training_label.isHidden() and page.retrain.isEnabled()
    assert app.window.adapter_label.text() == "Your model: v1"
    assert app.writing_page.counter_labels["since"].text() == "0"

    # "Measure on my writing" runs `oppu eval` off the GUI thread and shows the four-way table.
    view = page.evaluation
    assert view.summary.text().startswith("Measure compares") and view.measure.isVisibleTo(page)
    assert re.fullmatch(r"<b>\d+% better</b> than the base model at predicting writing of yours "
                        r"it never trained on: perplexity [\d.,]+ against [\d.,]+ .*",
                        page.quality.text())
    qtbot.mouseClick(view.measure, Qt.MouseButton.LeftButton)
    assert view.measure.isHidden() and not view.stop.isHidden()
    wait_jobs(qtbot, app, TRAINING_TIMEOUT_MS)
    assert page.banner.kind == "success" and "Measured v1" in page.banner.label.text()
    assert "Your model + your writing" in view.summary.text()
    # One headline: the measurement made here; the one from training becomes a footnote.
    assert view.summary.text().startswith("Your model with your writing, as chat uses them: <b>")
    assert re.fullmatch(r"When it was trained: held-out perplexity [\d.,]+ against [\d.,]+ "
                        r"\(lower is better\), \d+% (better|worse)\.", page.quality.text())
    assert view.measure.text() == "Measure again" and view.stop.isHidden()

    # Another base model: v1 stays active, and the page says chat replies without it.
    base = app.profile.settings.base_model
    page.base_card.baseModelRequested.emit("bundled")
    wait_jobs(qtbot, app)
    assert page.warning.isVisibleTo(page) and page.warning.text() == (
        "⚠ Trained on another base model (tiny-llama.gguf): chat replies without it. "
        "Retrain to make a version for this base, or choose tiny-llama.gguf again.")
    page.base_card.baseModelRequested.emit(base)
    wait_jobs(qtbot, app)
    assert not page.warning.isVisibleTo(page)

    # The personal model answers in chat; the toolbar toggle turns it off for the next reply.
    send(qtbot, app, "What did the hiking club photograph?")
    assert app.chat.session.last_reply.adapter_version == "v1"
    assert "with v1" in app.chat_page.transcript.bubbles[-1].header.text()
    app.chat_page.use_adapter.click()
    assert not app.chat_page.strength.isEnabled()
    assert app.window.adapter_label.text() == "Your model: v1 (off in this chat)"
    send(qtbot, app, "What did the hiking club photograph?")
    assert app.chat.session.last_reply.adapter_version is None

    # Export my adapter as a zip: a complete, valid bundle.
    target = tmp_path / "mine.zip"
    page.exportRequested.emit("zip", None, target)
    wait_jobs(qtbot, app, TRAINING_TIMEOUT_MS)
    assert page.banner.kind == "success" and str(target) in page.banner.label.text()
    with zipfile.ZipFile(target) as bundle:
        assert bundle.testzip() is None
        names = set(bundle.namelist())
    assert {"meta.json", "adapter.gguf"} <= {name.rsplit("/", 1)[-1] for name in names}
    assert any(name.endswith("adapter_model.safetensors") for name in names)

    # Importing it back stores nothing: it is v1 already, and v1 is active (no Activate offered).
    page.importRequested.emit(target)
    wait_jobs(qtbot, app, TRAINING_TIMEOUT_MS)
    assert (page.banner.kind, page.banner.label.text()) == (
        "info", f"{target.name} is already stored as v1: nothing to import.")
    assert page.banner.action.isHidden()
    assert [v.version for v in page.versions.items] == ["v1"]

    # A different adapter of the same shapes makes a new, inactive version.
    page.importRequested.emit(rezip(target, tmp_path / "other.zip", weights_changed(lora_b_doubled)))
    wait_jobs(qtbot, app, TRAINING_TIMEOUT_MS)
    assert [v.version for v in page.versions.items] == ["v2", "v1"]
    assert page.versions.items[0].origin == "imported" and not page.versions.items[0].is_active
    assert not page.rollback.isEnabled()  # v1 is the only version ever active
    assert page.banner.action.text() == "Activate v2"
    merged = adapters.list_adapters(app.profile)[0].path / MERGED_FILE
    merged.unlink()  # as older versions' copies are dropped
    page.banner.action.click()
    assert adapters.active(app.profile).version == "v2"
    wait_jobs(qtbot, app, TRAINING_TIMEOUT_MS)
    assert merged.is_file()  # written again in the background for chat
    # An imported version's numbers are what its file claims, not facts about this profile.
    assert page.quality.text().startswith("Its file says it was <b>")
    assert "measured where it was made" in page.quality.text()
    assert re.match(r"imported .*, which says it was trained on [\d,]+ words$",
                    page.details.text())
    assert page.rollback.isEnabled()
    page.rollbackRequested.emit()
    assert adapters.active(app.profile).version == "v1"
    assert page.banner.label.text() == "Rolled back: v1 is active again."
    page.deactivateRequested.emit()
    assert adapters.active(app.profile) is None
    assert page.version_label.text() == "No version active"
    assert app.window.adapter_label.text() == "Your model: off (base model only)"
    toggle = app.chat_page.use_adapter  # shows off, and says how to turn a version back on
    assert not toggle.isEnabled() and not toggle.isChecked() and "Activate" in toggle.toolTip()


def test_cancel_leaves_everything_as_it_was(qtbot, trainee_app):
    app = trainee_app
    app.model.training_overrides = {**FAST, "max_steps": 500}
    page = app.model_page
    profile = app.profile
    before = (adapters.list_adapters(profile), profile.writing.stats(),
              sorted(p.name for p in profile.adapters_dir.iterdir()))

    def cancel_once_training(progress) -> None:
        if progress.phase == "train" and not app.model.training.stop_requested:
            qtbot.mouseClick(page.cancel, Qt.MouseButton.LeftButton)

    app.model.training.progress.connect(cancel_once_training)
    outcome, seen, _status = retrain(qtbot, app)

    assert outcome.status == "cancelled"
    assert max(p.done for p in seen if p.phase == "train") < 500
    assert page.banner.label.text() == "Training stopped. Nothing changed."
    after = (adapters.list_adapters(profile), profile.writing.stats(),
             sorted(p.name for p in profile.adapters_dir.iterdir()))
    assert after == before
    assert [run.status for run in recent_runs(profile)] == ["cancelled"]
    assert page.retrain.isEnabled() and app.window.training_label.isHidden()
    stopped_at = page.plot.points  # the stopped run's loss, shown while its profile is open
    assert stopped_at and page.plot.caption.startswith("Run 1 · stopped · ")
    wait_jobs(qtbot, app)
    assert app.switch_profile("someone-else") and not page.plot.points
    wait_jobs(qtbot, app)
    assert app.switch_profile(profile.name) and page.plot.points == stopped_at


def test_a_run_that_cannot_start_is_a_message(qtbot, trainee_app, tmp_path):
    app = trainee_app
    app.profile.set("base_model", str(tmp_path / "missing.gguf"))
    qtbot.mouseClick(app.model_page.retrain, Qt.MouseButton.LeftButton)
    assert app.model_page.banner.kind == "error"
    assert "missing.gguf" in app.model_page.banner.label.text()
    assert not app.model.training.running and app.model_page.retrain.isEnabled()


def test_retrain_with_too_little_writing_says_what_a_model_needs(qtbot, app):
    """A new profile's Retrain started a run that failed in red; the card said 'since the
    last adapter' with none, and named the automatic threshold, not the first model's."""
    app.profile.writing.add_note("A short first note about the harbour at dawn.", "Dawn")
    app.window.show_page("model")
    app.model.refresh()
    page = app.model_page
    assert page.due.text() == "9 words of writing so far; a model needs at least 1,000."
    assert not page.no_versions.isHidden()
    qtbot.mouseClick(page.retrain, Qt.MouseButton.LeftButton)
    assert page.banner.kind == "info"
    assert page.banner.label.text().startswith("Not enough writing yet: 9 words, and a model "
                                               "needs at least 1,000")
    assert recent_runs(app.profile) == [] and page.retrain.isEnabled()


def test_retrain_waits_for_the_writing_to_open(qtbot, app):
    """Starting a run reads the writing, which the GUI thread would wait for (minutes, while
    the search index is rebuilt)."""
    app.writing_open = False  # as while it opens
    app.window.show_page("model")
    qtbot.mouseClick(app.model_page.retrain, Qt.MouseButton.LeftButton)
    assert app.model_page.banner.label.text() == (
        "Your writing is still being opened; retrain in a moment.")
    assert not app.model.training.running and recent_runs(app.profile) == []


def test_a_training_process_that_cannot_be_started_says_so(qtbot, trainee_app, monkeypatch,
                                                           tmp_path):
    """It said "ended unexpectedly (exit status None); see its log", and the log is empty."""
    from oppu.core import training

    app = trainee_app
    monkeypatch.setattr(training, "training_argv",
                        lambda _profile, _run_id: [str(tmp_path / "no-such-python")])
    outcome, _seen, _status = retrain(qtbot, app)
    assert (outcome.status, outcome.error) == (
        "failed", "the training process could not be started")
    assert "could not be started" in app.model_page.banner.label.text()
    assert app.model_page.retrain.isEnabled()


def test_a_run_another_process_started_shows_here_and_can_be_stopped_here(qtbot, trainee_app):
    """A run the background timer (or a terminal) started left Retrain enabled, and a click
    on it answered with a bare "training run 1 is still in progress"."""
    import threading

    from tests.support.training_setup import start_run

    app, page = trainee_app, trainee_app.model_page
    run_id, child = start_run(app.profile, {**FAST, "max_steps": 500})
    threading.Thread(target=child.stdout.read, daemon=True).start()  # as its parent would
    qtbot.waitUntil(lambda: app.model.elsewhere == run_id, timeout=30_000)
    assert not page.retrain.isEnabled() and not page.cancel.isHidden()
    assert page.phase.text().startswith("Training in another process")
    assert app.window.training_label.text() == "Retraining… (in another process)"
    assert app.window.training_bar.maximum() == 0  # busy: its progress is not known here
    qtbot.mouseClick(page.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: app.model.elsewhere is None, timeout=TRAINING_TIMEOUT_MS)
    assert child.wait(60) is not None
    assert page.banner.label.text() == "Training stopped. Nothing changed."
    assert page.retrain.isEnabled() and app.window.training_label.isHidden()


def test_a_run_whose_process_died_elsewhere_is_settled_here(qtbot, app):
    """The timer's run killed by the system: the page showed it running for good."""
    from oppu.storage.models import TrainingRun
    from tests.support.processes import dead_pid

    with app.profile.store.write() as session:
        session.add(TrainingRun(status="running", pid=dead_pid()))
    app.model.watch_other_runs()
    assert app.model.elsewhere is not None and not app.model_page.retrain.isEnabled()
    app.model.watch_other_runs()
    assert app.model.elsewhere is None and app.model_page.retrain.isEnabled()
    assert app.model_page.banner.label.text().startswith("Training failed")


def test_choosing_a_base_model_checks_the_file(qtbot, app, tmp_path, tiny_gguf):
    page = app.model_page
    not_a_model = tmp_path / "notes.gguf"
    not_a_model.write_text("just some text, not a model")
    page.base_card.baseModelRequested.emit(str(not_a_model))
    assert page.banner.kind == "error" and "notes.gguf" in page.banner.label.text()
    assert app.profile.settings.base_model == str(tiny_gguf)

    page.base_card.baseModelRequested.emit("bundled")
    assert app.profile.settings.base_model == "bundled"
    assert page.base_card.choices.currentData() == "bundled"
    assert app.window.base_label.text() == "Base model: SmolLM2-135M-Instruct (bundled)"
    assert page.banner.kind == "success"


def test_a_broken_adapter_file_is_refused_and_nothing_is_added(qtbot, app, tmp_path):
    broken = tmp_path / "adapter.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip file")
    app.model_page.importRequested.emit(broken)
    wait_jobs(qtbot, app)
    banner = app.model_page.banner
    assert banner.kind == "error" and banner.label.text().startswith("Not imported: ")
    assert adapters.list_adapters(app.profile) == []
    assert app.model_page.import_.isEnabled() and app.model_page.file_progress.isHidden()


def test_measure_is_offered_only_when_it_can_act(qtbot, trainee_app):
    app = trainee_app
    app.model.training_overrides = dict(STRONG)
    app.window.show_page("model")
    page = app.model_page
    view = page.evaluation
    assert not view.measure.isVisibleTo(page)  # nothing to measure before a first version
    outcome, _seen, _status = retrain(qtbot, app)
    assert outcome.promoted, outcome.decision
    assert view.measure.isVisibleTo(page) and view.measure.isEnabled()

    # A refresh while measuring (here: a version change elsewhere) keeps Measure hidden.
    qtbot.mouseClick(view.measure, Qt.MouseButton.LeftButton)
    app.model.refresh()
    assert view.measure.isHidden() and not view.stop.isHidden()
    # Not a run beside it: two models in memory (one of them in this process)
    qtbot.mouseClick(page.retrain, Qt.MouseButton.LeftButton)
    assert not app.model.training.running
    assert page.banner.label.text() == "Measuring is running: retrain when it ends, or stop it first."
    assert app.busy() and not app.scheduler.check()
    qtbot.mouseClick(view.stop, Qt.MouseButton.LeftButton)
    wait_jobs(qtbot, app, TRAINING_TIMEOUT_MS)
    assert (page.banner.kind, page.banner.label.text()) == (
        "info", "Measuring stopped. Nothing changed.")
    assert view.measure.isVisibleTo(page) and view.measure.isEnabled() and view.stop.isHidden()

    # Forgetting all the held-out writing leaves nothing to measure: say so, disable the button.
    held = read_meta(app.profile.adapters_dir / outcome.version)["heldout_document_ids"]
    app.writing_page.forgetRequested.emit(held)
    wait_jobs(qtbot, app)
    assert view.measure.isVisibleTo(page) and not view.measure.isEnabled()
    assert "held out has been deleted" in view.measure.toolTip()
    assert "Cannot measure now: all the writing adapter v1 held out" in view.summary.text()


def test_the_save_dialog_asks_before_replacing_a_file_named_without_its_suffix(qtbot,
                                                                             tmp_path):
    """Typed "mine" where mine.gguf existed, the export replaced mine.gguf without asking:
    the suffix was added only after the dialog had checked for "mine"."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QLineEdit, QMessageBox

    from oppu.app.export_dialog import save_dialog

    (tmp_path / "mine.gguf").write_text("another file of mine")
    dialog = save_dialog(None, tmp_path / "oppu-v1-adapter.gguf", ".gguf", "Adapter (.gguf)")
    dialog.setOption(dialog.Option.DontUseNativeDialog)
    asked = []

    def answer_the_question() -> None:
        question = QApplication.activeModalWidget()
        if isinstance(question, QMessageBox):
            asked.append(question.text())
            question.button(QMessageBox.StandardButton.No).click()
            dialog.reject()
        else:
            QTimer.singleShot(50, answer_the_question)

    def type_name() -> None:
        dialog.findChild(QLineEdit, "fileNameEdit").setText("mine")
        QTimer.singleShot(0, answer_the_question)
        dialog.accept()

    QTimer.singleShot(100, type_name)
    dialog.exec()
    assert asked and "mine.gguf" in asked[0]
    assert (tmp_path / "mine.gguf").read_text() == "another file of mine"


def test_the_loss_plot_draws_from_the_first_step(qtbot):
    """The label said "loss 3.990" at step 1 while the plot still said it would appear."""
    from PySide6.QtGui import QColor

    from oppu.app.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 160)
    curve = QColor("#4a5ae8").rgb()

    def drawn() -> bool:
        image = plot.grab().toImage()
        return any(image.pixel(x, y) == curve for x in range(0, 300, 2) for y in range(160))

    assert not drawn()
    plot.add_point(1, 3.99)
    assert drawn()


def test_measuring_says_what_it_does_in_words(qtbot):
    """The bar read "generate: generating: adapter+retrieval 87%"."""
    from oppu.app.evaluation_view import EvaluationView
    from oppu.core.progress import Progress

    view = EvaluationView()
    qtbot.addWidget(view)
    view.report(Progress("generate", 3, 4, "adapter+retrieval"))
    assert view.progress.format() == "Writing sample continuations: Your model + your writing  %p%"
    view.report(Progress("perplexity", 1, 4, "base"))
    assert view.progress.format() == "Scoring your held-out writing: Base model  %p%"
    view.report(Progress("prepare", 0, 1, "base model"))  # said once, not twice
    assert view.progress.format() == "Preparing the base model  %p%"


def test_every_export_quantization_says_what_it_trades(qtbot):
    from oppu.app.export_dialog import ExportDialog
    from oppu.core.adapter_files import quant_choices

    dialog = ExportDialog("v1", list(quant_choices()))
    qtbot.addWidget(dialog)
    texts = [dialog.quantization.itemText(i) for i in range(dialog.quantization.count())]
    assert len(texts) == len(quant_choices()) and all(": " in text for text in texts)


def test_a_measurement_on_few_tokens_says_it_is_a_small_sample():
    from oppu.app.evaluation_view import SMALL_SAMPLE_TOKENS, evaluation_table
    from oppu.core.evaluation import Evaluation

    perplexity = {"base": 84.9, "base+retrieval": 84.9, "adapter": 63.7,
                  "adapter+retrieval": 63.7}
    small = Evaluation("v1", perplexity, 331, 1, {})
    assert "small sample" in evaluation_table(small)
    large = Evaluation("v1", perplexity, SMALL_SAMPLE_TOKENS, 3, {}, retrieved_passages=4)
    assert "small sample" not in evaluation_table(large)
    # The reviewer's profile measured 63.66 with and without its writing, unexplained.
    assert "No passage" not in evaluation_table(large)
    unhelped = Evaluation("v1", perplexity, 331, 1, {}, retrieved_passages=0)
    assert "No passage of your earlier writing was given as context with the held-out " \
        "writing (none was similar enough, or none is older), so retrieval changed nothing " \
        "here." in evaluation_table(unhelped)
    assert Evaluation.from_dict(unhelped.to_dict()) == unhelped


def test_a_download_says_it_uses_the_internet_and_waits_for_a_yes(qtbot, monkeypatch):
    from oppu.app.base_model_card import BaseModelCard
    from oppu.core import bases

    card = BaseModelCard()
    qtbot.addWidget(card)
    card.set_downloads(bases.curated())
    questions = []
    answer = False

    def ask(_parent, _title, question, _action):
        questions.append(question)
        return answer

    monkeypatch.setattr("oppu.app.widgets.ask", ask)
    with qtbot.assertNotEmitted(card.downloadRequested):
        qtbot.mouseClick(card.download, Qt.MouseButton.LeftButton)
    assert "connects to the internet" in questions[0] and " MB) from " in questions[0]
    answer = True
    with qtbot.waitSignal(card.downloadRequested) as requested:
        qtbot.mouseClick(card.download, Qt.MouseButton.LeftButton)
    assert requested.args == [card.downloads.currentData()]
