"""Benchmark: offline generation with the bundled SmolLM2-135M-Instruct (Q4_1).

In one run, on the same ~500-token chat prompt:
- llama.cpp decode and prompt-processing speed for the base, base + an adapter of the
  trainer's default config (the adapter the app serves; random non-zero B, attached at run
  time as the app does), that adapter merged into the base as the app serves it (every
  block weight q8_0, `merge.write_served_gguf`), and for comparison a
  rank-16 LoRA on all seven projections (the default until fewer measured the same in
  bench/results/personalization.md), attached and merged;
- time to first token through the chat use case, with and without retrieval from a
  profile of 200 notes (retrieval, prompt layout, context budget and prefill included),
  and for the 9th message of a conversation, against the same prompt read from scratch;
  the active version is served by its merged copy, as the app does at full strength, and
  again with the adapter attached to the base, as for a version without that copy;
- the baseline: the same prompt through transformers `generate` on the CPU (fp32, the
  dequantized base from trainer/prepare.py's cache).

llama.cpp is measured in a child process that never imports torch first: torch ships its
own libgomp, and whichever libgomp a process loads first is the one llama.cpp's threads
use, so sharing a process with torch would measure a setup the app never runs.

Run: .venv/bin/python bench/generate.py [--repeats 3]
Writes bench/results/generate.md and bench/results/generate.json.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.support: the adapter fixtures the tests use
RESULTS = ROOT / "bench" / "results"
DECODE_TOKENS = 128
TORCH_DECODE_TOKENS = 48
LATER_TURN = 9  # the message whose time to first token is measured in a conversation
LATER_REPLY_TOKENS = 80
B_STD = 0.05
TOPICS = ["bees", "sourdough", "the canal", "my grandmother", "cycling", "the garden",
          "winter", "the old piano", "chess", "the harbour"]


def long_question() -> str:
    """A user message that makes a chat prompt of about 500 tokens."""
    lines = [f"Point {i}: tell me what you remember about {TOPICS[i % len(TOPICS)]}, and how "
             f"it connects to what I wrote about {TOPICS[(i * 3 + 1) % len(TOPICS)]}."
             for i in range(19)]
    return "Please answer each point in my own voice.\n" + "\n".join(lines)


def notes() -> list[tuple[str, str]]:
    return [(f"Note {i} on {TOPICS[i % 10]}",
             (f"Day {i}. I spent the morning thinking about {TOPICS[i % 10]} and "
              f"{TOPICS[(i * 7) % 10]}. It reminded me of {TOPICS[(i * 3) % 10]}, "
              f"which I first wrote about {i % 12 + 1} months ago.")) for i in range(200)]


def make_adapters(work: Path, base: Path) -> dict:
    from oppu.trainer.config import ALL_LINEAR, TrainConfig
    from oppu.trainer.gguf_adapter import write_adapter_gguf
    from oppu.trainer.merge import write_served_gguf
    from oppu.trainer.prepare import prepare_base
    from tests.support.peft_fixtures import make_peft_adapter

    os.environ.setdefault("OPPU_HOME", str(Path(tempfile.gettempdir()) / "oppu-bench-home"))
    start = time.perf_counter()
    model = prepare_base(base).load_model().eval()
    load_s = time.perf_counter() - start
    default = TrainConfig()
    make_peft_adapter(model, work / "peft-all", rank=16, alpha=32.0, targets=ALL_LINEAR,
                      b_std=B_STD)
    make_peft_adapter(model, work / "peft-default", rank=default.rank, alpha=default.alpha,
                      targets=default.target_modules, b_std=B_STD)
    return {
        "model": model, "torch_load_s": load_s,
        "default_config": f"rank {default.rank}, {', '.join(default.target_modules)}",
        "all": write_adapter_gguf(work / "peft-all", base, work / "all.gguf"),
        "default": write_adapter_gguf(work / "peft-default", base, work / "default.gguf"),
        "merged": write_served_gguf(work / "peft-default", base, work / "merged.gguf"),
        "merged_all": write_served_gguf(work / "peft-all", base, work / "merged-all.gguf"),
    }


def llama_speed(engine, prompt: list[int], n: int) -> tuple[float, float]:
    """(prompt tokens/s, decode tokens/s) for `prompt` and `n` greedy tokens, no cache."""
    from oppu.engine.chat import Sampling

    engine.forget_evaluated()
    start = time.perf_counter()
    first = None
    tokens = engine.generate(prompt, Sampling.greedy().llama_args())
    for count, _token in enumerate(tokens, 1):  # end tokens do not stop a speed test
        if first is None:
            first = time.perf_counter()
        if count == n:
            break
    tokens.close()
    end = time.perf_counter()
    return len(prompt) / (first - start), (n - 1) / (end - first)


def torch_speed(model, prompt: list[int], n: int) -> tuple[float, float]:
    import torch

    ids = torch.tensor([prompt])
    with torch.no_grad():
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=1, do_sample=False)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        total = time.perf_counter() - start
    return len(prompt) / prefill, (n - 1) / max(total - prefill, 1e-9)


def chat_ttft(profile, models, retrieval: bool, repeats: int) -> tuple[float, int, int]:
    """Median ms from send() to the first streamed text, prompt tokens, passages used."""
    from oppu.core.chat import ChatOptions, ChatSession
    from oppu.engine.chat import Sampling

    session = ChatSession(profile, models, ChatOptions(
        use_retrieval=retrieval, incognito=True, sampling=Sampling.greedy(2)))
    times, reply = [], None
    for _ in range(repeats + 1):  # the first run loads the model and the embedder
        session.reset()
        if models.current is not None:
            models.current.forget_evaluated()
        ms, reply = ms_to_first_text(session, long_question())
        times.append(ms)
    return statistics.median(times[1:]), reply.stats.prompt_tokens, len(reply.sources)


def ms_to_first_text(session, text: str) -> tuple[float, object]:
    """Milliseconds from `session.send(text)` to its first streamed text, and the reply."""
    marks: list[float] = []

    def mark(_piece: str) -> None:
        if not marks:
            marks.append(time.perf_counter())

    start = time.perf_counter()
    reply = session.send(text, on_text=mark)
    return ((marks[0] if marks else time.perf_counter()) - start) * 1000, reply


def later_turn_ttft(profile, models, repeats: int) -> dict:
    """Time to first token of a conversation's 9th message (with retrieval): warm, right
    after the 8th reply as in the app, and cold, the same prompt with nothing evaluated
    before (what every message cost when the passages rode in the system message)."""
    from oppu.core.chat import ChatOptions, ChatSession
    from oppu.engine.chat import Sampling

    session = ChatSession(profile, models, ChatOptions(
        incognito=True, sampling=Sampling.greedy(LATER_REPLY_TOKENS)))
    questions = [f"What did I write about {topic}?" for topic in TOPICS[:LATER_TURN]]
    runs = {"warm": [], "cold": []}
    reply = None
    for _ in range(max(1, repeats)):
        session.reset()
        if models.current is not None:
            models.current.forget_evaluated()
        for question in questions[:-1]:
            session.send(question)
        before = list(session.history)
        for kind in ("warm", "cold"):
            session.history = list(before)
            if kind == "cold":
                models.current.forget_evaluated()
            ms, reply = ms_to_first_text(session, questions[-1])
            runs[kind].append(ms)
    return {"ttft_ms_turn9_warm": statistics.median(runs["warm"]),
            "ttft_ms_turn9_cold": statistics.median(runs["cold"]),
            "prompt_tokens_turn9": reply.stats.prompt_tokens}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def torch_part(work: Path, repeats: int) -> dict:
    """Adapters and merged file for the child, and the transformers baseline."""
    from oppu.engine.llm import Engine
    from oppu.storage.prompting import system_message, user_turn
    from tests.support.tiny_model import bundled_gguf

    base = bundled_gguf()
    say("preparing the transformers base and the adapters")
    made = make_adapters(work, base)
    with Engine(base, n_ctx=1024, n_threads=1) as engine:  # only for the prompt's tokens
        prompt = engine.prompt_tokens([system_message(), user_turn(long_question())])
    import torch

    say("transformers generate")
    runs = [torch_speed(made["model"], prompt, TORCH_DECODE_TOKENS) for _ in range(repeats)]
    return {"torch_load_s": made["torch_load_s"], "default_adapter": made["default_config"],
            "torch_threads": torch.get_num_threads(), "prompt_tokens": len(prompt),
            "pp_tps_transformers": max(p for p, _ in runs),
            "decode_tps_transformers": max(d for _, d in runs)}


def llama_part(work: Path, repeats: int) -> dict:
    """llama.cpp speeds and the chat's time to first token (run without torch loaded)."""
    from oppu.core.chat import Models, base_sha256
    from oppu.core.profile import Profile
    from oppu.engine.llm import Engine
    from oppu.storage.prompting import system_message, user_turn
    from oppu.trainer.versions import MERGED_FILE
    from tests.engine.adapters import install_adapter
    from tests.support.tiny_model import bundled_gguf

    base = bundled_gguf()
    r = {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
         "gomp_spincount": os.environ.get("GOMP_SPINCOUNT")}
    engine, merged = Engine(base), Engine(work / "merged.gguf")
    merged_all = Engine(work / "merged-all.gguf")
    prompt = engine.prompt_tokens([system_message(), user_turn(long_question())])
    configs = {"base": (engine, None), "adapter": (engine, work / "default.gguf"),
               "merged": (merged, None), "adapter_all": (engine, work / "all.gguf"),
               "merged_all": (merged_all, None)}
    speeds = {name: [] for name in configs}
    for repeat in range(repeats):  # round robin, so drifting load hits every config alike
        for name, (which, adapter) in configs.items():
            say(f"llama.cpp {name}, run {repeat + 1}")
            which.set_adapter(adapter)
            speeds[name].append(llama_speed(which, prompt, DECODE_TOKENS))
    for name, runs in speeds.items():
        r[f"pp_tps_{name}"] = max(p for p, _ in runs)
        r[f"decode_tps_{name}"] = max(d for _, d in runs)
    r["n_threads"], r["n_gpu_layers"] = engine.n_threads, engine.n_gpu_layers
    for which in (engine, merged, merged_all):
        which.close()

    os.environ["OPPU_HOME"] = str(work / "home")
    with Profile("bench") as profile:
        say("a profile of 200 notes")
        for title, text in notes():
            profile.writing.add_note(text, title)
        folder = install_adapter(profile, work / "default.gguf", "v1", base_sha256(base),
                                 merged=work / "merged.gguf")  # as a training leaves it
        models = Models()
        say("chat time to first token")
        r["ttft_ms_rag"], r["prompt_tokens_rag"], r["passages_rag"] = chat_ttft(
            profile, models, True, repeats)
        r["ttft_model"] = models.current.model_path.name
        r["ttft_ms_no_rag"], r["prompt_tokens_no_rag"], _ = chat_ttft(
            profile, models, False, repeats)
        say("chat time to first token, 9th message of a conversation")
        r |= later_turn_ttft(profile, models, repeats)
        say("chat time to first token, the adapter attached (a version without merged copy)")
        (folder / MERGED_FILE).unlink()
        r["ttft_ms_rag_attached"], _, _ = chat_ttft(profile, models, True, repeats)
        r["ttft_ms_no_rag_attached"], _, _ = chat_ttft(profile, models, False, repeats)
        models.close()
    return r


