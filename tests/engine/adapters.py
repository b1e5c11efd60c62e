"""Real LoRA adapter GGUFs for engine and chat tests, made by the app's own conversion.

A PEFT adapter with random non-zero A and B (tests/support/peft_fixtures.py) is built on
a transformers model of the GGUF's shape and converted by `write_adapter_gguf`. The
weights of that transformers model do not matter: only the adapter's shapes must fit.
"""

from pathlib import Path

from tests.support.peft_fixtures import make_peft_adapter


def transformers_model_like(base_gguf: Path):
    """A randomly initialised llama of the GGUF's dimensions (fast: no weights read)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from oppu.engine.gguf_check import read_summary

    summary = read_summary(base_gguf)
    heads = summary.number("attention.head_count")
    config = LlamaConfig(
        vocab_size=summary.tensors["token_embd.weight"][1],
        hidden_size=summary.number("embedding_length"),
        intermediate_size=summary.number("feed_forward_length"),
        num_hidden_layers=summary.number("block_count"),
        num_attention_heads=heads,
        num_key_value_heads=summary.number("attention.head_count_kv") or heads,
        tie_word_embeddings="output.weight" not in summary.tensors,
    )
    return LlamaForCausalLM(config)


_built: dict[tuple, Path] = {}


def lora_gguf(base_gguf: Path, folder: Path, seed: int = 0, b_std: float = 0.5,
              targets: tuple[str, ...] = ("q_proj", "v_proj")) -> Path:
    """A rank-8 LoRA GGUF for `base_gguf`, built in `folder` once per test session."""
    from oppu.trainer.gguf_adapter import write_adapter_gguf

    key = (base_gguf, seed, b_std, targets)
    if key not in _built:
        peft_dir = folder / f"peft-{seed}"
        make_peft_adapter(transformers_model_like(base_gguf), peft_dir, rank=8, alpha=16,
                          targets=targets, b_std=b_std, seed=seed)
        _built[key] = write_adapter_gguf(peft_dir, base_gguf, folder / f"adapter-{seed}.gguf")
    return _built[key]


def merged_gguf(base_gguf: Path, folder: Path, seed: int = 0) -> Path:
    """`base_gguf` with `lora_gguf`'s adapter of that seed merged in, as a training writes it."""
    from oppu.trainer.merge import write_served_gguf

    lora_gguf(base_gguf, folder, seed)
    merged = folder / f"merged-{seed}.gguf"
    if not merged.is_file():
        write_served_gguf(folder / f"peft-{seed}", base_gguf, merged)
    return merged


def install_adapter(profile, adapter_gguf: Path, version: str, base_sha256: str,
                    activate: bool = True, merged: Path | None = None,
                    peft: Path | None = None) -> Path:
    """Put `adapter_gguf` (and its `merged` copy, its `peft` folder) in the profile as
    adapter `version`, as a finished training does."""
    import shutil

    from oppu.core import adapters
    from oppu.storage.models import Adapter
    from oppu.trainer.versions import GGUF_FILE, MERGED_FILE, PEFT_DIR, recorded_path

    folder = profile.adapters_dir / version
    folder.mkdir()
    shutil.copy(adapter_gguf, folder / GGUF_FILE)
    if merged is not None:
        shutil.copy(merged, folder / MERGED_FILE)
    if peft is not None:
        shutil.copytree(peft, folder / PEFT_DIR)
    with profile.store.write() as session:
        session.add(Adapter(version=version, path=recorded_path(profile.folder, folder),
                            base_name="tiny-test-llama",
                            base_sha256=base_sha256))
    if activate:
        adapters.activate(profile, version)
    return folder
