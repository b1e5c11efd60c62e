"""Tables of `bench/personalization_sweep.py`: per try, the benchmark's headline numbers."""

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from personalization_report import cross_summary, finite_mean

from oppu.trainer.personal_eval import reduction

CPU_TOKENS_PER_S = 570  # the default preset's training rate on the 2-core CPU (personalization.md)


def summarize(rows: list[dict], order: list[str]) -> dict:
    base = {r["author"]: r for r in rows if "try" not in r}
    authors = sorted(base)
    runs = defaultdict(dict)
    for row in rows:
        if "try" in row:
            runs[row["try"]][row["author"]] = row
    tries = {}
    base_ppl = {t: base[t]["base"] for t in authors}
    for name in [n for n in order if set(runs.get(n, {})) == set(authors)]:
        by_author = runs[name]
        _, specificity = cross_summary({a: by_author[a]["cross"] for a in authors},
                                       base_ppl)
        per_author = {a: {
            "vs_base": reduction(by_author[a]["adapter+retrieval"], base[a]["base"]),
            "vs_rag": reduction(by_author[a]["adapter+retrieval"], base[a]["base+retrieval"]),
            **specificity[a],
            "tokens_trained": by_author[a]["tokens"] * by_author[a]["epochs"],
            "gpu_s": by_author[a]["gpu_s"]} for a in authors}
        tries[name] = {
            "ppl_reduction_vs_base": finite_mean(p["vs_base"] for p in per_author.values()),
            "ppl_reduction_vs_rag": finite_mean(p["vs_rag"] for p in per_author.values()),
            "diagonal_best": all(p["diagonal_best"] for p in per_author.values()),
            "specificity_margin_min": min(p["specificity_margin"]
                                          for p in per_author.values()),
            "nonspecific_gain": finite_mean(p["nonspecific_gain_row"]
                                            for p in per_author.values()),
            "largest_tokens_trained": max(p["tokens_trained"] for p in per_author.values()),
            "per_author": per_author}
    return {"authors": authors, "base": base, "tries": tries}


def write_report(measured: Path, out: Path, sweep: dict) -> None:
    rows = [json.loads(line) for line in measured.read_text().splitlines() if line.strip()]
    summary = summarize(rows, list(sweep))
    summary["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    summary["overrides"] = {name: {"dataset": variant, **overrides}
                            for name, (variant, overrides) in sweep.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "personalization_sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    authors = summary["authors"]
    lines = [
        "# Personalization tuning sweep on a GPU (real base weights)", "",
        (f"{summary['date']}. Made by `bench/personalization_sweep.py`: the writing, answer "
         "replay and held-out layouts come from the product on the CPU machine; each try "
         "trains `train_lora` on a lent GPU (bf16, no time budget) and is measured as "
         "`bench/personalization.py` measures (adapter + retrieval against the base, the "
         "cross matrix without retrieval). Overrides are against the default preset."), "",
        "Base perplexity: " + ", ".join(
            f"{a} {summary['base'][a]['base']:.2f} (with retrieval "
            f"{summary['base'][a]['base+retrieval']:.2f})" for a in authors) + ".", "",
        "| try | overrides | 4 vs 1 | 4 vs 2 | diagonal | min margin | non-specific | "
        + " | ".join(f"{a} 4 vs 1" for a in authors)
        + " | most tokens trained | est. CPU minutes |",
        "| --- " * (9 + len(authors)) + "|"]
    for name, result in summary["tries"].items():
        per_author = result["per_author"]
        minutes = result["largest_tokens_trained"] / CPU_TOKENS_PER_S / 60
        lines.append(
            f"| {name} | {json.dumps(summary['overrides'][name])} "
            f"| {100 * result['ppl_reduction_vs_base']:.1f}% "
            f"| {100 * result['ppl_reduction_vs_rag']:.1f}% | {result['diagonal_best']} "
            f"| {100 * result['specificity_margin_min']:+.1f} pts "
            f"| {100 * result['nonspecific_gain']:.1f}% | "
            + " | ".join(f"{100 * per_author[a]['vs_base']:.1f}%" for a in authors)
            + f" | {result['largest_tokens_trained']:,.0f} | {minutes:.1f} |")
    lines += ["", (f"Estimated CPU minutes: the most tokens any author's try trains on, at "
                   f"the default preset's {CPU_TOKENS_PER_S} tokens/s on the 2-core CPU (more "
                   "targets or rank train more slowly, so those estimates are low).")]
    (out / "personalization_sweep.md").write_text("\n".join(lines) + "\n")
