"""Benchmark: which file chat serves a trained adapter through, and why q8_0.

llama.cpp can take a version's adapter attached to the base at run time, or merged into
the base, whose weights must then be stored anew. This measures, for a real adapter that
the product trains on Austen's Persuasion (its first 20 chapters, the default preset),
what each way keeps of the adapter and what it costs:
- held-out perplexity through llama.cpp on the last chapters (the first 4,096 tokens, in
  512-token windows read from scratch), plain text without the chat layout: the same for
  every configuration, so only their differences matter;
- prompt speed (500 tokens) and decode speed (128 greedy tokens), best of 3 rounds in
  round robin;
for the base, the adapter attached, and merged copies stored as q8_0 (what training
writes), q5_0, q4_0 and q4_k_m (llama.cpp's quantizer, from an F32 merge).

Run: .venv/bin/python bench/served_model.py [--version-folder PROFILE/adapters/vN]
(without it, a profile in a temporary folder is trained first: about 5 minutes here).
Writes bench/results/served_model.md and bench/results/served_model.json.
"""

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CORPUS = ROOT.parent / "shared" / "corpora" / "austen-persuasion.txt"
TRAIN_CHAPTERS = 20
HELDOUT_TOKENS = 4096
WINDOW = 512
PROMPT_TOKENS = 500
DECODE_TOKENS = 128
SERVED = "q8_0"  # every block weight matrix in q8_0: `merge.write_served_gguf`
# name -> (write_merged_gguf's tensor type, the quantizer's type or None)
MERGED = {"q8_0": ("q8_0", None), "q5_0": ("q8_0", "q5_0"), "q4_0": ("q8_0", "q4_0"),
          "q4_k_m": ("q8_0", "q4_k_m")}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def trained_version(home: Path) -> Path:
    """A version folder trained by the product on the corpus's first chapters."""
    os.environ["OPPU_HOME"] = str(home)
    from oppu.core.profile import Profile
    from oppu.core.training import run_training
    from oppu.trainer.corpus import read_book

    with Profile("austen") as profile:
        for section in read_book(CORPUS)[:TRAIN_CHAPTERS]:
            profile.writing.add_text("file", section.text, section.title)
        say("training the adapter through the product")
        outcome = run_training(profile, lambda _progress: None)
        if outcome.status != "succeeded":
            raise SystemExit(f"training failed: {outcome.error}")
        return profile.adapters_dir / outcome.version


def merged_copies(version: Path, base: Path, work: Path) -> dict[str, Path]:
    """The merged copies to compare; q8_0 is the served copy, as training writes it."""
    from oppu.trainer.merge import write_merged_gguf, write_served_gguf

    made = {}
    for name, (tensor_type, quantize_to) in MERGED.items():
        say(f"merging as {name}")
        out = work / f"merged-{name}.gguf"
        made[name] = (write_served_gguf(version / "peft", base, out) if name == SERVED else
                      write_merged_gguf(version / "peft", base, out, tensor_type, quantize_to))
    return made


def perplexity(engine, tokens: list[int]) -> float:
    windows = [tokens[i:i + WINDOW + 1] for i in range(0, len(tokens) - 1, WINDOW)]
    total = sum(engine.negative_log_likelihood(w) for w in windows)
    return math.exp(total / sum(len(w) - 1 for w in windows))


def measure(version: Path, base: Path, merged: dict[str, Path]) -> dict:
    from bench.generate import llama_speed
    from oppu.engine.llm import Engine
    from oppu.trainer.corpus import read_book
    from oppu.trainer.versions import GGUF_FILE

    sections = read_book(CORPUS)
    heldout = "\n\n".join(s.text for s in sections[TRAIN_CHAPTERS:])
    prompt_text = "\n\n".join(s.text for s in sections[:2])
    configs = {"base": (base, None), "attached": (base, version / GGUF_FILE)} | {
        f"merged {name}": (path, None) for name, path in merged.items()}
    engines = {name: Engine(path, n_ctx=1024, logits_all=True)
               for name, (path, _adapter) in configs.items()}
    try:
        for name, (_path, adapter) in configs.items():
            engines[name].set_adapter(adapter)
        tokens = engines["base"].tokenize(heldout)[:HELDOUT_TOKENS]
        prompt = engines["base"].tokenize(prompt_text)[:PROMPT_TOKENS]
        rows = {}
        for name, engine in engines.items():
            say(f"perplexity, {name}")
            rows[name] = {"perplexity": perplexity(engine, tokens),
                          "file_mb": configs[name][0].stat().st_size / 2**20}
        runs = {name: [] for name in engines}
        for round_ in range(3):
            for name, engine in engines.items():
                say(f"speed, {name}, round {round_ + 1}")
                runs[name].append(llama_speed(engine, prompt, DECODE_TOKENS))
        for name, measured in runs.items():
            rows[name]["prompt_tps"] = max(p for p, _ in measured)
            rows[name]["decode_tps"] = max(d for _, d in measured)
        threads = engines["base"].n_threads
    finally:
        for engine in engines.values():
            engine.close()
    return {"configs": rows, "heldout_tokens": len(tokens), "prompt_tokens": len(prompt),
            "n_threads": threads}


