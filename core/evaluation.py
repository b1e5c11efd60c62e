"""`oppu eval`: how much more *yours* the personal adapter makes the model.

The four OPPU configurations (base, base + retrieval, adapter, adapter + retrieval) on the
documents the adapter's training run held out, laid out exactly as the engine prompts.
The result is stored in the adapter's metrics under `"evaluation"` (the `adapters` row,
which My model shows), so it is measured once and read anywhere.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select

from oppu.core.adapters import AdapterError, version_row
from oppu.core.progress import Progress, Report, ShouldStop, Stopped, ignore, never
from oppu.storage.chunking import WORD
from oppu.storage.models import Adapter, Document
from oppu.trainer.versions import active_adapter

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
    retrieved_passages: int | None = None  # None: measured before this was recorded

    @property
    def reduction_vs_base(self) -> float:
        return _cut(self.perplexity["adapter+retrieval"], self.perplexity["base"])

    @property
    def reduction_vs_retrieval(self) -> float:
        return _cut(self.perplexity["adapter+retrieval"], self.perplexity["base+retrieval"])

    @property
    def retrieval_note(self) -> str | None:
        """Why the configurations with retrieval measure as those without, when they do."""
        if self.retrieved_passages == 0:
            return ("no passage of your earlier writing was given as context with the "
                    "held-out writing (none was similar enough, or none is older), so "
                    "retrieval changed nothing here")
        return None

    def to_dict(self) -> dict:
        return {"version": self.version, "perplexity": self.perplexity,
                "heldout_tokens": self.heldout_tokens,
                "heldout_documents": self.heldout_documents,
                "reduction_vs_base": self.reduction_vs_base,
                "reduction_vs_retrieval": self.reduction_vs_retrieval,
                "generation": self.generation,
                "retrieved_passages": self.retrieved_passages}

    @classmethod
    def from_dict(cls, data: dict) -> "Evaluation":
        return cls(data["version"], data["perplexity"], data["heldout_tokens"],
                   data["heldout_documents"], data.get("generation", {}),
                   data.get("retrieved_passages"))


def _cut(new: float, old: float) -> float:
    from oppu.trainer.personal_eval import reduction

    return reduction(new, old)


def evaluation_in(metrics: dict) -> Evaluation | None:
    """The evaluation stored in an adapter version's metrics, if it was measured."""
    data = (metrics or {}).get(EVALUATION_KEY)
    return Evaluation.from_dict(data) if data else None


def stored_evaluation(profile, version: str | None = None) -> Evaluation | None:
    """The last evaluation of `version` (default: the active adapter), if any;
    EvaluationError when there is no such adapter."""
    with profile.store.read() as session:
        return evaluation_in(_adapter_row(session, version).metrics)


def _adapter_row(session, version: str | None) -> Adapter:
    if version:
        try:
            return version_row(session, version)
        except AdapterError as error:
            raise EvaluationError(str(error)) from None
    row = active_adapter(session)
    if row is None:
        raise EvaluationError("no active adapter to evaluate: retrain first (Retrain my model, "
                              "or `oppu train`)")
    return row


@dataclass(frozen=True)
class _Target:
    """An adapter version whose files are all there, and its held-out writing still stored."""
    version: str
    folder: Path
    base_sha256: str
    meta: dict
    heldout_words: list[tuple[int, int]]  # (document id, words), the oldest first


def _target(profile, version: str | None) -> _Target:
    """What `evaluate_profile` measures; EvaluationError names the first thing missing."""
    from oppu.trainer.peft_files import CONFIG_NAME, WEIGHTS_NAME
    from oppu.trainer.versions import GGUF_FILE, META_FILE, PEFT_DIR, read_meta, version_folder

    with profile.store.read() as session:
        row = _adapter_row(session, version)
        version, folder, sha256, origin = (row.version, version_folder(profile.folder, row),
                                           row.base_sha256, row.origin)
    needed = [META_FILE, f"{PEFT_DIR}/{CONFIG_NAME}", f"{PEFT_DIR}/{WEIGHTS_NAME}", GGUF_FILE]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise EvaluationError(f"adapter {version}'s files are missing from {folder} "
                              f"({', '.join(missing)}); retrain to make a new version")
    meta = read_meta(folder)
    wanted = meta.get("heldout_document_ids")
    if origin == "imported":
        raise EvaluationError(f"adapter {version} was imported: there is no record of which "
                              "writing its training held out")
    if wanted is None:
        raise EvaluationError(f"adapter {version}'s {META_FILE} is unreadable or lists no "
                              "held-out writing")
    if not wanted:
        raise EvaluationError(f"adapter {version} held out no writing to evaluate on (too few "
                              "documents when it was trained); add writing and retrain")
    with profile.store.read() as session:
        heldout = session.execute(select(Document.id, Document.words).where(
            Document.id.in_(wanted), Document.deleted.is_(False)).order_by(Document.id)).all()
    if not heldout:
        raise EvaluationError(f"all the writing adapter {version} held out has been deleted "
                              "since; retrain to hold out new writing")
    return _Target(version, folder, sha256, meta, [tuple(pair) for pair in heldout])


