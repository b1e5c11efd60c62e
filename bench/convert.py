"""Benchmark: adapter-GGUF and merged-GGUF conversion of the bundled SmolLM2-135M.

For an adapter at the default training config's rank and alpha on all seven projections
(the default adapts two of them; all seven exercise every tensor kind, q and k's row
permutation among them, as an imported adapter may) with random non-zero B, it measures
in one run:
- conversion times and file sizes: adapter GGUF, merged GGUF (q8_0, f16, q4_k_m);
- baselines in the same run: the straightforward gguf-py path (`GGUFReader` for the
  base, `GGUFWriter` for the output) for both conversions, and llama.cpp's own quantizer
  rewriting the whole base as Q8_0;
- parity: the llama.cpp logits of every output against transformers + peft (adapter) or
  transformers' own merge (merged), correlation at the last position of one prompt.

Run: .venv/bin/python bench/convert.py [--repeats 3]
Writes bench/results/convert.md and bench/results/convert.json.
"""

import argparse
import ctypes
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.support: the parity helpers the tests use
RESULTS = ROOT / "bench" / "results"
# A spread of B that moves the bundled model's logits clearly: for the default config their
# correlation with the base's drops to about 0.97.
B_STD = 0.05


def timed(action, repeats: int) -> tuple[float, object]:
    """The best of `repeats` wall-clock times (the least disturbed by other work) and a result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return min(times), result


def naive_adapter_gguf(peft_dir: Path, base: Path, out: Path) -> Path:
    """Baseline: the same conversion, with the base's header read by gguf-py's GGUFReader."""
    import gguf

    from oppu.trainer.gguf_adapter import BaseInfo, lora_tensors, write_lora_gguf
    from oppu.trainer.peft_files import read_peft_dir

    reader = gguf.GGUFReader(base)

    def value(key: str):
        return reader.fields[key].contents()

    arch = value("general.architecture")
    info = BaseInfo(base, value("general.name"), arch, value(f"{arch}.block_count"),
                    value(f"{arch}.attention.head_count"),
                    value(f"{arch}.attention.head_count_kv"),
                    {t.name: tuple(int(d) for d in reversed(t.shape.tolist()))
                     for t in reader.tensors})
    lora = read_peft_dir(peft_dir)
    write_lora_gguf(out, info, lora, lora_tensors(lora, info))
    return out


def naive_merged_gguf(peft_dir: Path, base: Path, out: Path) -> Path:
    """Baseline: GGUFReader for the base, GGUFWriter re-encoding every metadata value."""
    import gguf

    from oppu.trainer.gguf_adapter import lora_tensors, read_base_info
    from oppu.trainer.merge import merge_tensor
    from oppu.trainer.peft_files import read_peft_dir

    lora = read_peft_dir(peft_dir)
    touched = {t.base_name: t for t in lora_tensors(lora, read_base_info(base))}
    reader = gguf.GGUFReader(base)
    writer = gguf.GGUFWriter(out, reader.fields["general.architecture"].contents())
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for tensor in reader.tensors:
        if tensor.name in touched:
            merged = merge_tensor(tensor.data, tensor.tensor_type, touched[tensor.name],
                                  lora.scale)
            writer.add_tensor(tensor.name, gguf.quantize(merged, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape,
                              raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def llama_quantize_q8_0(base: Path, out: Path) -> Path:
    """Reference: llama.cpp's own quantizer writing the whole base model as Q8_0."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    if llama_cpp.llama_model_quantize(str(base).encode(), str(out).encode(),
                                      ctypes.byref(params)) != 0:
        raise RuntimeError("llama.cpp's quantizer failed")
    return out


def load_base_model(base: Path):
    """transformers' copy of the base, from prepare_base's sha256-keyed cache."""
    from oppu.trainer.prepare import prepare_base

    os.environ.setdefault("OPPU_HOME", str(Path(tempfile.gettempdir()) / "oppu-bench-home"))
    return prepare_base(base).load_model().eval()


