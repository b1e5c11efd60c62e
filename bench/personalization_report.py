"""The personalization benchmark's numbers: summary, targets, Markdown, JSON and the plot."""

import json
import math
import platform
from datetime import UTC, datetime
from pathlib import Path

from oppu.trainer.personal_eval import CONFIGURATIONS, reduction

TARGETS = {"ppl_reduction_vs_base": 0.40, "ppl_reduction_vs_rag": 0.20,
           "specificity_margin_min": 0.20, "total_minutes": 45.0, "train_minutes_max": 10.0}
RUNS_FILE = "personalization_runs.jsonl"
CONFIG_KEYS = ("rank", "alpha", "target_modules", "learning_rate", "epochs", "max_minutes",
               "batch_size", "seq_len", "retrieval_k")


def finite_mean(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def cross_summary(cross: dict, base_ppl: dict) -> tuple[dict, dict]:
    """The cross matrix (`cross[adapter][text]`, perplexities) read as the benchmark reads
    it: the gains against the base, `gain[adapter][text]`, and per author its own gain, the
    largest gain its adapter gives another author's text, the specificity margin (the
    difference; None for a lone author), the mean gains off its diagonal along its row and
    its column, and whether its text is predicted best by its own adapter."""
    authors = list(cross)
    gain = {a: {t: reduction(cross[a][t], base_ppl[t]) for t in authors} for a in authors}
    per_author = {}
    for author in authors:
        others = [t for t in authors if t != author]
        column = {a: cross[a][author] for a in authors}
        largest = max((gain[author][t] for t in others), default=None)
        per_author[author] = {
            "own_gain": gain[author][author],
            "largest_gain_on_others": largest,
            "specificity_margin": None if largest is None else gain[author][author] - largest,
            "nonspecific_gain_row": (finite_mean(gain[author][t] for t in others)
                                     if others else None),
            "nonspecific_gain_column": (finite_mean(gain[a][author] for a in others)
                                        if others else None),
            "diagonal_best": min(column, key=column.get) == author}
    return gain, per_author


def summarize(books, states, measured, phases, total_s, args, overrides) -> dict:
    authors = list(books)
    cross = measured["cross"]
    base_ppl = {t: measured["authors"][t]["perplexity"]["base"] for t in authors}
    gain, specificity = cross_summary(cross, base_ppl)
    per_author = {}
    for author in authors:
        ppl = measured["authors"][author]["perplexity"]
        state = states[author]
        train, held = books[author]
        per_author[author] = {
            "documents": {"train": len(train), "heldout": len(held)},
            "words": {"train": sum(s.words for s in train), "heldout_measured":
                      sum(s.words for s in held), "trained_on": state["train_words"]},
            "heldout_tokens": measured["authors"][author]["heldout_tokens"],
            "perplexity": ppl,
            "reduction_vs_base": {k: reduction(ppl[k], ppl["base"]) for k in CONFIGURATIONS},
            "ppl_reduction_vs_base": reduction(ppl["adapter+retrieval"], ppl["base"]),
            "ppl_reduction_vs_rag": reduction(ppl["adapter+retrieval"], ppl["base+retrieval"]),
            **specificity[author],
            "training": {"wall_s": round(state["wall_s"], 1), **state["train"],
                         "promoted": state["promoted"], "decision": state["decision"],
                         "gate_perplexity": state["gate"], "preset": state["preset"]},
            "generation": measured["authors"][author].get("generation", {}),
        }
    margins = [p["specificity_margin"] for p in per_author.values()
               if p["specificity_margin"] is not None]
    config = states[authors[0]]["config"]
    summary = {
        "benchmark": "personalization",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_cores()} cores, {platform.python_version()}",
        "quick": bool(args.quick),
        "note": args.note,
        "preset": states[authors[0]]["preset"],
        "overrides": overrides,
        "config": {k: config.get(k) for k in CONFIG_KEYS},
        "ppl_reduction_vs_base": finite_mean(p["ppl_reduction_vs_base"]
                                             for p in per_author.values()),
        "ppl_reduction_vs_rag": finite_mean(p["ppl_reduction_vs_rag"]
                                            for p in per_author.values()),
        "diagonal_best": all(p["diagonal_best"] for p in per_author.values()),
        "specificity_margin_min": min(margins) if margins else None,
        "nonspecific_gain_mean": finite_mean(p["nonspecific_gain_row"]
                                             for p in per_author.values()),
        "cross_matrix": {"perplexity": cross, "gain": gain, "rows": "adapter",
                         "columns": "held-out text"},
        "authors": per_author,
        "learning_curve": measured["curve"],
        "total_minutes": total_s / 60,
        "train_minutes_max": max(p["training"]["seconds"] for p in per_author.values()) / 60,
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
        "settings": {"heldout_fraction": args.heldout_fraction, "eval_words": args.eval_words,
                     "generations": args.generations,
                     "generation_tokens": args.generation_tokens,
                     "keep_tokenization": args.keep_tokenization},
    }
    summary["targets"] = targets(summary)
    return summary


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def targets(summary: dict) -> dict:
    def check(value, goal, higher=True):
        met = value is not None and math.isfinite(value) and (
            value >= goal if higher else value < goal)
        return {"value": value, "target": goal, "met": met}

    return {
        "ppl_reduction_vs_base": check(summary["ppl_reduction_vs_base"],
                                       TARGETS["ppl_reduction_vs_base"]),
        "ppl_reduction_vs_rag": check(summary["ppl_reduction_vs_rag"],
                                      TARGETS["ppl_reduction_vs_rag"]),
        "diagonal_best": {"value": summary["diagonal_best"], "target": True,
                          "met": summary["diagonal_best"]},
        "specificity_margin_min": check(summary["specificity_margin_min"],
                                        TARGETS["specificity_margin_min"]),
        "total_minutes": check(summary["total_minutes"], TARGETS["total_minutes"], False),
        "train_minutes_max": {"value": summary["train_minutes_max"],
                              "target": TARGETS["train_minutes_max"],
                              "met": summary["train_minutes_max"] <= TARGETS["train_minutes_max"]},
    }


