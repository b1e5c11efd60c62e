"""Tuning sweep for the personalization benchmark on a lent GPU, with the real base weights.

`bench/personalization.py` measures one configuration in about 21 minutes of this 2-core
CPU, so each tuning try there costs a full run. Here the same measurement runs for many
configurations at once: the writing, the answer replay and the held-out layouts are laid
out by the product on the CPU machine (`prepare`), and the GPU machine trains
`oppu.trainer.lora.train_lora` for every configuration and author in parallel worker
processes and measures the held-out perplexity of the benchmark's configurations 1-4 and
the cross matrix (`run`). The base model is the bundled GGUF, dequantized there by
transformers: it travels in two pieces, as one call carries at most 64 MiB.

Prepare:  .venv/bin/python bench/personalization_sweep.py prepare \
              --corpora /work/shared/corpora --folder .sweep
          (the folder holds sweep.pkl, base.json and the GGUF as base-piece-0, -1, ...)
Run:      cat .sweep/base-piece-* > /tmp/base.gguf   # on the GPU machine, pieces gathered
          python bench/personalization_sweep.py run --prepared .sweep --gguf /tmp/base.gguf \
              --out sweep.jsonl
Report:   .venv/bin/python bench/personalization_sweep.py report --measured sweep.jsonl
Writes bench/results/personalization_sweep.{md,json}.
"""

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"
PIECE_BYTES = 56 * 2 ** 20
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# name -> (dataset variant, overrides of the default preset). The product runs on a 2-core
# CPU at about 570 tokens/s with the default (down_proj, rank 48), so a try that trains
# more than about three passes of the larger books would not fit its 10-minute budget; the
# tries marked "ceiling" deliberately do not, to show what more compute would buy.
SWEEP = {
    "default": ("replay", {}),
    "no replay": ("no-replay", {}),
    "all 7 r16 (old default)": ("replay", {"target_modules": ALL7, "rank": 16, "alpha": 32}),
    "lr 2e-3": ("replay", {"learning_rate": 2e-3}),
    "lr 4e-3": ("replay", {"learning_rate": 4e-3}),
    "2 passes lr 1.5e-3": ("replay", {"epochs": 2, "learning_rate": 1.5e-3}),
    "2 passes lr 1e-3 wd 0.1": ("replay", {"epochs": 2, "learning_rate": 1e-3,
                                           "weight_decay": 0.1}),
    "3 passes lr 1e-3": ("replay", {"epochs": 3, "learning_rate": 1e-3}),
    "batch 4 lr 4e-3": ("replay", {"batch_size": 4, "learning_rate": 4e-3}),
    "batch 1 lr 2e-3": ("replay", {"batch_size": 1, "learning_rate": 2e-3}),
    "warmup 0.2": ("replay", {"warmup_ratio": 0.2}),
    "no clipping": ("replay", {"grad_clip": 0.0}),
    "alpha 48 (scale 1)": ("replay", {"alpha": 48}),
    "alpha 192 (scale 4) lr 1.5e-3": ("replay", {"alpha": 192, "learning_rate": 1.5e-3}),
    "all 7 r64 lr 2e-3": ("replay", {"target_modules": ALL7, "rank": 64, "alpha": 128,
                                     "learning_rate": 2e-3}),
    "ceiling: all 7 r64, 3 passes lr 1e-3": ("replay", {
        "target_modules": ALL7, "rank": 64, "alpha": 128, "epochs": 3, "learning_rate": 1e-3}),
    "ceiling: all 7 r128, 5 passes lr 5e-4": ("replay", {
        "target_modules": ALL7, "rank": 128, "alpha": 256, "epochs": 5,
        "learning_rate": 5e-4}),
    "ceiling: no replay, all 7 r64, 3 passes lr 1e-3": ("no-replay", {
        "target_modules": ALL7, "rank": 64, "alpha": 128, "epochs": 3, "learning_rate": 1e-3}),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    prepare = steps.add_parser("prepare", help="lay out the writing here")
    prepare.add_argument("--corpora", type=Path, required=True)
    prepare.add_argument("--folder", type=Path, required=True)
    run = steps.add_parser("run", help="train and measure every try on the GPU")
    run.add_argument("--prepared", type=Path, required=True)
    run.add_argument("--gguf", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True,
                     help="JSON lines, one per try and author (replaced)")
    run.add_argument("--workers", type=int, default=8)
    run.add_argument("--only", nargs="*", help="names of tries to run (default: all)")
    run.add_argument("--device", default="cuda", help="cuda; cpu only to try the script")
    run.add_argument("--max-steps", type=int, default=0, help="cap per try (to try the script)")
    report = steps.add_parser("report", help="write the results tables")
    report.add_argument("--measured", type=Path, required=True)
    report.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def prepare(args) -> None:
    """Datasets (with and without answer replay) and held-out layouts, as the benchmark
    lays them out, and the base GGUF in pieces."""
    os.environ["OPPU_HOME"] = tempfile.mkdtemp(prefix="oppu-sweep-")
    from oppu.storage.privacy import go_offline

    go_offline()
    from personalization import load_books
    from personalization import parse_args as bench_args

    from oppu.core.profile import Profile
    from oppu.trainer.answer_replay import base_answerer
    from oppu.trainer.base_models import bundled_gguf
    from oppu.trainer.config import PRESETS
    from oppu.trainer.dataset import build_dataset
    from oppu.trainer.personal_eval import heldout_layout
    from oppu.trainer.prepare import prepare_base

    books = load_books(bench_args(["--corpora", str(args.corpora)]))
    base = prepare_base(bundled_gguf())
    tokenizer, model = base.load_tokenizer(), base.load_model()
    config = PRESETS["balanced"]
    prepared = {}
    for author, (train, held) in books.items():
        print(f"laying out {author}", flush=True)
        with Profile(author) as profile:
            for section in train:
                profile.writing.add_text("file", section.text, section.title)
            datasets = {
                "replay": build_dataset(profile.writing, tokenizer, config,
                                        answerer=base_answerer(model)),
                "no-replay": build_dataset(profile.writing, tokenizer,
                                           replace(config, answer_items=0))}
            held_ids = [profile.writing.add_text("file", s.text, s.title)[0] for s in held]
            layout = heldout_layout(profile.writing, tokenizer, config, held_ids,
                                    retrieve_from_heldout=False)
        prepared[author] = {"datasets": datasets, "plain": layout.plain,
                            "retrieval": layout.retrieval,
                            "train_words": datasets["replay"].train_words}
    args.folder.mkdir(parents=True, exist_ok=True)
    (args.folder / "sweep.pkl").write_bytes(pickle.dumps(prepared))
    data = base.gguf_path.read_bytes()
    for index, start in enumerate(range(0, len(data), PIECE_BYTES)):
        piece = args.folder / f"base-piece-{index}"
        piece.write_bytes(data[start:start + PIECE_BYTES])
    (args.folder / "base.json").write_text(json.dumps(
        {"name": base.gguf_path.name, "sha256": base.sha256, "bytes": len(data)}))
    print(f"prepared {args.folder}")


def _worker_init(base, prepared: str, device: str, max_steps: int) -> None:
    import torch

    torch.set_num_threads(2)
    global _BASE, _DATA, _DEVICE, _MAX_STEPS
    _BASE, _DEVICE, _MAX_STEPS = base, device, max_steps
    _DATA = pickle.loads((Path(prepared) / "sweep.pkl").read_bytes())


def _base_model():
    return _BASE.load_model(device=_DEVICE)


def _measure_base(author: str) -> dict:
    from oppu.trainer.evaluate import heldout_metrics

    model = _base_model()
    data = _DATA[author]
    return {"author": author, "base": heldout_metrics(model, data["plain"])["perplexity"],
            "base+retrieval": heldout_metrics(model, data["retrieval"])["perplexity"]}


def _train_try(name: str, author: str) -> dict:
    """Train one author's adapter with try `name` and measure it on every author's text."""
    from oppu.trainer.config import PRESETS
    from oppu.trainer.evaluate import heldout_metrics
    from oppu.trainer.lora import train_lora

    variant, overrides = SWEEP[name]
    config = replace(PRESETS["balanced"], **overrides, max_minutes=0, curve_points=0,
                     device=_DEVICE, max_steps=_MAX_STEPS)
    started = time.perf_counter()
    trained = train_lora(_base_model(), _DATA[author]["datasets"][variant], config,
                         lambda progress: None, lambda: False)
    seconds = time.perf_counter() - started
    model = trained.peft_model
    model.eval()
    cross = {text: heldout_metrics(model, data["plain"])["perplexity"]
             for text, data in _DATA.items()}
    return {"try": name, "author": author, "adapter+retrieval": heldout_metrics(
        model, _DATA[author]["retrieval"])["perplexity"], "cross": cross,
        "steps": trained.steps, "tokens": _DATA[author]["datasets"][variant].train.tokens,
        "epochs": config.epochs, "gpu_s": round(seconds, 1)}


def run(args) -> None:
    import multiprocessing

    os.environ.setdefault("OPPU_HOME", tempfile.mkdtemp(prefix="oppu-sweep-"))
    from oppu.trainer.prepare import prepare_base

    base = prepare_base(args.gguf)  # the product's dequantized copy of the GGUF
    expected = json.loads((args.prepared / "base.json").read_text())["sha256"]
    if base.sha256 != expected:
        raise SystemExit(f"{args.gguf} is not the base the writing was laid out for "
                         f"(sha256 {base.sha256}, expected {expected}): gather every piece")
    authors = list(pickle.loads((args.prepared / "sweep.pkl").read_bytes()))
    # the longest tries first, so that they do not start last and hold up the end
    names = sorted(args.only or SWEEP, key=lambda name: -SWEEP[name][1].get("epochs", 1))
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with context.Pool(args.workers, _worker_init,
                      (base, str(args.prepared), args.device, args.max_steps)) as pool, \
            open(args.out, "w") as out:
        jobs = [pool.apply_async(_measure_base, (a,)) for a in authors]
        jobs += [pool.apply_async(_train_try, (n, a)) for n in names for a in authors]
        for job in jobs:
            result = job.get()
            out.write(json.dumps(result) + "\n")
            out.flush()
            print(f"{time.perf_counter() - started:6.0f}s {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.step == "report":
        from personalization_sweep_report import write_report

        write_report(arguments.measured, arguments.out, SWEEP)
    else:
        {"prepare": prepare, "run": run}[arguments.step](arguments)