def run(repeats: int) -> dict:
    import subprocess

    from oppu.storage.privacy import go_offline

    go_offline()
    work = Path(tempfile.mkdtemp(prefix="oppu-bench-generate-"))
    r = {"repeats": repeats, "decode_tokens": DECODE_TOKENS, "b_std": B_STD,
         "load_average_start": os.getloadavg()[0]}
    r |= torch_part(work, repeats)
    child = subprocess.run([sys.executable, __file__, "--llama-part", str(work),
                            "--repeats", str(repeats)], stdout=subprocess.PIPE, text=True,
                           check=True)
    r |= json.loads(child.stdout.strip().splitlines()[-1])
    for name in ("adapter", "merged", "adapter_all", "merged_all"):
        r[f"{name}_overhead"] = 1 - r[f"decode_tps_{name}"] / r["decode_tps_base"]
    r["speedup_vs_transformers"] = r["decode_tps_base"] / r["decode_tps_transformers"]
    r["pp_speedup_vs_transformers"] = r["pp_tps_base"] / r["pp_tps_transformers"]
    r["load_average_end"] = os.getloadavg()[0]
    r["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()}
    r["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    shutil.rmtree(work, ignore_errors=True)
    return r


def markdown(r: dict) -> str:
    rows = [("llama.cpp, base (Q4_1)", "base"),
            ((f"llama.cpp, base + the trainer's default LoRA ({r['default_adapter']}), "
              "attached at run time (the app at other strengths than 1)"), "adapter"),
            ("llama.cpp, that LoRA merged (every block weight q8_0; the app at strength 1)",
             "merged"),
            ("llama.cpp, base + LoRA r16 on all seven projections, attached (comparison)",
             "adapter_all"),
            ("llama.cpp, LoRA r16 on all seven projections, merged (comparison)", "merged_all"),
            ("transformers generate, fp32 CPU (baseline)", "transformers")]
    lines = [
        "# Generation benchmark: bundled SmolLM2-135M-Instruct (Q4_1)",
        "",
        (f"Prompt: {r['prompt_tokens']} tokens (chat template, instruction, a long question); "
         f"{r['decode_tokens']} greedy tokens decoded by llama.cpp, best of {r['repeats']} "
         f"runs in round robin. llama.cpp: {r['n_threads']} threads, {r['n_gpu_layers']} GPU "
         f"layers; torch: {r['torch_threads']} threads. {r['machine']['cpus']} CPUs, "
         f"{r['machine']['platform']}, {r['date']}. Load average "
         f"{r['load_average_start']:.1f} at the start, {r['load_average_end']:.1f} at the end "
         "(other jobs shared these cores)."),
        "",
        "| engine | prompt tok/s | decode tok/s | decode vs base |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, key in rows:
        lines.append(f"| {label} | {r[f'pp_tps_{key}']:.0f} | {r[f'decode_tps_{key}']:.1f} | "
                     f"{r[f'decode_tps_{key}'] / r['decode_tps_base']:.2f} |")
    lines += [
        "",
        ("| chat use case, ~500-token question, default adapter active | prompt tokens | "
         "time to first token (ms) |"),
        "| --- | ---: | ---: |",
        (f"| with retrieval ({r['passages_rag']} passages of 200 notes), served by the "
         f"version's merged copy | {r['prompt_tokens_rag']} | {r['ttft_ms_rag']:.0f} |"),
        (f"| with retrieval, the adapter attached to the base instead | "
         f"{r['prompt_tokens_rag']} | {r['ttft_ms_rag_attached']:.0f} |"),
        (f"| without retrieval, merged copy | {r['prompt_tokens_no_rag']} | "
         f"{r['ttft_ms_no_rag']:.0f} |"),
        (f"| without retrieval, attached | {r['prompt_tokens_no_rag']} | "
         f"{r['ttft_ms_no_rag_attached']:.0f} |"),
        (f"| {LATER_TURN}th message of a conversation, with retrieval, right after the "
         f"previous reply | {r['prompt_tokens_turn9']} | {r['ttft_ms_turn9_warm']:.0f} |"),
        (f"| the same prompt, nothing evaluated before (baseline) | {r['prompt_tokens_turn9']} "
         f"| {r['ttft_ms_turn9_cold']:.0f} |"),
        "",
        (f"- adapter overhead on decode, the trainer's default adapter: "
         f"{r['adapter_overhead']:.1%} attached (target ≤ 10%), {r['merged_overhead']:.1%} "
         f"merged; r16 on all seven projections: {r['adapter_all_overhead']:.1%} attached, "
         f"{r['merged_all_overhead']:.1%} merged. An attached LoRA adds four small graph "
         "nodes per adapted projection (two matmuls, a scale, an add), and on two threads "
         "their dispatch and synchronization, not their arithmetic or their bytes, is the "
         "cost: the same adapter stored as F16 instead of F32, half the bytes to read, "
         "decoded no faster (122.6 against 119.5 tokens/s, 2026-11-27). It grows with the "
         "number of adapted projections: hence one in the default (down_proj, at rank 48). Merged (the copy the app serves), every weight matrix of the "
         "blocks is stored as q8_0, nearly twice the bytes of Q4_1, but q8_0 has llama.cpp's "
         "tiled matmul kernels and Q4_1 none, so the merged model reads a prompt faster than "
         "the base and decodes about as fast."),
        (f"- what the app serves: at full strength (the default) a version's merged copy, "
         f"written with the adapter by training and import: time to first token "
         f"{r['ttft_ms_rag']:.0f} ms against {r['ttft_ms_rag_attached']:.0f} ms attached "
         f"({r['ttft_ms_rag_attached'] / r['ttft_ms_rag']:.2f}x), decode "
         f"{-r['merged_overhead']:+.1%} against the base. Why q8_0 and not a smaller type: "
         "bench/results/served_model.md."),
        (f"- llama.cpp vs transformers: {r['speedup_vs_transformers']:.1f}x on decode "
         f"(target ≥ 5x), {r['pp_speedup_vs_transformers']:.1f}x on prompt processing."),
        ("- time to first token is the median of the runs after a warm-up, KV cache cleared "
         "each time; it includes retrieval, the context budget and the prompt's prefill."),
        (f"- in a conversation ({LATER_TURN - 1} earlier messages, replies of up to "
         f"{LATER_REPLY_TOKENS} tokens) the prompt starts with the same tokens as the last one "
         "(the passages ride in the newest user turn), so llama.cpp reuses what it evaluated: "
         f"{r['ttft_ms_turn9_cold'] / r['ttft_ms_turn9_warm']:.1f}x faster to the first "
         "token than reading the whole prompt."),
        f"- transformers base load (prepare_base cache): {r['torch_load_s']:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--llama-part", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.llama_part:
        import oppu.engine  # noqa: F401 - its OpenMP policy, before anything loads libgomp

        print(json.dumps(llama_part(args.llama_part, args.repeats)))
        return
    results = run(args.repeats)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generate.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "generate.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