def _kept(rows: dict, name: str) -> float:
    """The share of the attached adapter's perplexity cut that `name` keeps."""
    base = rows["base"]["perplexity"]
    return (base - rows[name]["perplexity"]) / (base - rows["attached"]["perplexity"])


def markdown(r: dict) -> str:
    rows = r["configs"]
    attached = rows["attached"]
    lines = [
        "# Serving a personal adapter: attached, or merged into the base",
        "",
        (f"A real adapter ({r['trained']['train_words']:,} words, preset "
         f"`{r['trained']['preset']}`, trained by the product on the first {TRAIN_CHAPTERS} chapters of {CORPUS.name}) on the bundled "
         f"SmolLM2-135M-Instruct (Q4_1). Held-out perplexity through llama.cpp on "
         f"{r['heldout_tokens']} tokens of the later chapters ({WINDOW}-token windows, plain "
         f"text); speed on a {r['prompt_tokens']}-token prompt and {DECODE_TOKENS} greedy "
         f"tokens, best of 3, {r['n_threads']} threads. {r['machine']}, {r['date']}."),
        "",
        ("| served as | file MB | held-out perplexity | adapter's cut kept | prompt tok/s | "
         "decode tok/s |"),
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        kept = "" if name == "base" else f"{_kept(rows, name):.0%}"
        lines.append(f"| {name} | {row['file_mb']:.0f} | {row['perplexity']:.2f} | {kept} | "
                     f"{row['prompt_tps']:.0f} | {row['decode_tps']:.1f} |")
    q8 = rows["merged q8_0"]
    lines += [
        "",
        (f"- The app serves a version at full strength through its merged q8_0 copy, which "
         f"training and import write beside the adapter: it keeps the adapter's effect "
         f"(perplexity {q8['perplexity']:.2f} against {attached['perplexity']:.2f} attached) "
         f"and reads prompts {q8['prompt_tps'] / attached['prompt_tps']:.1f}x as fast as the "
         f"attached adapter ({q8['prompt_tps']:.0f} against {attached['prompt_tps']:.0f} "
         "tokens/s), because q8_0 has llama.cpp's tiled matmul kernels and Q4_1 has none; "
         f"it decodes at {q8['decode_tps']:.1f} tokens/s against {attached['decode_tps']:.1f} "
         f"attached and {rows['base']['decode_tps']:.1f} for the base alone (every block "
         "weight is q8_0 in the served copy, adapted or not)."),
        ("- Smaller types lose part of what the adapter learnt: the base is already 4-bit, "
         "so storing the merged weights in 4 or 5 bits rounds them a second time, and the "
         "adapter's small additions partly round away. "
         + "; ".join(f"{name[7:]} keeps {_kept(rows, name):.0%} of the cut and decodes "
                     f"{row['decode_tps'] / q8['decode_tps']:.2f}x as fast as q8_0"
                     for name, row in rows.items()
                     if name.startswith("merged") and name != "merged q8_0")
         + ". Personalization is the point of the adapter, so the app keeps all of it."),
        "- At other strengths the adapter is attached to the base, as before.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version-folder", type=Path,
                        help="a trained version (adapters/vN); default: train one first")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from oppu.storage.privacy import go_offline
    from oppu.trainer.base_models import bundled_gguf
    from oppu.trainer.versions import read_meta

    go_offline()
    work = Path(tempfile.mkdtemp(prefix="oppu-bench-served-"))
    try:
        version = args.version_folder or trained_version(work / "home")
        base = bundled_gguf()
        merged = merged_copies(version, base, work)
        r = measure(version, base, merged)
        meta = read_meta(version)
        r["trained"] = {"version": version.name, "preset": meta.get("preset"),
                        "train_words": meta.get("train_words")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    r["machine"] = f"{os.cpu_count()} CPUs, {platform.platform()}"
    r["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "served_model.json").write_text(json.dumps(r, indent=2) + "\n")
    (args.out / "served_model.md").write_text(markdown(r))
    print(markdown(r))


if __name__ == "__main__":
    main()
