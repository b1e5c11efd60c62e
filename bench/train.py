"""Benchmark: our LoRA trainer against a naive transformers Trainer + peft, on SmolLM2-135M.

One run measures, each configuration in its own child process (so that peak RSS is its own):
- ours: the product path at the default preset ("balanced"): the profile's writing laid
  out and packed by `build_dataset` (with retrieval), then `train_lora` for a few steps;
- naive: the same items (same prompts, same loss mask, same LoRA config), unpacked, through
  transformers' `Trainer` with dynamic padding, full-vocabulary logits, no packing;
- this machine's fp32 matmul peak: the best of several 4096^3 `torch.mm`, before and after.

Reported: useful (non-padding) tokens/s of each (steady state: the first optimizer step is
left out), their ratio, peak RSS, and MFU = model FLOP/s over the measured matmul FLOP/s.
Model FLOPs count the work a LoRA step needs: forward and input-gradient matmuls of the
frozen projections (4 x params per token), the LoRA matmuls (6 r (in + out) per token and
adapted projection), causal attention within items (12 d per query-key pair: forward and about
twice that backward) and the output layer on loss-bearing tokens only (4 V d each).

Run: .venv/bin/python bench/train.py [--corpus FILE] [--documents 8] [--steps 8]
Writes bench/results/train.md and bench/results/train.json.
"""

import argparse
import json
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CORPUS = ROOT.parent / "shared" / "corpora" / "austen-persuasion.txt"
PRESET = "balanced"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS,
                        help="a book (chapters become documents) standing in for the writing")
    parser.add_argument("--documents", type=int, default=8, help="chapters to ingest")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps of our trainer")
    parser.add_argument("--baseline-steps", type=int, default=5,
                        help="optimizer steps of the naive Trainer")
    parser.add_argument("--baseline-batch", type=int, default=2,
                        help="items per forward pass of the naive Trainer")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite train.md from the existing train.json")
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["ours", "naive", "matmul"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children ---------------------------------------------------------------------------

def child_matmul(_args) -> dict:
    """The best 4096^3 `torch.mm` FLOP/s in fp32 and in bf16."""
    import torch

    from oppu.storage.cpu_bf16 import best_matmul_seconds

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    n = 4096
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        peaks[name] = 2 * n ** 3 / best_matmul_seconds(a, b) / 1e9
    return peaks


def _mfu(run: dict, peak_gflops: float) -> float:
    """Model FLOP/s of a training child's run over a matmul peak."""
    return run["flops_per_token"] * run["tokens_per_s"] / (peak_gflops * 1e9)


def steady_rate(marks: list[tuple[float, int]]) -> float:
    """Tokens/s between the end of the first step and the end of the last."""
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0)


def child_ours(args) -> dict:
    from oppu.core.profile import Profile
    from oppu.trainer.answer_replay import base_answerer
    from oppu.trainer.base_models import bundled_gguf
    from oppu.trainer.config import PRESETS
    from oppu.trainer.dataset import build_dataset
    from oppu.trainer.lora import train_lora
    from oppu.trainer.prepare import prepare_base

    config = replace(PRESETS[PRESET], max_steps=args.steps, max_minutes=0,
                     precision=args.precision)
    base = prepare_base(bundled_gguf())
    model = base.load_model()
    started = time.perf_counter()
    with Profile("bench") as profile:
        dataset = build_dataset(profile.writing, base.load_tokenizer(), config,
                                answerer=base_answerer(model))
    build_s = time.perf_counter() - started
    (args.work / "dataset.pkl").write_bytes(pickle.dumps(dataset.train))
    marks = []
    result = train_lora(model, dataset, config,
                        lambda r: marks.append((time.perf_counter(), r["tokens"])),
                        lambda: False)
    rows = dataset.train
    per_token = model_flops(model.config, rows, config.rank,
                            config.target_modules) / rows.tokens
    rate = steady_rate(marks)
    return {"tokens_per_s": rate, "loss_tokens_per_s": rate * rows.loss_tokens / rows.tokens,
            "flops_per_token": per_token, "steps": result.steps, "tokens": result.tokens,
            "loss_curve": result.loss_curve, "dataset_build_s": build_s,
            "dataset": dataset.stats, "seq_len": config.seq_len, "batch_size": config.batch_size,
            "config": config.to_dict(), "precision": result.precision, "peak_rss_mb": _rss_mb()}