def unavailable_reason(profile, version: str | None = None) -> str | None:
    """Why `evaluate_profile` would refuse at once (a cheap check: files and held-out
    writing, not the base model), or None if it can measure."""
    try:
        _target(profile, version)
    except EvaluationError as error:
        return str(error)
    return None


def _base_gguf(profile, meta: dict, sha256: str) -> Path:
    from oppu.core.chat import base_sha256
    from oppu.trainer.base_models import resolve_base

    candidates = [Path(meta.get("base", {}).get("gguf_path", "")),
                  resolve_base(profile.settings.base_model)]
    for path in candidates:
        if path.is_file() and base_sha256(path) == sha256:
            return path
    raise EvaluationError("the base model this adapter was trained on is no longer available "
                          f"(sha256 {sha256[:12]}…); choose it again (My model → Base model, or `oppu base use`)")


def _word_budget(heldout_words: list[tuple[int, int]], max_words: int) -> dict[int, int]:
    """Document id -> words to measure: whole documents, the oldest first, while they fit in
    `max_words`; the first one cut to `max_words` if even it is longer."""
    chosen, total = {}, 0
    for document_id, words in heldout_words:
        if total + words > max_words:
            if not chosen:
                chosen[document_id] = max_words
            break
        chosen[document_id] = words
        total += words
    return chosen


@dataclass(frozen=True)
class _Excerpt:
    id: int
    title: str
    text: str
    words: int


class _Openings:
    """The writing as the evaluation reads it: each held-out document cut to its budgeted
    opening words (retrieval still searches everything)."""

    def __init__(self, writing, budget: dict[int, int]):
        self.writing, self.budget = writing, budget

    def get(self, document_id: int) -> _Excerpt:
        document = self.writing.get(document_id)
        words = self.budget.get(document_id, document.words)
        # cut where the stored word count counts words, so the budget means the same
        ends = [match.end() for match in WORD.finditer(document.text)]
        text = document.text[:ends[words - 1]] if 0 < words < len(ends) else document.text
        return _Excerpt(document.id, document.title, text, min(words, len(ends)))

    def search(self, *args, **kwargs):
        return self.writing.search(*args, **kwargs)


def evaluate_profile(profile, version: str | None = None, generations: int = DEFAULT_GENERATIONS,
                     report: Report = ignore, should_stop: ShouldStop = never,
                     max_words: int = DEFAULT_MAX_WORDS) -> Evaluation:
    """Measure the adapter (default: the active one) on its run's held-out documents, the
    oldest first, as many as fit in `max_words` (the first one cut to fit if it is longer)."""
    from oppu.trainer.config import TrainConfig
    from oppu.trainer.personal_eval import generation_items, heldout_layout, perplexities
    from oppu.trainer.prepare import prepare_base
    from oppu.trainer.versions import GGUF_FILE, PEFT_DIR

    target = _target(profile, version)
    version, folder = target.version, target.folder
    budget = _word_budget(target.heldout_words, max_words)
    held, writing = list(budget), _Openings(profile.writing, budget)
    config = TrainConfig.from_dict(target.meta.get("config") or {})
    if config.retrieval_k == 0:  # trained without passages: compare with what chat retrieves
        config = replace(config, retrieval_k=max(1, profile.settings.retrieval_k))

    def step(phase: str, message: str, done: int, total: int) -> None:
        if should_stop():
            raise Stopped("evaluation was stopped")
        report(Progress(phase, done, total, message))

    gguf = _base_gguf(profile, target.meta, target.base_sha256)
    step("prepare", "base model", 0, 1)
    base = prepare_base(gguf)
    tokenizer = base.load_tokenizer()
    layout = heldout_layout(writing, tokenizer, config, held)
    model = base.load_model()
    ppl = perplexities(model, layout, folder / PEFT_DIR,
                       report=lambda what, done, total: step("perplexity", what, done, total))
    del model
    scores = {}
    if generations > 0:
        items = generation_items(writing, tokenizer, config, held, generations)
        scores = generation_scores(
            gguf, folder / GGUF_FILE, items,  # at full strength, as the perplexities
            report=lambda what, done, total: step("generate", what, done, total))
    result = Evaluation(version, {k: v["perplexity"] for k, v in ppl.items()},
                        ppl["base"]["tokens"], len(layout.document_ids), scores,
                        layout.retrieved_passages)
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
                report(name, done, total)

            texts = _continuations(engine, items, name.endswith("retrieval"), max_tokens, tick)
            results[name] = score_continuations(items, texts) | {"examples": [
                {"opening": item.opening, "real": item.continuation, "generated": text}
                for item, text in list(zip(items, texts))[:samples]]}
    return results
