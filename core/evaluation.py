"""`oppu eval`: how much more *yours* the personal adapter makes the model.

The four OPPU configurations (base, base + retrieval, adapter, adapter + retrieval) on the
documents the adapter's training run held out, laid out exactly as the engine prompts.
The result is stored in the adapter's metrics under `"evaluation"` (the `adapters` row,
which My model shows), so it is measured once and read anywhere.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select

from oppu.core.progress import Progress, Report, ShouldStop, Stopped, ignore, never
from oppu.storage.models import Adapter, Document

EVALUATION_KEY = "evaluation"
DEFAULT_GENERATIONS = 4
GENERATION_TOKENS = 96
DEFAULT_MAX_WORDS = 20_000  # about 3 minutes of perplexity on a 2-core CPU


class EvaluationError(Exception):
    pass


@dataclass(frozen=True)
class Evaluation:
    version: str
    perplexity: dict  # configuration -> perplexity
    heldout_tokens: int
    heldout_documents: int
    generation: dict  # configuration -> {"rouge_l", "style", ...}; empty if skipped

    @property
    def reduction_vs_base(self) -> float:
        return _cut(self.perplexity["adapter+retrieval"], self.perplexity["base"])

    @property
    def reduction_vs_retrieval(self) -> float:
        return _cut(self.perplexity["adapter+retrieval"], self.perplexity["base+retrieval"])

    def to_dict(self) -> dict:
        return {"version": self.version, "perplexity": self.perplexity,
                "heldout_tokens": self.heldout_tokens,
                "heldout_documents": self.heldout_documents,
                "reduction_vs_base": self.reduction_vs_base,
                "reduction_vs_retrieval": self.reduction_vs_retrieval,
                "generation": self.generation}

    @classmethod
    def from_dict(cls, data: dict) -> "Evaluation":
        return cls(data["version"], data["perplexity"], data["heldout_tokens"],
                   data["heldout_documents"], data.get("generation", {}))


def _cut(new: float, old: float) -> float:
    from oppu.trainer.personal_eval import reduction

    return reduction(new, old)


def evaluation_in(metrics: dict) -> Evaluation | None:
    """The evaluation stored in an adapter version's metrics, if it was measured."""
    data = (metrics or {}).get(EVALUATION_KEY)
    return Evaluation.from_dict(data) if data else None


def stored_evaluation(profile, version: str | None = None) -> Evaluation | None:
    """The last evaluation of `version` (default: the active adapter), if any."""
    with profile.store.read() as session:
        row = _adapter_row(session, version, required=version is not None)
        return evaluation_in(row.metrics) if row is not None else None


def _adapter_row(session, version: str | None, required: bool = True) -> Adapter | None:
    statement = select(Adapter).where(Adapter.version == version) if version else \
        select(Adapter).where(Adapter.is_active.is_(True))
    row = session.scalar(statement)
    if row is None and required:
        raise EvaluationError(f"no adapter version {version!r}" if version else
                              "no active adapter to evaluate: retrain first (Retrain my model, or "
                              "`oppu train`)")
    return row


def _base_gguf(profile, meta: dict, sha256: str) -> Path:
    from oppu.trainer.base_models import resolve_base

    candidates = [Path(meta.get("base", {}).get("gguf_path", "")),
                  resolve_base(profile.settings.base_model)]
    for path in candidates:
        if path.is_file() and _sha256_matches(path, sha256):
            return path
    raise EvaluationError("the base model this adapter was trained on is no longer available "
                          f"(sha256 {sha256[:12]}…); choose it again (My model → Base model, or `oppu base use`)")


def _sha256_matches(path: Path, sha256: str) -> bool:
    from oppu.trainer.prepare import sha256_file

    return sha256_file(path) == sha256