def model_flops(model_config, rows, rank: int, targets: tuple[str, ...]) -> float:
    """The FLOPs one pass over `rows` needs with LoRA on `targets` (see the module
    docstring)."""
    c = model_config
    d, ffn, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    kv = c.num_key_value_heads * (d // c.num_attention_heads)
    shapes = {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
              "gate_proj": (d, ffn), "up_proj": (d, ffn), "down_proj": (ffn, d)}
    linear = sum(i * o for i, o in shapes.values()) * layers
    lora = sum(6 * rank * (i + o) for name, (i, o) in shapes.items() if name in targets) * layers
    pairs = sum((b - a) * (b - a + 1) // 2 for bounds in rows.bounds for a, b in pairwise(bounds))
    return (4 * linear + lora) * rows.tokens + 12 * d * layers * pairs \
        + 4 * c.vocab_size * d * rows.loss_tokens


def child_naive(args) -> dict:
    from oppu.trainer.base_models import bundled_gguf
    from oppu.trainer.config import PRESETS
    from oppu.trainer.lora import wrap_lora
    from oppu.trainer.prepare import prepare_base

    rows = pickle.loads((args.work / "dataset.pkl").read_bytes())
    base = prepare_base(bundled_gguf())
    model = wrap_lora(base.load_model(), PRESETS[PRESET])
    return {**naive_trainer_run(model, rows, base.load_tokenizer().pad_token_id, args),
            "peak_rss_mb": _rss_mb()}


def naive_trainer_run(model, rows, pad_id: int, args, device: str = "cpu") -> dict:
    """The baseline: the items of `rows` unpacked, through transformers' `Trainer` with
    dynamic padding (bf16 autocast on CUDA, as a GPU user would set it)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from oppu.trainer.config import PRESETS
    from oppu.trainer.dataset import IGNORE

    config = PRESETS[PRESET]
    items = [{"input_ids": rows.input_ids[r, a:b], "labels": rows.labels[r, a:b]}
             for r, bounds in enumerate(rows.bounds) for a, b in pairwise(bounds)]
    counted = []

    def collate(batch):  # dynamic padding to the longest item of the batch
        longest = max(len(x["input_ids"]) for x in batch)

        def pad(key, value):
            return torch.stack([torch.cat([x[key], torch.full((longest - len(x[key]),), value)])
                                for x in batch])
        mask = torch.stack([torch.cat([torch.ones(len(x["input_ids"]), dtype=torch.long),
                                       torch.zeros(longest - len(x["input_ids"]),
                                                   dtype=torch.long)]) for x in batch])
        counted.append((int(mask.sum()), mask.numel()))
        return {"input_ids": pad("input_ids", pad_id), "labels": pad("labels", IGNORE),
                "attention_mask": mask}

    marks = []

    class Marks(TrainerCallback):
        def on_step_end(self, *_args, **_kwargs):
            if device == "cuda":
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), sum(n for n, _ in counted)))

    accumulation = max(1, config.batch_size // args.baseline_batch)
    training = TrainingArguments(
        output_dir=str(args.work / "naive"), per_device_train_batch_size=args.baseline_batch,
        gradient_accumulation_steps=accumulation, max_steps=args.baseline_steps,
        learning_rate=config.learning_rate, warmup_steps=config.warmup_ratio,
        max_grad_norm=config.grad_clip, logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=device == "cpu", bf16=device == "cuda", dataloader_num_workers=0,
        remove_unused_columns=False, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=training, train_dataset=items, data_collator=collate,
                      callbacks=[Marks()])
    trainer.train()
    useful = sum(n for n, _ in counted[:len(marks) * accumulation])
    padded = sum(n for _, n in counted[:len(marks) * accumulation])
    return {"tokens_per_s": steady_rate(marks), "padding_fraction": 1 - useful / padded,
            "steps": len(marks), "items_per_step": accumulation * args.baseline_batch}


CHILDREN = {"ours": child_ours, "naive": child_naive, "matmul": child_matmul}


# -- orchestration ----------------------------------------------------------------------

def run_child(kind: str, args, env: dict, precision: str = "auto") -> dict:
    print(f"== {kind} ({precision})", flush=True)
    command = [sys.executable, __file__, "--child", kind, "--work", str(args.work),
               "--steps", str(args.steps), "--baseline-steps", str(args.baseline_steps),
               "--baseline-batch", str(args.baseline_batch), "--precision", precision]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print({k: v for k, v in result.items() if not isinstance(v, (dict, list))}, flush=True)
    return result


def ingest(args, env: dict) -> int:
    """The first `--documents` chapters of the corpus as the bench profile's writing."""
    script = (
        "import sys; from pathlib import Path\n"
        "from oppu.core.profile import Profile\n"
        "from oppu.trainer.corpus import read_book\n"
        "from oppu.trainer.base_models import bundled_gguf\n"
        "from oppu.trainer.prepare import prepare_base\n"
        "prepare_base(bundled_gguf())\n"
        f"sections = read_book(Path({str(args.corpus)!r}))[:{args.documents}]\n"
        "with Profile('bench') as p:\n"
        "    for s in sections: p.writing.add_text('file', s.text, s.title)\n"
        "print(sum(len(s.text.split()) for s in sections))\n")
    done = subprocess.run([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                          text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(results, indent=2) + "\n")
    ours, naive, fp32 = results["ours"], results["naive"], results["ours_fp32"]
    config = ours["config"]
    peaks = results["matmul_gflops_by_precision"]
    lines = [
        "# Training benchmark: our LoRA trainer vs a naive transformers Trainer + peft", "",
        (f"{results['date']} · {results['machine']} · {results['threads']} threads · "
         f"load average {results['load_before']} before, {results['load_after']} after"), "",
        (f"Bundled SmolLM2-135M-Instruct (Q4_1, dequantized to fp32), preset `{PRESET}` "
         f"(LoRA r{config['rank']} on {', '.join(config['target_modules'])}), "
         f"{results['words']} words of `{results['corpus']}` ({results['documents']} chapters) "
         "as the writing, laid out with retrieval as the product does. Ours runs at the "
         f"preset's precision `auto`, which chose **{ours['precision']}** matmuls on this CPU; "
         "the fp32 column is ours forced to fp32, the precision of the naive baseline."), "",
        f"| | ours ({ours['precision']}) | ours (fp32) | naive baseline (fp32) |",
        "| --- | ---: | ---: | ---: |",
        (f"| useful (non-padding) tokens/s | **{ours['tokens_per_s']:.0f}** | "
         f"{fp32['tokens_per_s']:.0f} | {naive['tokens_per_s']:.0f} |"),
        (f"| speedup | **{results['speedup']:.2f}x** | {results['fp32_speedup']:.2f}x | 1x |"),
        (f"| peak RSS | **{ours['peak_rss_mb']:.0f} MB** | {fp32['peak_rss_mb']:.0f} MB | "
         f"{naive['peak_rss_mb']:.0f} MB |"),
        (f"| MFU (against the matmul peak of its precision) | **{100 * results['mfu']:.0f}%** | "
         f"{100 * results['fp32_mfu']:.0f}% | |"),
        (f"| loss-bearing tokens/s | {ours['loss_tokens_per_s']:.0f} | "
         f"{fp32['loss_tokens_per_s']:.0f} | |"),
        f"| padding computed | 0% | 0% | {100 * naive['padding_fraction']:.1f}% |",
        (f"| final loss of the measured steps | {ours['loss_curve'][-1][1]:.4f} | "
         f"{fp32['loss_curve'][-1][1]:.4f} | |"),
        (f"| measured steps | {ours['steps']} x {ours['batch_size']} rows of {ours['seq_len']} "
         f"| {fp32['steps']} x {fp32['batch_size']} rows | {naive['steps']} x "
         f"{naive['items_per_step']} items |"), "",
        (f"- Matmul peaks of this machine (best 4096^3 `torch.mm`): **{peaks['fp32']:.0f} "
         f"GFLOP/s fp32, {peaks['bf16']:.0f} GFLOP/s bf16**."),
        (f"- Model FLOPs per token: {ours['flops_per_token'] / 1e6:.0f} M "
         "(see `bench/train.py` for what is counted); "
         f"MFU = {ours['flops_per_token'] * ours['tokens_per_s'] / 1e9:.0f} GFLOP/s / "
         f"{results['matmul_gflops']:.0f} = **{100 * results['mfu']:.0f}%**."),
        (f"- Ours includes laying out the dataset ({ours['dataset_build_s']:.0f} s, with "
         "retrieval) in the same process, as the product's training child does."),
        ("- Targets: speedup >= 2x " + _met(results["speedup"] >= 2) + ", MFU >= 40% "
         + _met(results["mfu"] >= 0.4) + ", peak RSS <= 4096 MB "
         + _met(ours["peak_rss_mb"] <= 4096) + f" (at {ours['precision']}; forced to fp32: "
         f"speedup {results['fp32_speedup']:.2f}x, MFU {100 * results['fp32_mfu']:.0f}%)."),
        "",
        ("Other work ran on the same cores during this run when the load average above is "
         "well over the thread count; both sides and the matmul peak share that noise."), ""]
    (out / "train.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        from oppu.storage.privacy import go_offline

        go_offline()
        print(json.dumps(CHILDREN[args.child](args), default=str), flush=True)
        return 0
    if args.report_only:
        report(json.loads((args.out / "train.json").read_text()), args.out)
        return 0
    if not args.corpus.is_file():
        raise SystemExit(f"corpus not found: {args.corpus} (pass --corpus FILE)")
    home = Path(tempfile.mkdtemp(prefix="oppu-bench-train-"))
    args.work = home / "work"
    args.work.mkdir()
    env = {**os.environ, "OPPU_HOME": str(home), "PYTHONPATH": str(ROOT)}
    try:
        load_before = round(os.getloadavg()[0], 1)
        words = ingest(args, env)
        matmul = [run_child("matmul", args, env)]
        ours = run_child("ours", args, env)
        ours_fp32 = ours if ours["precision"] == "fp32" else run_child("ours", args, env, "fp32")
        naive = run_child("naive", args, env)
        matmul.append(run_child("matmul", args, env))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    peaks = {name: max(run[name] for run in matmul) for name in ("fp32", "bf16")}
    peak = peaks[ours["precision"]]  # MFU against the peak of the precision it computed in
    mfu = _mfu(ours, peak)
    speedup = ours["tokens_per_s"] / naive["tokens_per_s"]
    results = {
        "tokens_per_s": ours["tokens_per_s"], "baseline_tokens_per_s": naive["tokens_per_s"],
        "speedup": speedup, "matmul_gflops": peak, "mfu": mfu,
        "peak_rss_mb": ours["peak_rss_mb"], "baseline_peak_rss_mb": naive["peak_rss_mb"],
        "targets_met": speedup >= 2 and mfu >= 0.4 and ours["peak_rss_mb"] <= 4096,
        "precision": ours["precision"], "matmul_gflops_by_precision": peaks,
        "fp32_tokens_per_s": ours_fp32["tokens_per_s"],
        "fp32_speedup": ours_fp32["tokens_per_s"] / naive["tokens_per_s"],
        "fp32_mfu": _mfu(ours_fp32, peaks["fp32"]),
        "matmul_gflops_runs": matmul, "ours": ours, "ours_fp32": ours_fp32, "naive": naive,
        "corpus": args.corpus.name, "documents": args.documents, "words": words,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "threads": len(os.sched_getaffinity(0)), "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 1), "device": "cpu"}
    report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
