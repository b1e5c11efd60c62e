"""Benchmark: does the personal adapter learn its user? OPPU's table on three real authors.

Each book in the corpora folder is one user: its chapters (or stories) are that user's
documents; the last ~15% are held out and never trained on. For each author:
- a Profile in a temporary OPPU_HOME is filled with the training documents and trained
  through the product (`oppu.core.training.run_training`: the child process, the default
  preset, the gate, the adapter GGUF);
- the held-out documents are then added (as new writing arrives after a training run)
  and measured in the four OPPU configurations (`oppu.trainer.personal_eval`):
  perplexity with transformers, greedy continuations through llama.cpp;
- every author's adapter is measured on every author's held-out text (the cross matrix).
The learning curves come from the product runs themselves: the trainer measures its own
held-out split at a few points of every run (`TrainConfig.curve_points`).

Run:  .venv/bin/python bench/personalization.py --corpora /work/shared/corpora
Writes bench/results/personalization.{md,json,png}; a full run also appends its headline
numbers to bench/results/personalization_runs.jsonl, the record of tuning tries.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
STATE_FILE = "bench-state.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", type=Path, required=True,
                        help="folder of books (*.txt), one author each")
    parser.add_argument("--authors", nargs="*", help="file stems to use (default: all)")
    parser.add_argument("--heldout-fraction", type=float, default=0.15)
    parser.add_argument("--eval-words", type=int, default=4000,
                        help="held-out words per author that are measured (first part of each "
                             "held-out document); bounds the evaluation time")
    parser.add_argument("--generations", type=int, default=5,
                        help="held-out openings continued per author and configuration")
    parser.add_argument("--generation-tokens", type=int, default=64)
    parser.add_argument("--preset", default=None, help="training preset (default: the "
                        "product's default setting)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="training option override (for tuning)")
    parser.add_argument("--keep-tokenization", action="store_true",
                        help="measure the books as NLTK ships them (spaces around punctuation, "
                             "a sentence per line) instead of as ordinary prose; for comparison "
                             "with runs on the raw files only")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run on slices: 4 documents of 600 words, 3 steps")
    parser.add_argument("--home", type=Path, default=None,
                        help="OPPU_HOME to use and keep; an author already trained there is "
                             "reused (default: a temporary one, removed afterwards)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a remark recorded with this run")
    return parser.parse_args(argv)


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        if not raw:
            raise SystemExit(f"--set needs KEY=VALUE, not {pair!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


def load_books(args) -> dict[str, tuple[list, list]]:
    """author -> (training sections, held-out sections)."""
    from oppu.trainer.corpus import Section, hold_out_last, read_book

    files = sorted(args.corpora.glob("*.txt"))
    if args.authors:
        files = [f for f in files if f.stem in args.authors]
    if not files:
        raise SystemExit(f"no books (*.txt) found in {args.corpora}")
    books = {}
    for path in files:
        sections = read_book(path, tokenized=not args.keep_tokenization)
        if args.quick:
            sections = [Section(s.title, " ".join(s.text.split()[:600])) for s in sections[:4]]
        train, held = hold_out_last(sections, args.heldout_fraction)
        per_doc = max(50, args.eval_words // len(held))
        books[path.stem] = (train, [Section(s.title, cut_words(s.text, per_doc)) for s in held])
    return books


def cut_words(text: str, limit: int) -> str:
    """The first `limit` words of `text`, ended at the last sentence end within them."""
    words = text.split()
    if len(words) <= limit:
        return text
    head = " ".join(words[:limit])
    end = max(head.rfind(mark) for mark in (". ", "! ", "? ", '." ', "!' ", "?' "))
    return head[:end + 1] if end > len(head) // 2 else head


class Timer:
    def __init__(self):
        self.phases: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class Phase:
            def __enter__(self):
                self.start = time.perf_counter()
                print(f"== {name}", flush=True)

            def __exit__(self, *_exc):
                spent = time.perf_counter() - self.start
                timer.phases[name] = timer.phases.get(name, 0.0) + spent
                print(f"   {name}: {spent:.0f} s", flush=True)

        return Phase()


def progress_printer(author: str):
    last = {"phase": None, "at": 0.0}

    def report(progress) -> None:
        now = time.perf_counter()
        if progress.phase != last["phase"] or now - last["at"] > 30:
            last.update(phase=progress.phase, at=now)
            loss = f" loss {progress.loss:.3f}" if progress.loss is not None else ""
            print(f"   [{author}] {progress.phase} {progress.done}/{progress.total}"
                  f" {progress.message}{loss}", flush=True)

    return report


def train_author(profile, train_sections, preset, overrides) -> dict:
    """Fill the profile with the training documents and train through the product."""
    from oppu.core.training import run_training
    from oppu.trainer.versions import read_meta

    state_path = profile.folder / STATE_FILE
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        print(f"   [{profile.name}] reusing adapter {state['version']} from {profile.folder}")
        return state
    ids = [profile.writing.add_text("file", s.text, s.title)[0] for s in train_sections]
    started = time.perf_counter()
    outcome = run_training(profile, progress_printer(profile.name), overrides=overrides,
                           preset=preset)
    wall = time.perf_counter() - started
    if outcome.status == "cancelled":
        raise SystemExit(f"training {profile.name} was stopped")
    if outcome.status != "succeeded":
        raise SystemExit(f"training {profile.name} failed: {outcome.error}")
    folder = profile.adapters_dir / outcome.version
    meta = read_meta(folder)
    state = {"version": outcome.version, "folder": str(folder), "train_ids": ids,
             "wall_s": wall, "promoted": outcome.promoted, "decision": outcome.decision,
             "train": meta["metrics"]["train"], "config": meta["config"],
             "curve": meta["metrics"].get("curve", []),
             "train_words": meta["train_words"], "gate": {
                 k: meta["metrics"][k]["perplexity"] for k in ("base", "new")},
             "preset": meta["preset"]}
    state_path.write_text(json.dumps(state, indent=2))
    return state


def add_heldout(profile, held_sections, state: dict) -> list[int]:
    if "heldout_ids" not in state:
        state["heldout_ids"] = [profile.writing.add_text("file", s.text, s.title)[0]
                                for s in held_sections]
        (profile.folder / STATE_FILE).write_text(json.dumps(state, indent=2))
    return state["heldout_ids"]


def evaluate(books, states, profiles, base, args, timer) -> dict:
    """Perplexity (four configurations and the cross matrix) and generation scores."""
    from oppu.core.evaluation import generation_scores
    from oppu.trainer.config import TrainConfig
    from oppu.trainer.personal_eval import (
        generation_items,
        heldout_layout,
        perplexities,
        perplexity,
    )
    from oppu.trainer.versions import GGUF_FILE, PEFT_DIR

    tokenizer = base.load_tokenizer()
    model = base.load_model()
    authors = list(books)
    layouts, results = {}, {}
    for author in authors:
        state = states[author]
        config = TrainConfig.from_dict(state["config"])
        with timer(f"perplexity: {author}"):
            layout = heldout_layout(profiles[author].writing, tokenizer, config,
                                    state["heldout_ids"], retrieve_from_heldout=False)
            layouts[author] = layout
            ppl = perplexities(model, layout, Path(state["folder"]) / PEFT_DIR)
        results[author] = {"perplexity": {k: v["perplexity"] for k, v in ppl.items()},
                           "heldout_tokens": ppl["base"]["tokens"],
                           "retrieved_passages": layout.retrieved_passages}
        print(f"   {author}: " + ", ".join(f"{k} {v['perplexity']:.2f}"
                                            for k, v in ppl.items()), flush=True)
    cross = {a: {a: results[a]["perplexity"]["adapter"]} for a in authors}
    with timer("perplexity: cross matrix"):
        for adapter in authors:
            peft_dir = Path(states[adapter]["folder"]) / PEFT_DIR
            for text in (t for t in authors if t != adapter):
                cross[adapter][text] = perplexity(model, layouts[text].plain,
                                                  peft_dir)["perplexity"]
    for author in authors:
        state = states[author]
        config = TrainConfig.from_dict(state["config"])
        with timer(f"generation: {author}"):
            items = generation_items(profiles[author].writing, tokenizer, config,
                                     state["heldout_ids"], args.generations,
                                     exclude=set(state["heldout_ids"]))
            results[author]["generation"] = generation_scores(
                base.gguf_path, Path(state["folder"]) / GGUF_FILE, items,
                max_tokens=args.generation_tokens, samples=1)
    curve = {author: {"points": states[author]["curve"],
                      "train_words": states[author]["train_words"]} for author in authors}
    return {"authors": results, "cross": cross, "curve": curve}


def main(argv=None) -> int:
    args = parse_args(argv)
    overrides = parse_overrides(args.overrides)
    if args.quick:
        overrides = {"max_steps": 3, "seq_len": 512, "min_words": 100} | overrides
        args.generations, args.generation_tokens = min(args.generations, 2), 24
    home = args.home or Path(tempfile.mkdtemp(prefix="oppu-personalization-"))
    os.environ["OPPU_HOME"] = str(home)
    from oppu.storage.privacy import go_offline

    go_offline()
    from personalization_report import summarize, write_results

    from oppu.core.profile import Profile
    from oppu.trainer.base_models import bundled_gguf
    from oppu.trainer.prepare import prepare_base

    timer = Timer()
    started = time.perf_counter()
    books = load_books(args)
    profiles, states = {}, {}
    try:
        with timer("prepare base"):
            base = prepare_base(bundled_gguf())
        for author, (train, held) in books.items():
            profile = Profile(author)
            profiles[author] = profile
            with timer(f"train: {author}"):
                states[author] = train_author(profile, train, args.preset, overrides)
            with timer("add held-out documents"):
                add_heldout(profile, held, states[author])
        measured = evaluate(books, states, profiles, base, args, timer)
    finally:
        for profile in profiles.values():
            profile.close()
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    total = time.perf_counter() - started
    summary = summarize(books, states, measured, timer.phases, total, args, overrides)
    write_results(summary, args.out, record=not args.quick)
    print(f"\ntotal {total / 60:.1f} min; wrote {args.out}/personalization.md")
    return 0


if __name__ == "__main__":
    from oppu.core.cli.interrupt import terminate_as_interrupt

    with terminate_as_interrupt():  # `kill` stops the training child as well, as Ctrl-C does
        sys.exit(main())
