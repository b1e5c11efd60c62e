"""One training run, inside the child process: base, dataset, LoRA, gate, adapter version.

The run's row holds what core decided (base GGUF, preset, overrides, device). This job
records everything else on it: running with its pid, then the outcome. The new version
is written under `runs/<id>/adapter/` first; only in the critical section at the end is
it renamed into `adapters/<version>/` and committed, the row, its document links, the
promotion and the run's outcome in one transaction. A kill before that leaves the store
and the active adapter as they were.

Evaluation gate: held-out loss of the base, of the currently active adapter (when it
shares this base) and of the new adapter, on the same held-out documents. The new one
becomes active only if it beats both; the decision and its reason are recorded.
"""

import math
import os
import shutil
import sys
import traceback
from pathlib import Path

from sqlalchemy import func, select

from oppu.storage.atomic import staged_dir
from oppu.storage.db import Store
from oppu.storage.disk_space import require_free_space
from oppu.storage.models import (
    Adapter,
    AdapterDocument,
    Document,
    Setting,
    TrainingRun,
    utcnow,
)
from oppu.storage.paths import private_dir, profile_dir
from oppu.trainer.child import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, Protocol, StopControl
from oppu.trainer.peft_files import save_without_local_paths
from oppu.trainer.versions import (
    PEFT_DIR,
    WORK_DIR,
    active_adapter,
    app_version,
    claimed_version,
    drop_old_merged_copies,
    make_active,
    read_meta,
    recorded_path,
    version_folder,
    write_meta,
    write_model_files,
)

OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory",
               "not enough memory")
DOING = {"starting": "starting", "prepare": "preparing the base model",
         "dataset": "laying out the dataset", "evaluate": "evaluating", "train": "training",
         "save": "saving the adapter"}


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or any(m in str(error).lower() for m in OOM_MARKERS)


def decide(new: dict, base: dict, active: dict | None, active_version: str | None,
           active_forgotten: bool = False) -> tuple[bool, str]:
    """Promote only an adapter whose held-out loss beats the base's and the active one's
    (said in perplexity, lower is better, as the user sees it everywhere else).
    An active adapter trained on writing the user has since deleted (`active_forgotten`) is
    no bar: the retrain is what forgets that writing, so beating the base is enough. With
    nothing held out (too few documents) there is nothing to compare: the new adapter,
    trained on all the writing there is, is promoted and the decision says it was not
    checked."""
    if not base["tokens"]:
        return True, ("promoted without a held-out check: your writing is too few documents "
                      "to hold one out and measure on (more documents let each retrain prove "
                      "itself before it replaces the last)")
    if not new["loss"] < base["loss"]:
        return False, (f"not promoted: held-out perplexity {_ppl(new)} does not beat the base "
                       f"model's {_ppl(base)}")
    if active is not None and active_forgotten:
        return True, (f"promoted: held-out perplexity {_ppl(new)} beats the base model's "
                      f"{_ppl(base)}; it replaces {active_version}, which was trained on "
                      f"writing you have since deleted")
    if active is not None and not new["loss"] < active["loss"]:
        return False, (f"not promoted: held-out perplexity {_ppl(new)} does not beat the active "
                       f"{active_version}'s {_ppl(active)}; {active_version} stays active")
    against = f" and {active_version}'s {_ppl(active)}" if active is not None else ""
    return True, (f"promoted: held-out perplexity {_ppl(new)} beats the base model's "
                  f"{_ppl(base)}{against}")


def _ppl(measured: dict) -> str:
    """Perplexity, as My model and `oppu adapters` show it (the gate compares losses)."""
    return f"{math.exp(measured['loss']):.2f}"