def run(repeats: int) -> dict:
    from oppu.storage.privacy import go_offline

    go_offline()
    from oppu.trainer.config import ALL_LINEAR, TrainConfig
    from oppu.trainer.gguf_adapter import write_adapter_gguf
    from oppu.trainer.merge import write_merged_gguf
    from tests.support.parity import (
        PROMPT,
        correlation,
        llama_last_logits,
        tokenize,
        torch_last_logits,
    )
    from tests.support.peft_fixtures import make_peft_adapter, merged_model
    from tests.support.tiny_model import bundled_gguf

    base = bundled_gguf()
    config = TrainConfig()
    work = Path(tempfile.mkdtemp(prefix="oppu-bench-convert-"))
    start = time.perf_counter()
    model = load_base_model(base)
    load_s = time.perf_counter() - start
    peft_dir = work / "peft"
    peft_model = make_peft_adapter(model, peft_dir, rank=config.rank, alpha=config.alpha,
                                   targets=ALL_LINEAR, b_std=B_STD)
    out = {name: work / f"{name}.gguf" for name in
           ("adapter", "adapter_naive", "adapter_noperm", "merged", "merged_naive",
            "merged_f16", "merged_q4_k_m", "llama_q8_0")}
    r = {"model": base.name, "rank": config.rank, "alpha": config.alpha,
         "targets": list(ALL_LINEAR), "b_std": B_STD, "repeats": repeats,
         "base_model_load_s": round(load_s, 2)}
    r["adapter_gguf_s"], _ = timed(lambda: write_adapter_gguf(peft_dir, base, out["adapter"]),
                                   repeats)
    r["adapter_gguf_naive_s"], _ = timed(
        lambda: naive_adapter_gguf(peft_dir, base, out["adapter_naive"]), repeats)
    write_adapter_gguf(peft_dir, base, out["adapter_noperm"], permute_qk=False)
    r["merged_gguf_s"], _ = timed(
        lambda: write_merged_gguf(peft_dir, base, out["merged"], "q8_0"), repeats)
    r["merged_gguf_naive_s"], _ = timed(
        lambda: naive_merged_gguf(peft_dir, base, out["merged_naive"]), repeats)
    r["merged_f16_s"], _ = timed(
        lambda: write_merged_gguf(peft_dir, base, out["merged_f16"], "f16"), repeats)
    r["merged_q4_k_m_s"], _ = timed(
        lambda: write_merged_gguf(peft_dir, base, out["merged_q4_k_m"], quantize_to="q4_k_m"),
        repeats)
    r["llama_quantize_q8_0_s"], _ = timed(lambda: llama_quantize_q8_0(base, out["llama_q8_0"]),
                                          repeats)
    r["adapter_speedup_vs_naive"] = r["adapter_gguf_naive_s"] / r["adapter_gguf_s"]
    r["merged_speedup_vs_naive"] = r["merged_gguf_naive_s"] / r["merged_gguf_s"]
    r["merged_vs_llama_quantize"] = r["merged_gguf_s"] / r["llama_quantize_q8_0_s"]
    r["bytes"] = {"base": base.stat().st_size,
                  "peft_safetensors": (peft_dir / "adapter_model.safetensors").stat().st_size,
                  **{name: path.stat().st_size for name, path in out.items()}}

    ids = tokenize(base, PROMPT)
    torch_base = torch_last_logits(model, ids)
    torch_adapter = torch_last_logits(peft_model, ids)
    torch_merged = torch_last_logits(merged_model(model, peft_dir), ids)
    llama_base = llama_last_logits(base, ids)
    llama_adapter = llama_last_logits(base, ids, out["adapter"])
    r["prompt_tokens"] = len(ids)
    r["parity_corr_base"] = correlation(llama_base, torch_base)
    r["parity_corr_adapter"] = correlation(llama_adapter, torch_adapter)
    r["parity_corr_adapter_naive"] = correlation(
        llama_last_logits(base, ids, out["adapter_naive"]), torch_adapter)
    r["parity_corr_adapter_no_permutation"] = correlation(
        llama_last_logits(base, ids, out["adapter_noperm"]), torch_adapter)
    r["parity_corr_merged"] = correlation(llama_last_logits(out["merged"], ids), torch_merged)
    r["parity_corr_merged_naive"] = correlation(llama_last_logits(out["merged_naive"], ids),
                                                torch_merged)
    r["parity_corr_merged_f16"] = correlation(llama_last_logits(out["merged_f16"], ids),
                                              torch_merged)
    r["parity_corr_merged_q4_k_m"] = correlation(llama_last_logits(out["merged_q4_k_m"], ids),
                                                 torch_merged)
    r["corr_adapter_vs_base"] = correlation(torch_adapter, torch_base)
    r["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()}
    r["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    shutil.rmtree(work, ignore_errors=True)
    return r


def markdown(r: dict) -> str:
    mib = {k: v / 2**20 for k, v in r["bytes"].items()}
    rows = [
        ("adapter GGUF (ours)", r["adapter_gguf_s"], mib["adapter"], r["parity_corr_adapter"]),
        ("adapter GGUF, gguf-py GGUFReader baseline", r["adapter_gguf_naive_s"],
         mib["adapter_naive"], r["parity_corr_adapter_naive"]),
        ("adapter GGUF without q/k permutation (wrong)", None, mib["adapter_noperm"],
         r["parity_corr_adapter_no_permutation"]),
        ("merged GGUF q8_0 (ours)", r["merged_gguf_s"], mib["merged"], r["parity_corr_merged"]),
        ("merged GGUF q8_0, gguf-py reader/writer baseline", r["merged_gguf_naive_s"],
         mib["merged_naive"], r["parity_corr_merged_naive"]),
        ("merged GGUF f16 (ours)", r["merged_f16_s"], mib["merged_f16"],
         r["parity_corr_merged_f16"]),
        ("merged GGUF q4_k_m (ours + llama.cpp quantizer)", r["merged_q4_k_m_s"],
         mib["merged_q4_k_m"], r["parity_corr_merged_q4_k_m"]),
        ("llama.cpp quantizer: whole base to q8_0 (reference)", r["llama_quantize_q8_0_s"],
         mib["llama_q8_0"], None),
    ]
    lines = [
        "# Conversion benchmark: bundled SmolLM2-135M-Instruct (Q4_1)",
        "",
        (f"Adapter: rank {r['rank']}, alpha {r['alpha']}, targets {', '.join(r['targets'])}; "
        f"random A, B ~ N(0, {r['b_std']}²). Best of {r['repeats']} runs; "
        f"{r['machine']['cpus']} CPUs, {r['machine']['platform']}, {r['date']}."),
        (f"Parity: correlation of llama.cpp's last-position logits with transformers + peft "
        f"(adapter) or transformers' merge (merged), {r['prompt_tokens']} prompt tokens. "
        f"Base model alone: {r['parity_corr_base']:.5f}; the adapter moves transformers' "
        f"logits to a correlation of {r['corr_adapter_vs_base']:.3f} with the base."),
        "",
        "| output | time (s) | size (MiB) | parity corr |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds, size, corr in rows:
        lines.append(f"| {name} | {'' if seconds is None else f'{seconds:.2f}'} | {size:.1f} | "
                     f"{'' if corr is None else f'{corr:.5f}'} |")
    lines += [
        "",
        (f"- adapter GGUF: {r['adapter_speedup_vs_naive']:.1f}x faster than the gguf-py "
        "GGUFReader baseline (it reads the base's header without decoding the vocabulary)."),
        (f"- merged GGUF q8_0: {r['merged_speedup_vs_naive']:.1f}x faster than the gguf-py "
         f"reader/writer baseline; it takes {r['merged_vs_llama_quantize']:.2f}x the time "
         "llama.cpp's own quantizer needs to rewrite the whole base as q8_0."),
        (f"- sizes: base {r['bytes']['base'] / 2**20:.1f} MiB, PEFT safetensors "
        f"{r['bytes']['peft_safetensors'] / 2**20:.1f} MiB."),
        (f"- base model load for the parity check (prepare_base cache): "
        f"{r['base_model_load_s']:.1f} s."),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    results = run(parser.parse_args().repeats)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "convert.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    (RESULTS / "convert.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
