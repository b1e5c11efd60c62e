"""Benchmark on a CUDA GPU: our LoRA trainer against the naive Trainer + peft baseline.

The GPU companion of `bench/train.py`, in two steps because the GPU machine lent here has
no network and takes at most 64 MiB along (the 92 MB bundled GGUF travels only in pieces,
as `bench/personalization_sweep.py` does; speed does not need its values):

  prepare (where the product is installed): the same writing as bench/train.py (the first
      chapters of the corpus), laid out by the product's `build_dataset` with retrieval,
      pickled with the base model's config into a folder small enough to carry;
  run (on the GPU machine): SmolLM2-135M's architecture with random weights (speed does
      not depend on the values; the losses mean nothing), our `train_lora` at the default
      preset against the naive transformers `Trainer` + peft on the same items, both in
      bf16 autocast; the GPU's measured bf16 matmul peak; then the promotion gate's
      held-out evaluation and the adapter's save, both on CUDA.

Run: .venv/bin/python bench/train_gpu.py prepare --folder .gpu
     python bench/train_gpu.py run --prepared .gpu [--out bench/results]
Writes train_gpu.md and train_gpu.json.
"""

import argparse
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train import CORPUS, PRESET, RESULTS, model_flops, naive_trainer_run, steady_rate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    prepare = steps.add_parser("prepare", help="lay out the writing here, for the GPU machine")
    prepare.add_argument("--folder", type=Path, required=True)
    prepare.add_argument("--corpus", type=Path, default=CORPUS)
    prepare.add_argument("--documents", type=int, default=8)
    run = steps.add_parser("run", help="time both trainers on the GPU")
    run.add_argument("--prepared", type=Path, required=True)
    run.add_argument("--out", type=Path, default=RESULTS)
    run.add_argument("--steps", type=int, default=40, help="optimizer steps of our trainer")
    run.add_argument("--baseline-steps", type=int, default=20)
    run.add_argument("--baseline-batch", type=int, default=2)
    run.add_argument("--device", default="cuda", help="cuda; cpu only to try the script")
    return parser.parse_args(argv)


def prepare(args) -> None:
    os.environ["OPPU_HOME"] = tempfile.mkdtemp(prefix="oppu-bench-gpu-")
    from oppu.core.profile import Profile
    from oppu.trainer.base_models import bundled_gguf
    from oppu.trainer.config import PRESETS
    from oppu.trainer.corpus import read_book
    from oppu.trainer.dataset import build_dataset
    from oppu.trainer.prepare import prepare_base

    base = prepare_base(bundled_gguf())
    sections = read_book(args.corpus)[:args.documents]
    try:
        with Profile("bench") as profile:
            for section in sections:
                profile.writing.add_text("file", section.text, section.title)
            dataset = build_dataset(profile.writing, base.load_tokenizer(), PRESETS[PRESET])
        args.folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(base.hf_dir / "config.json", args.folder / "config.json")
    finally:
        shutil.rmtree(os.environ["OPPU_HOME"], ignore_errors=True)
    (args.folder / "dataset.pkl").write_bytes(pickle.dumps(dataset))
    (args.folder / "meta.json").write_text(json.dumps({
        "corpus": args.corpus.name, "documents": len(sections),
        "words": sum(len(s.text.split()) for s in sections), "base_sha256": base.sha256}))
    print(f"prepared {args.folder}: {len(dataset.train)} rows, {dataset.train.tokens} tokens")