def evaluate_profile(profile, version: str | None = None, generations: int = DEFAULT_GENERATIONS,
                     report: Report = ignore, should_stop: ShouldStop = never,
                     max_words: int = DEFAULT_MAX_WORDS) -> Evaluation:
    """Measure the adapter (default: the active one) on its run's held-out documents (as
    many as fit in `max_words`, at least one)."""
    from oppu.trainer.lora import TrainConfig
    from oppu.trainer.personal_eval import generation_items, heldout_layout, perplexities
    from oppu.trainer.prepare import prepare_base
    from oppu.trainer.versions import GGUF_FILE, PEFT_DIR, read_meta

    with profile.store.read() as session:
        row = _adapter_row(session, version)
        version, folder, sha256 = row.version, Path(row.path), row.base_sha256
    meta = read_meta(folder)
    if not (folder / PEFT_DIR).is_dir():
        raise EvaluationError(f"adapter {version} has no {PEFT_DIR}/ folder; its files are "
                              "missing")
    wanted = set(meta.get("heldout_document_ids") or [])
    with profile.store.read() as session:
        rows = session.execute(select(Document.id, Document.words).where(
            Document.id.in_(wanted), Document.deleted.is_(False)).order_by(Document.id)).all()
    held, words = [], 0
    for document_id, count in rows:  # a bounded evaluation time: the oldest first
        if held and words + count > max_words:
            break
        held.append(document_id)
        words += count
    if not held:
        raise EvaluationError(f"adapter {version} has no held-out writing left to evaluate on "
                              "(imported, or its held-out documents were deleted)")
    config = TrainConfig.from_dict(meta.get("config") or {})
    if config.retrieval_k == 0:  # trained without passages: compare with what chat retrieves
        config = replace(config, retrieval_k=max(1, profile.settings.retrieval_k))

    def step(phase: str, message: str, done: int, total: int) -> None:
        if should_stop():
            raise Stopped("evaluation was stopped")
        report(Progress(phase, done, total, message))

    gguf = _base_gguf(profile, meta, sha256)
    step("prepare", "base model", 0, 1)
    base = prepare_base(gguf)
    tokenizer = base.load_tokenizer()
    layout = heldout_layout(profile.writing, tokenizer, config, held)
    model = base.load_model()
    ppl = perplexities(model, layout, folder / PEFT_DIR,
                       report=lambda what, done, total: step("perplexity", what, done, total))
    del model
    scores = {}
    if generations > 0:
        items = generation_items(profile.writing, tokenizer, config, held, generations)
        scores = generation_scores(
            gguf, folder / GGUF_FILE, items, scale=profile.settings.adapter_scale,
            report=lambda what, done, total: step("generate", what, done, total))
    result = Evaluation(version, {k: v["perplexity"] for k, v in ppl.items()},
                        ppl["base"]["tokens"], len(held), scores)
    with profile.store.write() as session:
        row = _adapter_row(session, version)
        row.metrics = {**(row.metrics or {}), EVALUATION_KEY: result.to_dict()}
    return result


def _continuations(engine, items: list, retrieval: bool, max_tokens: int,
                   report) -> list[str]:
    from oppu.engine.chat import ReplyStream, Sampling
    from oppu.storage.prompting import writing_messages

    texts = []
    for item in items:
        messages = writing_messages(item.passages if retrieval else [], item.title, item.opening)
        stream = ReplyStream(engine, engine.prompt_tokens(messages), Sampling.greedy(max_tokens))
        texts.append(stream.text().strip())
        report()
    return texts


def generation_scores(base_gguf: Path, adapter_gguf: Path | None, items: list,
                      max_tokens: int = GENERATION_TOKENS, scale: float = 1.0,
                      report=lambda what, done, total: None, samples: int = 2) -> dict:
    """Greedy continuations through llama.cpp, scored, for each of the four configurations
    (the adapter ones only when `adapter_gguf` is given); `samples` examples are kept."""
    from oppu.engine.llm import Engine
    from oppu.trainer.personal_eval import CONFIGURATIONS, score_continuations

    configurations = CONFIGURATIONS if adapter_gguf is not None else CONFIGURATIONS[:2]
    total = len(configurations) * len(items)
    done = 0
    results = {}
    with Engine(base_gguf) as engine:
        for name in configurations:
            engine.set_adapter(adapter_gguf if name.startswith("adapter") else None, scale)

            def tick(name=name):
                nonlocal done
                done += 1
                report(f"generating: {name}", done, total)

            texts = _continuations(engine, items, name.endswith("retrieval"), max_tokens, tick)
            results[name] = score_continuations(items, texts) | {"examples": [
                {"opening": item.opening, "real": item.continuation, "generated": text}
                for item, text in list(zip(items, texts))[:samples]]}
    return results