class TrainingJob:
    def __init__(self, store: Store, folder: Path, run_id: int, protocol: Protocol,
                 control: StopControl):
        self.store = store
        self.folder = folder
        self.run_id = run_id
        self.protocol = protocol
        self.control = control
        self.loss_curve: list = []
        self.phase = "starting"
        self.started = False  # whether this process took the run over (it was queued)

    # -- recording ----------------------------------------------------------------------

    def emit(self, phase: str, step: int = 0, total: int = 0, **extra) -> None:
        self.phase = phase
        self.protocol.emit({"phase": phase, "step": step, "total": total,
                            **{k: v for k, v in extra.items() if v is not None}})

    def _update_run(self, **fields) -> None:
        """Record on the run while this process runs it, never on one that has ended."""
        if not self.started:
            return
        with self.store.write() as session:
            run = session.get(TrainingRun, self.run_id)
            if run is not None and run.status == "running":
                for key, value in fields.items():
                    setattr(run, key, value)

    def _start(self) -> dict:
        with self.store.write() as session:
            run = session.get(TrainingRun, self.run_id)
            if run is None:
                raise LookupError(f"no training run {self.run_id}")
            if run.status != "queued":  # 'running': another process is running it
                raise LookupError(f"training run {self.run_id} is already {run.status}")
            run.status, run.pid = "running", os.getpid()
            config = dict(run.config)
        self.started = True
        return config

    def _end(self, status: str, error: str | None = None) -> int:
        if self.started:  # the work folder of a run another process runs is not ours
            shutil.rmtree(self._work_folder(), ignore_errors=True)
        with self.control.critical():
            self._update_run(status=status, error=error, loss_curve=self.loss_curve,
                             finished_at=utcnow())
        self.protocol.result(run=self.run_id, status=status, error=error)
        return EXIT_STOPPED if status == "cancelled" else EXIT_FAILED

    def _work_folder(self) -> Path:
        return self.folder / "runs" / str(self.run_id) / WORK_DIR

    # -- the run ------------------------------------------------------------------------

    def run(self) -> int:
        try:
            config = self._start()
            outcome = self._train(config)
        except BaseException as error:
            if self.control.requested:
                return self._end("cancelled")
            if is_out_of_memory(error):
                return self._end("failed", f"out of memory while {DOING[self.phase]}: try the "
                                           "'quick' preset, fewer max steps or a smaller base "
                                           "model")
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            # Errors written for people; anything else gets its type and a traceback in the log.
            known = type(error).__name__ in ("NotEnoughWriting", "BaseModelError", "ValueError",
                                            "UnsupportedAdapter", "AdapterMismatch",
                                            "AdapterLoadError", "NotEnoughDiskSpace")
            if not known:
                traceback.print_exc(file=sys.stderr)
            return self._end("failed", str(error) if known else
                             f"{type(error).__name__} while {DOING[self.phase]}: {error}")
        self.protocol.result(run=self.run_id, status="succeeded", **outcome)
        return EXIT_OK

    def _train(self, config: dict) -> dict:
        from oppu.storage.index import Index
        from oppu.storage.writing import Writing
        from oppu.trainer.answer_replay import ANSWER_CACHE_FILE, AnswerCache, base_answerer
        from oppu.trainer.config import run_config
        from oppu.trainer.dataset import build_dataset
        from oppu.trainer.disk_needs import adapter_bytes
        from oppu.trainer.evaluate import LearningCurve, heldout_metrics
        from oppu.trainer.lora import pick_device, train_lora
        from oppu.trainer.prepare import describe, prepare_base

        train_config = run_config(config["preset"], config.get("device", "auto"),
                                  config.get("overrides"))
        writing = Writing(self.store, Index(private_dir(self.folder / "chroma")))
        self.emit("prepare", 0, 100, message="base model")
        base = prepare_base(Path(config["base"]), report=lambda message, fraction: self.emit(
            "prepare", int(fraction * 100), 100, message=message))
        self._update_run(config={**config, "train": train_config.to_dict(),
                                 "base_sha256": base.sha256})
        require_free_space(self.folder, adapter_bytes(base.gguf_path, train_config),
                           "save the trained model")
        self.emit("dataset", 0, 1, message="laying out your writing")
        model = base.load_model(device=pick_device(train_config.device))
        answers = AnswerCache(self.folder / "runs" / ANSWER_CACHE_FILE, base.sha256)
        answerer = answers.around(base_answerer(model, lambda done, total: self.emit(
            "dataset", done, total, message="asking the base model about your writing")))
        dataset = build_dataset(writing, base.load_tokenizer(), train_config, answerer=answerer)
        used = dataset.train_document_ids + dataset.heldout_document_ids
        with self.store.read() as session:
            if _count_kept(session, used) < len(used):
                # Forgotten while this run read it: `Profile.forget` may have deleted the
                # file before the answers above were written back, so drop them here.
                answers.drop()
        self.emit("dataset", 1, 1)

        self.emit("evaluate", 0, 3, message="base model")
        metrics = {"base": heldout_metrics(model, dataset.heldout)}
        active_row = self._comparable_active(base.sha256)
        if active_row is not None:
            self.emit("evaluate", 1, 3, message=f"active adapter {active_row.version}")
            active_folder = version_folder(self.folder, active_row)
            metrics["active"] = self._evaluate_adapter(model, active_folder / PEFT_DIR,
                                                       dataset.heldout)
            metrics["active_version"] = active_row.version
            # Held-out documents the active adapter was trained on flatter it; say how many.
            seen = set(read_meta(active_folder).get("train_document_ids", []))
            metrics["active_trained_on_heldout"] = len(seen & set(dataset.heldout_document_ids))
        self.control.check()

        curve = LearningCurve(model, dataset.heldout, train_config.curve_points,
                              dataset.train_words / max(1, len(dataset.train)),
                              train_config.batch_size, metrics["base"])

        def on_step(progress: dict) -> None:
            if progress.get("loss") is not None:
                self.loss_curve.append([progress.get("step"), progress["loss"]])
            self.emit("train", progress.get("step", 0), progress.get("total", 0),
                      **{k: progress.get(k) for k in ("loss", "tokens_per_s", "eta_s")})
            curve.after_step(progress["step"], progress["total"])

        trained = train_lora(model, dataset, train_config, on_step, self.control.should_stop)
        self.loss_curve = trained.loss_curve
        self.emit("evaluate", 2, 3, message="new adapter")
        metrics["new"] = heldout_metrics(trained.peft_model, dataset.heldout)
        metrics["train"] = {"steps": trained.steps, "planned_steps": trained.planned_steps,
                            "ended_by": trained.ended_by, "tokens": trained.tokens,
                            "loss_tokens": trained.loss_tokens, "precision": trained.precision,
                            "seconds": round(trained.seconds, 2),
                            "tokens_per_s": round(trained.tokens / max(trained.seconds, 1e-9), 1)}
        metrics["curve"] = curve.finish(trained.steps, metrics["new"])
        metrics["dataset"] = {**dataset.stats, "train_words": dataset.train_words,
                              "heldout_words": dataset.heldout_words}
        self.emit("evaluate", 3, 3)
        return self._save(config, train_config, base, describe(base), dataset, trained,
                          metrics, active_row)

    def _comparable_active(self, base_sha256: str):
        with self.store.read() as session:
            row = active_adapter(session)
        if row is None or row.base_sha256 != base_sha256:
            return None
        return row if (version_folder(self.folder, row) / PEFT_DIR).is_dir() else None

    def _evaluate_adapter(self, model, peft_dir: Path, sequences) -> dict:
        from oppu.trainer.evaluate import heldout_metrics, load_adapter

        wrapped = load_adapter(model, peft_dir)
        try:
            return heldout_metrics(wrapped, sequences)
        finally:
            wrapped.unload()  # takes the LoRA layers out again, leaving `model` bare

    # -- the adapter version ------------------------------------------------------------

    def _save(self, config, train_config, base, base_summary, dataset, trained, metrics,
              active_row) -> dict:
        active = metrics.get("active")
        promoted, decision = decide(metrics["new"], metrics["base"], active,
                                    metrics.get("active_version"),
                                    active_row is not None and active_row.trained_on_deleted)
        for key in ("base", "new", "active"):
            if key in metrics and metrics[key]["tokens"] and not math.isfinite(
                    metrics[key]["loss"]):
                promoted, decision = False, f"not promoted: the {key} held-out loss is not finite"
        if not all(math.isfinite(loss) for _step, loss in trained.loss_curve[-3:]):
            promoted, decision = False, "not promoted: the training loss is not finite"
        self.emit("save", 0, 2, message="writing the adapter")
        work = self._work_folder()
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        trained.peft_model.save_pretrained(work / PEFT_DIR)
        save_without_local_paths(work / PEFT_DIR, base.gguf_path.name)
        write_model_files(work, base.gguf_path, base.sha256,
                          lambda done, total, _tensor: self.emit(
                              "save", done, total, message="merging a copy for fast replies"))
        meta = {"run_id": self.run_id, "base": {"name": base.gguf_path.name, **base_summary},
                "config": train_config.to_dict(), "preset": config["preset"], "metrics": metrics,
                "train_document_ids": list(dataset.train_document_ids),
                "heldout_document_ids": list(dataset.heldout_document_ids),
                "train_words": dataset.train_words, "app_version": app_version(),
                "created": utcnow().isoformat(), "decision": decision}
        with self.control.critical():  # a stop request now waits: the work is done
            return self._commit(work, meta, promoted, decision, active_row,
                                config.get("base_setting"))

    def _commit(self, work: Path, meta: dict, promoted: bool, decision: str, active_row,
                base_setting: str | None) -> dict:
        adapters_dir = private_dir(self.folder / "adapters")
        with staged_dir(adapters_dir) as staged:
            for item in work.iterdir():
                os.rename(item, staged / item.name)
            with claimed_version(self.store, adapters_dir, staged) as (session, version):
                if promoted:
                    promoted, decision = _still_promotable(session, decision, active_row,
                                                           base_setting)
                meta |= {"version": version, "decision": decision, "promoted": promoted}
                write_meta(staged, meta)
                adapter = Adapter(version=version,
                                  path=recorded_path(self.folder, adapters_dir / version),
                                  base_name=meta["base"]["name"],
                                  base_sha256=meta["base"]["sha256"], origin="trained",
                                  metrics=meta["metrics"], words_trained=meta["train_words"],
                                  run_id=self.run_id)
                session.add(adapter)
                session.flush()
                trained = set(meta["train_document_ids"])
                session.add_all(AdapterDocument(adapter_id=adapter.id, document_id=d,
                                                held_out=d not in trained)
                                for d in sorted(trained | set(meta["heldout_document_ids"])))
                if _count_kept(session, trained) < len(trained):  # forgotten meanwhile
                    adapter.trained_on_deleted, adapter.deleted_writing_at = True, utcnow()
                if promoted:
                    make_active(session, adapter)
                run = session.get(TrainingRun, self.run_id)
                run.status, run.metrics, run.loss_curve = "succeeded", meta["metrics"], \
                    self.loss_curve
                run.adapter_version, run.promoted, run.decision = version, promoted, decision
                run.finished_at = utcnow()
        shutil.rmtree(work, ignore_errors=True)
        with self.store.read() as session:
            drop_old_merged_copies(session, adapters_dir, version)
        self.emit("save", 2, 2)
        return {"version": version, "promoted": promoted, "decision": decision,
                "metrics": meta["metrics"]}


def _still_promotable(session, decision: str, active_row,
                      base_setting: str | None) -> tuple[bool, str]:
    """The gate's promotion, withdrawn if the active adapter or the base model was changed
    while the run trained."""
    current = active_adapter(session)
    base_now = session.get(Setting, "base_model")  # no row: still the default
    if (current.id if current else None) != (active_row.id if active_row else None):
        return False, "not promoted: the active adapter was changed during training"
    if None not in (base_now, base_setting) and base_now.value != base_setting:
        return False, "not promoted: the base model was changed during training"
    return True, decision


def _count_kept(session, document_ids) -> int:
    """How many of `document_ids` are still stored, not forgotten."""
    return session.scalar(select(func.count(Document.id)).where(
        Document.id.in_(list(document_ids)), Document.deleted.is_(False)))


def run_job(profile_name: str, run_id: int, root: Path | None, protocol: Protocol) -> int:
    folder = profile_dir(profile_name, root)
    control = StopControl(folder / "runs" / str(run_id) / "stop").install()
    store = Store(folder / "oppu.db")
    try:
        return TrainingJob(store, folder, run_id, protocol, control).run()
    finally:
        control.close()
        store.close()