# -- writing ------------------------------------------------------------------------------


def write_results(summary: dict, out: Path, record: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / RUNS_FILE
    if record:
        with open(runs_path, "a") as handle:
            handle.write(json.dumps(run_record(summary)) + "\n")
    runs = [json.loads(line) for line in runs_path.read_text().splitlines()
            if line.strip()] if runs_path.is_file() else []
    (out / "personalization.json").write_text(json.dumps(summary, indent=2, default=_plain))
    plotted = plot(summary, out / "personalization.png")
    (out / "personalization.md").write_text(markdown(summary, runs, plotted))


def _plain(value):
    return str(value)


def run_record(summary: dict) -> dict:
    """One line of the tuning record: the configuration and the headline numbers."""
    return {"date": summary["date"], "note": summary["note"], "preset": summary["preset"],
            "config": summary["config"], "overrides": summary["overrides"],
            **{k: summary[k] for k in ("ppl_reduction_vs_base", "ppl_reduction_vs_rag",
                                       "diagonal_best", "specificity_margin_min",
                                       "nonspecific_gain_mean", "total_minutes",
                                       "train_minutes_max")},
            "authors": {a: {"ppl_reduction_vs_base": p["ppl_reduction_vs_base"],
                            "ppl_reduction_vs_rag": p["ppl_reduction_vs_rag"],
                            "specificity_margin": p["specificity_margin"],
                            "steps": p["training"]["steps"]}
                        for a, p in summary["authors"].items()}}


def plot(summary: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    curve = summary["learning_curve"]
    authors = list(summary["authors"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for author, run in (curve or {}).items():
        points = run["points"]
        left.plot([p["words_seen"] / 1000 for p in points], [p["perplexity"] for p in points],
                  marker="o", label=f"{author.split('-')[0]} ({run['train_words']:,} words)")
    if curve:
        left.set_xlabel("words of writing trained on (thousands, repeats counted)")
        left.set_ylabel("held-out perplexity")
        left.set_title("Learning curves (the product runs)")
        left.legend(fontsize=8)
        left.grid(alpha=0.3)
    gains = summary["cross_matrix"]["gain"]
    matrix = [[100 * gains[a][t] for t in authors] for a in authors]
    image = right.imshow(matrix, cmap="viridis")
    right.set_xticks(range(len(authors)), [a.split("-")[0] for a in authors])
    right.set_yticks(range(len(authors)), [a.split("-")[0] for a in authors])
    right.set_xlabel("held-out text of")
    right.set_ylabel("adapter of")
    right.set_title("Perplexity cut vs base (%)")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            right.text(j, i, f"{value:.1f}", ha="center", va="center",
                       color="white" if value < max(map(max, matrix)) * 0.6 else "black")
    fig.colorbar(image, ax=right)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _pct(value) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def _points(value) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:+.1f} pts"


def markdown(s: dict, runs: list[dict], plotted: bool) -> str:
    authors = list(s["authors"])
    t = s["targets"]
    yes = {True: "yes", False: "**no**"}
    lines = [
        "# Personalization: does the personal adapter learn its user?",
        "",
        f"{s['date']} · {s['machine']} · preset `{s['preset']}`"
        + (f" with {s['overrides']}" if s["overrides"] else "")
        + (" · **quick smoke run (slices): numbers are not meaningful**" if s["quick"] else ""),
        "",
        (f"Configuration: rank {s['config']['rank']}, alpha {s['config']['alpha']}, "
        f"targets {', '.join(s['config']['target_modules'] or [])}, lr "
        f"{s['config']['learning_rate']}, {s['config']['epochs']} epochs within "
        f"{s['config']['max_minutes']} min, batch {s['config']['batch_size']} × "
        f"{s['config']['seq_len']} tokens, retrieval k = {s['config']['retrieval_k']}."),
        "",
        "## Targets",
        "",
        "| target | measured | goal | met |",
        "| --- | --- | --- | --- |",
        (f"| perplexity cut, adapter + retrieval vs base (mean) | "
        f"{_pct(t['ppl_reduction_vs_base']['value'])} | ≥ 40% | "
        f"{yes[t['ppl_reduction_vs_base']['met']]} |"),
        (f"| perplexity cut, adapter + retrieval vs base + retrieval (mean) | "
        f"{_pct(t['ppl_reduction_vs_rag']['value'])} | ≥ 20% | "
        f"{yes[t['ppl_reduction_vs_rag']['met']]} |"),
        (f"| cross matrix diagonal-best for every author | {s['diagonal_best']} | true | "
        f"{yes[t['diagonal_best']['met']]} |"),
        (f"| smallest specificity margin | {_points(s['specificity_margin_min'])} | ≥ +20 pts | "
        f"{yes[t['specificity_margin_min']['met']]} |"),
        (f"| whole benchmark | {s['total_minutes']:.1f} min | < 45 min | "
        f"{yes[t['total_minutes']['met']]} |"),
        (f"| longest training | {s['train_minutes_max']:.1f} min | ≤ 10 min | "
        f"{yes[t['train_minutes_max']['met']]} |"),
        "",
        "## The four configurations (held-out perplexity; cut vs the base model)",
        "",
        ("| author | held-out tokens | base | base + retrieval | adapter | adapter + retrieval |"
        " 4 vs 2 |"),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in authors:
        p = s["authors"][a]
        cells = [f"{p['perplexity'][k]:.2f}" + ("" if k == "base" else
                                                f" ({_pct(p['reduction_vs_base'][k])})")
                 for k in CONFIGURATIONS]
        lines.append(f"| {a} | {p['heldout_tokens']:,} | " + " | ".join(cells)
                     + f" | {_pct(p['ppl_reduction_vs_rag'])} |")
    lines += ["", "## Generation through llama.cpp (greedy; ROUGE-L / style similarity)", "",
              "| author | base | base + retrieval | adapter | adapter + retrieval |",
              "| --- | --- | --- | --- | --- |"]
    for a in authors:
        g = s["authors"][a]["generation"]
        lines.append(f"| {a} | " + " | ".join(
            f"{g[k]['rouge_l']:.3f} / {g[k]['style']:.3f}" if k in g else "–"
            for k in CONFIGURATIONS) + " |")
    lines += ["", "Pooled style similarity (all continuations of a configuration against all "
              "real continuations): " + "; ".join(
                  f"{a}: " + ", ".join(f"{k} {s['authors'][a]['generation'][k]['style_pooled']:.3f}"
                                       for k in CONFIGURATIONS
                                       if k in s["authors"][a]["generation"])
                  for a in authors) + "."]
    lines += ["", "## Cross-author matrix (adapter without retrieval; perplexity, cut vs base)",
              "", "| adapter \\ text | " + " | ".join(authors) + " | specificity margin | "
              "mean gain on others |", "| --- |" + " --- |" * (len(authors) + 2)]
    cross, gain = s["cross_matrix"]["perplexity"], s["cross_matrix"]["gain"]
    for a in authors:
        cells = []
        for t_ in authors:
            cell = f"{cross[a][t_]:.2f} ({_pct(gain[a][t_])})"
            cells.append(f"**{cell}**" if a == t_ else cell)
        p = s["authors"][a]
        lines.append(f"| {a} | " + " | ".join(cells) + f" | {_points(p['specificity_margin'])}"
                     f" | {_pct(p['nonspecific_gain_row'])} |")
    lines.append("| base | " + " | ".join(f"{s['authors'][t_]['perplexity']['base']:.2f}"
                                           for t_ in authors) + " | | |")
    lines += ["", "Diagonal best in each column (each text is predicted best by its own "
              "author's adapter): " + ", ".join(f"{a}: {s['authors'][a]['diagonal_best']}"
                                               for a in authors) + ".",
              "", "**The non-specific part of the gain.** Every adapter also lowers the "
              "perplexity of the other authors' text: it learns the prompt layout, 19th-century "
              "English prose and Gutenberg's conventions as well as its author. Per text "
              "column, the other adapters' mean cut is " + ", ".join(
                  f"{a}: {_pct(s['authors'][a]['nonspecific_gain_column'])}" for a in authors)
              + f"; the mean over all off-diagonal cells is {_pct(s['nonspecific_gain_mean'])}. "
              "Only the difference between the diagonal and the rest (the specificity margin "
              "above) is specific to the author."]
    lines += ["", "## Training (the product's child process, through `core.training`)", "",
              ("| author | documents trained on | words | steps | tokens | training | whole run "
              "| tokens/s | gate |"), "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a in authors:
        tr = s["authors"][a]["training"]
        lines.append(f"| {a} | {s['authors'][a]['documents']['train']} | "
                     f"{s['authors'][a]['words']['trained_on']:,} | {tr['steps']} | "
                     f"{tr['tokens']:,} | {tr['seconds'] / 60:.1f} min | "
                     f"{tr['wall_s'] / 60:.1f} min | {tr['tokens_per_s']:.0f} | "
                     f"{'promoted' if tr['promoted'] else 'not promoted'} |")
    lines += curve_section(s, plotted)
    lines += method_notes(s)
    lines += ["", "## Tuning record (every full run of this benchmark)", "",
              ("More tries, each trained on a lent GPU with the real base weights and measured "
               "the same way, are in [personalization_sweep.md](personalization_sweep.md)."),
              ""] + runs_table(runs)
    lines += ["", "## Time", "", "| phase | seconds |", "| --- | --- |"]
    lines += [f"| {k} | {v:.0f} |" for k, v in s["phases_s"].items()]
    lines.append(f"| total | {60 * s['total_minutes']:.0f} |")
    return "\n".join(lines) + "\n"


def curve_section(s: dict, plotted: bool) -> list[str]:
    curve = s["learning_curve"]
    if not curve:
        return []
    lines = ["", "## Learning curves", "",
             ("Held-out perplexity during each author's product run, measured by the trainer "
              "itself on its own held-out split (15% of the training documents, laid out with "
              "retrieval as in training; step 0 is the base model). Words seen count every "
              "word trained on, repeats across epochs included. Read it as how much writing "
              "an adapter needs before it pays off."), ""]
    if plotted:
        lines += ["![learning curves and cross matrix](personalization.png)", ""]
    lines += ["| author | step | words seen | held-out perplexity | cut vs step 0 |",
              "| --- | --- | --- | --- | --- |"]
    for author, run in curve.items():
        start = run["points"][0]["perplexity"] if run["points"] else math.nan
        lines += [f"| {author} | {p['step']} | {p['words_seen']:,} | {p['perplexity']:.2f} | "
                  f"{_pct(1 - p['perplexity'] / start)} |" for p in run["points"]]
    return lines


def method_notes(s: dict) -> list[str]:
    config = s["config"]
    return ["", "## Method", "",
            ("- **Users.** Each book is one user. Its chapters (stories for Chesterton) are its "
            "documents, split at the headings by `oppu.trainer.corpus`. The corpora are "
            "NLTK-tokenized (`Anne ' s`, `word ,`); they are turned back into ordinary prose "
            "first, so no gain comes from learning a tokenizer's spacing."),
            (f"- **Held out.** The last {100 * s['settings']['heldout_fraction']:.0f}% of each "
            "book's documents (at least one) are never trained on. They are added to the "
            "profile after training, like writing that arrives after a run, and the first "
            f"{s['settings']['eval_words']:,} words of them per author are measured (split "
            "evenly over the held-out documents, cut at a sentence end) to bound the time."),
            ("- **Training.** The product path: `core.training.run_training` starts "
            "`python -m oppu.trainer train`, which builds the OPPU dataset from the profile, "
            "holds out its own documents for the promotion gate, trains the LoRA with the "
            "preset and writes `peft/`, `adapter.gguf` and `meta.json`."),
            ("- **Layout.** Held-out text is laid out by the trainer's own dataset code "
            "(`oppu.trainer.dataset`): the chat template, the voice instruction, the title, "
            "the previous 48 tokens as the opening, and for the retrieval configurations "
            f"the top {config['retrieval_k']} passages (the preset's `retrieval_k`, as in "
            "training) retrieved with `Writing.search` from the author's training documents "
            "only. Every held-out token is scored once in each configuration, so the four "
            "perplexities are over the same tokens."),
            ("- **Generation.** Openings of 60 words spread over the held-out documents; the "
            "prompt is `storage.prompting.writing_messages` through the GGUF's chat template; "
            f"llama.cpp continues greedily for up to {s['settings']['generation_tokens']} "
            "tokens with the base GGUF and, for configurations 3 and 4, the adapter GGUF "
            "attached as a LoRA (`engine.llm.Engine.set_adapter`, the chat path). Scored "
            "against the real next 60 words."),
            ("- **Scores.** ROUGE-L: F1 of the longest common word subsequence (as "
            "`rouge-score`'s rougeL, no stemming). Style similarity: cosine similarity of the "
            "relative frequencies of 160 function words and 12 punctuation marks. Function "
            "words and punctuation are the classic authorship signal (Mosteller & Wallace; "
            "Burrows' Delta): every text uses them whatever its topic, so the score rewards "
            "writing *like* the author without copying their words, and names such as Alice "
            "or Father Brown do not count. On 80-word held-out snippets it ranks the true "
            "author first for all three books."),
            ("- **Cross matrix.** Rows are adapters, columns held-out texts, no retrieval. "
            "Gain = 1 - ppl / base ppl. Specificity margin of an author = own gain minus the "
            "largest gain the same adapter gives another author."),
            ("- **Learning curves.** Measured inside the product's training runs "
            "(`trainer.evaluate.LearningCurve`); the measuring time is not counted against "
            "the training time budget.")]


def runs_table(runs: list[dict]) -> list[str]:
    if not runs:
        return ["No full runs recorded yet."]
    lines = [("| date | note | config | overrides | 4 vs 1 | 4 vs 2 | diagonal | min margin | "
             "non-specific | minutes |"), "| --- |" + " --- |" * 9]
    for run in runs:
        c = run["config"]
        config = (f"r{c['rank']} a{c['alpha']} lr {c['learning_rate']} "
                  f"{len(c['target_modules'] or [])} targets, {c['epochs']} epochs within "
                  f"{c['max_minutes']} min, k={c['retrieval_k']}")
        lines.append(f"| {run['date'][:16]} | {run['note'] or '–'} | {config} | "
                     f"{run['overrides'] or '–'} | {_pct(run['ppl_reduction_vs_base'])} | "
                     f"{_pct(run['ppl_reduction_vs_rag'])} | {run['diagonal_best']} | "
                     f"{_points(run['specificity_margin_min'])} | "
                     f"{_pct(run['nonspecific_gain_mean'])} | {run['total_minutes']:.1f} |")
    return lines
