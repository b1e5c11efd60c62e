"""A standalone GGUF with the adapter merged in: base + scale · B·A, q/k permuted likewise.

Every metadata key of the base is carried over (tokenizer, chat template, special
tokens), untouched tensors are copied byte for byte, and only the adapted tensors are
dequantized with gguf-py, merged and re-encoded as F16 or Q8_0. Smaller types go
through llama.cpp's own quantizer afterwards. The copy the app serves
(`write_served_gguf`) re-encodes the untouched block weights as Q8_0 too.
"""

import ctypes
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from oppu.storage.atomic import atomic_path, temp_prefix
from oppu.storage.process_output import stderr_to
from oppu.trainer.gguf_adapter import LoraTensor, lora_tensors, read_base_info
from oppu.trainer.gguf_file import (
    GGUFHeader,
    TensorEntry,
    read_header,
    tensor_data,
    tensor_nbytes,
    write_like,
)
from oppu.trainer.peft_files import UnsupportedAdapter, read_peft_dir

# report(done, total, message): plain, so that any layer can turn it into its own progress.
MergeReport = Callable[[int, int, str], None]

TENSOR_TYPES = ("q8_0", "f16")
# Types made by llama.cpp's quantizer, by name -> llama_ftype constant name, largest first.
QUANTIZE_TYPES = {
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q5_k_s": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
}


def _no_report(_done: int, _total: int, _message: str) -> None:
    pass


def write_served_gguf(peft_dir: Path, base_gguf: Path, out_path: Path,
                      report: MergeReport | None = None) -> Path:
    """The merged copy chat serves at full strength: every weight matrix of the blocks as
    Q8_0, adapted or not. llama.cpp has tiled matmul kernels for Q8_0 and none for the
    bundled base's Q4_1: with an adapter on the MLP, a copy with only the adapted matrices
    in Q8_0 read prompts at 711 tokens/s and this one at 905 (bench/generate.py, both on
    the same 2-core CPU)."""
    return write_merged_gguf(peft_dir, base_gguf, out_path, "q8_0", report=report,
                             all_block_weights=True)


def write_merged_gguf(peft_dir: Path, base_gguf: Path, out_path: Path, tensor_type: str = "q8_0",
                      quantize_to: str | None = None, report: MergeReport | None = None, *,
                      permute_qk: bool = True, all_block_weights: bool = False) -> Path:
    """Write base + adapter as one GGUF at `out_path`, atomically; return the path. With
    `all_block_weights` the blocks' unadapted weight matrices are re-encoded as
    `tensor_type` as well."""
    if tensor_type not in TENSOR_TYPES:
        raise ValueError(f"tensor type must be one of {', '.join(TENSOR_TYPES)}, not {tensor_type!r}")
    if quantize_to is not None and quantize_to not in QUANTIZE_TYPES:
        raise ValueError(f"quantize_to must be one of {', '.join(QUANTIZE_TYPES)}, "
                         f"not {quantize_to!r}")
    report = report or _no_report
    lora = read_peft_dir(peft_dir)
    touched = {t.base_name: t for t in lora_tensors(lora, read_base_info(base_gguf), permute_qk)}
    header = read_header(base_gguf)
    out_path = Path(out_path)
    with atomic_path(out_path) as temp:
        if quantize_to is None:
            _write_merged(header, touched, lora.scale, tensor_type.upper(), temp, report,
                          all_block_weights)
        else:
            # F32 in between, so that the merged weights are rounded once, by the quantizer.
            with tempfile.TemporaryDirectory(prefix=temp_prefix(), dir=out_path.parent) as folder:
                merged = Path(folder) / "merged-f32.gguf"
                _write_merged(header, touched, lora.scale, "F32", merged, report,
                              all_block_weights)
                report(0, 1, f"quantizing to {quantize_to}")
                quantize_gguf(merged, temp, quantize_to)
                report(1, 1, f"quantized to {quantize_to}")
    return out_path


def _is_block_matrix(entry: TensorEntry) -> bool:
    return entry.name.startswith("blk.") and sum(n > 1 for n in entry.ne) == 2


def _write_merged(header: GGUFHeader, touched: dict[str, LoraTensor], scale: float,
                  type_name: str, path: Path, report: MergeReport,
                  all_block_weights: bool) -> None:
    import gguf

    qtype = gguf.GGMLQuantizationType[type_name]
    recoded = set(touched) | {e.name for e in header.tensors if all_block_weights
                              and _is_block_matrix(e) and e.type != qtype}
    entries = [replace(e, type=int(qtype), nbytes=tensor_nbytes(e.ne, qtype))
               if e.name in recoded else e for e in header.tensors]
    originals = {e.name: e for e in header.tensors}
    done = 0

    def payload(entry: TensorEntry):
        nonlocal done
        original = originals[entry.name]
        data = tensor_data(header, original)
        if entry.name in touched:
            data = _encode(merge_tensor(data, original.type, touched[entry.name], scale), qtype)
        elif entry.name in recoded:
            data = _encode(_dequantize(data, original.type, entry.name), qtype)
        done += 1
        report(done, len(entries), entry.name)
        return data

    # A file whose blocks are all of one type says so, as llama.cpp's quantizer would.
    file_type = ({"general.file_type": int(gguf.LlamaFileType[f"MOSTLY_{type_name}"])}
                 if all_block_weights and type_name in ("Q8_0", "F16")
                 and "general.file_type" in header.scalar_at else None)
    with open(path, "wb") as out:
        write_like(header, out, entries, payload, file_type)


def merge_tensor(data: np.ndarray, qtype: int, lora: LoraTensor, scale: float) -> np.ndarray:
    """A base tensor's stored bytes, dequantized, plus scale · B @ A, as float32."""
    weights = _dequantize(data, qtype, lora.base_name)
    weights += np.float32(scale) * (lora.b.astype(np.float32) @ lora.a.astype(np.float32))
    return weights


def _dequantize(data: np.ndarray, qtype: int, name: str) -> np.ndarray:
    import gguf

    try:
        return gguf.dequantize(data, gguf.GGMLQuantizationType(qtype)).astype(np.float32)
    except NotImplementedError:
        raise UnsupportedAdapter(f"gguf-py cannot dequantize {name} (stored as "
                                 f"{gguf.GGMLQuantizationType(qtype).name}) to write a merged "
                                 "model") from None


def _encode(weights: np.ndarray, qtype) -> np.ndarray:
    import gguf

    if qtype == gguf.GGMLQuantizationType.F32:
        return np.ascontiguousarray(weights, np.float32)
    if qtype == gguf.GGMLQuantizationType.F16:
        return weights.astype(np.float16)
    return gguf.quantize(weights, qtype)


def quantize_gguf(source: Path, target: Path, kind: str, n_threads: int = 0) -> None:
    """llama.cpp's own quantizer, `source` to `target` as `kind` (a QUANTIZE_TYPES name)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZE_TYPES[kind])
    params.nthread = n_threads
    params.allow_requantize = True  # the base's untouched tensors are quantized already
    # The quantizer writes a line per tensor (and per fallback type) straight to stderr:
    # kept aside, and shown only when it fails.
    with tempfile.TemporaryFile() as said:
        with stderr_to(said):
            code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                                  ctypes.byref(params))
        said.seek(0)
        last_lines = said.read().decode("utf-8", "replace").strip().splitlines()[-3:]
    if code != 0:
        raise RuntimeError(f"llama.cpp could not quantize {Path(source).name} to {kind} "
                           f"(code {code}): {' / '.join(last_lines)}")