def matmul_tflops(device: str, n: int = 8192) -> float:
    """The best bf16 `a @ b` of n^3 on `device`, timed with CUDA events."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    return 2 * n ** 3 / best / 1e12


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _peak_memory_mb(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else float("nan")


def run(args) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from oppu.trainer.config import PRESETS
    from oppu.trainer.evaluate import heldout_metrics
    from oppu.trainer.lora import train_lora, wrap_lora

    device = args.device
    args.work = Path(tempfile.mkdtemp(prefix="oppu-bench-gpu-"))
    dataset = pickle.loads((args.prepared / "dataset.pkl").read_bytes())
    model_config = AutoConfig.from_pretrained(args.prepared)
    meta = json.loads((args.prepared / "meta.json").read_text())

    def fresh_model():
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(model_config, dtype=torch.float32).to(device)

    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"), **meta,
               "gpu": torch.cuda.get_device_name() if device == "cuda" else "none",
               "torch": torch.__version__, "steps": args.steps}
    if device == "cuda":
        results["matmul_tflops_bf16"] = matmul_tflops(device)

    config = replace(PRESETS[PRESET], max_steps=args.steps, max_minutes=0, epochs=100.0,
                     device=device)
    torch.cuda.reset_peak_memory_stats() if device == "cuda" else None
    marks = []

    def mark(progress: dict) -> None:
        _synchronize(device)
        marks.append((time.perf_counter(), progress["tokens"]))

    trained = train_lora(fresh_model(), dataset, config, mark, lambda: False)
    rows = dataset.train
    per_token = model_flops(model_config, rows, config.rank,
                            config.target_modules) / rows.tokens
    rate = steady_rate(marks)
    ours = {"tokens_per_s": rate, "precision": trained.precision, "steps": trained.steps,
            "flops_per_token": per_token, "peak_gpu_mb": _peak_memory_mb(device),
            "batch": f"{config.batch_size} rows of {config.seq_len}"}
    if device == "cuda":
        ours["mfu"] = per_token * rate / (results["matmul_tflops_bf16"] * 1e12)
    started = time.perf_counter()
    ours["heldout"] = heldout_metrics(trained.peft_model, dataset.heldout)
    ours["heldout_s"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        trained.peft_model.save_pretrained(folder)
        ours["adapter_saved_mb"] = sum(f.stat().st_size for f in Path(folder).rglob("*")
                                       if f.is_file()) / 2 ** 20
    del trained
    torch.cuda.empty_cache() if device == "cuda" else None

    torch.cuda.reset_peak_memory_stats() if device == "cuda" else None
    model = wrap_lora(fresh_model(), PRESETS[PRESET])
    naive = naive_trainer_run(model, rows, model_config.pad_token_id or 0, args, device)
    naive["peak_gpu_mb"] = _peak_memory_mb(device)
    results |= {"ours": ours, "naive": naive, "speedup": rate / naive["tokens_per_s"]}
    return results


def report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_gpu.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    ours, naive = results["ours"], results["naive"]
    mfu = f"{100 * ours['mfu']:.1f}%" if "mfu" in ours else "n/a"
    lines = [
        "# Training benchmark on a GPU: our LoRA trainer vs a naive transformers Trainer + peft",
        "",
        f"{results['date']} · {results['gpu']} · torch {results['torch']}", "",
        ("SmolLM2-135M's architecture with **random weights** (speed does not depend on the "
         "values, and the losses mean nothing; the real weights are measured in "
         f"`personalization_sweep.md`), preset `{PRESET}`, {results['words']} words of "
         f"`{results['corpus']}` "
         f"({results['documents']} chapters) laid out with retrieval by the product here and "
         "carried over. Both sides compute in bf16 autocast."), "",
        "| | ours | naive baseline |", "| --- | ---: | ---: |",
        (f"| useful (non-padding) tokens/s | **{ours['tokens_per_s']:.0f}** | "
         f"{naive['tokens_per_s']:.0f} |"),
        f"| speedup | **{results['speedup']:.2f}x** | 1x |",
        (f"| peak GPU memory (allocated) | {ours['peak_gpu_mb']:.0f} MB | "
         f"{naive['peak_gpu_mb']:.0f} MB |"),
        f"| padding computed | 0% | {100 * naive['padding_fraction']:.1f}% |",
        (f"| measured steps | {ours['steps']} x {ours['batch']} | {naive['steps']} x "
         f"{naive['items_per_step']} items |"), "",
        (f"- bf16 matmul peak of this GPU (best 8192^3): "
         f"{results.get('matmul_tflops_bf16', float('nan')):.0f} TFLOP/s; MFU of ours: {mfu}. "
         "At the preset's 2 x 1024 tokens a step, a 135M model leaves the GPU waiting on "
         "the CPU that launches its kernels."),
        (f"- The gate's held-out evaluation ran on CUDA: {ours['heldout']['tokens']} tokens "
         f"in {ours['heldout_s']:.1f} s; the adapter saved ({ours['adapter_saved_mb']:.1f} MB)."),
        ""]
    (out / "train_gpu.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.step == "prepare":
        prepare(args)
    else:
        report(run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
