"""Bad model and adapter files are refused with one clear line, never by a crash."""

import pytest

from oppu.engine.errors import AdapterMismatch, ModelFileError
from oppu.engine.gguf_check import check_adapter, read_summary
from tests.support.gguf_rewrite import rewrite_gguf
from tests.support.tiny_model import bundled_gguf


def test_matching_adapter_passes(tiny_gguf, tiny_adapter):
    info = check_adapter(read_summary(tiny_adapter), read_summary(tiny_gguf))
    assert info.rank == 8 and info.alpha == 16.0
    assert info.targets == ("blk.0.attn_q.weight", "blk.0.attn_v.weight",
                            "blk.1.attn_q.weight", "blk.1.attn_v.weight")


def test_adapter_for_another_base_is_refused_before_llama_cpp_sees_it(open_engine, tiny_adapter):
    """The tiny model's adapter on the bundled SmolLM2: llama.cpp is never asked."""
    engine = open_engine(path=bundled_gguf(), n_ctx=256)
    with pytest.raises(AdapterMismatch, match="embedding_length 64, the base has 576|shapes"):
        engine.set_adapter(tiny_adapter, 1.0)
    assert engine.adapter is None and engine._loaded_adapters == {}


@pytest.mark.parametrize("change, message", [
    ({"architecture": "qwen2"}, "architecture qwen2, the base is llama"),
    ({"drop": ["blk.1.attn_v.weight.lora_b"]}, "lacks its lora_a or lora_b half"),
    ({"transpose": ["blk.0.attn_q.weight.lora_a"]}, "has lora shapes"),
    ({"general_type": "model"}, "not a LoRA adapter"),
])
def test_adapter_defects_are_named(tmp_path, tiny_gguf, tiny_adapter, change, message):
    broken = rewrite_gguf(tiny_adapter, tmp_path / "broken.gguf", **change)
    with pytest.raises(AdapterMismatch, match=message):
        check_adapter(read_summary(broken), read_summary(tiny_gguf))


def test_a_model_is_not_an_adapter_and_an_adapter_is_not_a_model(
        open_engine, tiny_gguf, tiny_adapter):
    engine = open_engine()
    with pytest.raises(AdapterMismatch, match="not a LoRA adapter"):
        engine.set_adapter(tiny_gguf)
    with pytest.raises(ModelFileError, match="cannot load it"):
        open_engine(path=tiny_adapter)


def damaged_copies(tiny_gguf, folder):
    data = tiny_gguf.read_bytes()
    cases = {"empty": b"", "not-gguf": b"PK\x03\x04" + bytes(500),
             "future-version": b"GGUF" + (99).to_bytes(4, "little") + data[8:1000],
             "cut-in-half": data[: len(data) // 2], "cut-in-header": data[:4000],
             "garbled-metadata": data[:24] + b"\xff" * 3000 + data[3024:]}
    for name, content in cases.items():
        (folder / f"{name}.gguf").write_bytes(content)
    return {name: folder / f"{name}.gguf" for name in cases}


def test_damaged_models_give_one_line_errors(tmp_path, tiny_gguf, open_engine):
    paths = damaged_copies(tiny_gguf, tmp_path)
    paths["missing"] = tmp_path / "missing.gguf"
    paths["folder"] = tmp_path
    for name, path in paths.items():
        with pytest.raises(ModelFileError) as caught:
            open_engine(path=path)
        assert "\n" not in str(caught.value) and caught.value.path == path, name
    engine = open_engine()  # the process is fine and the good model still loads
    assert engine.prompt_tokens([{"role": "user", "content": "hi"}])


def test_damaged_adapters_are_refused(tmp_path, tiny_adapter, open_engine):
    engine = open_engine()
    data = tiny_adapter.read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: len(data) - 1000])
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + b"\xfe" * 100)
    for path, message in [(truncated, "truncated"), (garbage, "damaged"),
                          (tmp_path / "none.gguf", "not found")]:
        with pytest.raises(ModelFileError, match=message):
            engine.set_adapter(path)
        assert engine.adapter is None


def test_adapters_with_damaged_headers_never_crash_the_process(tmp_path, tiny_adapter,
                                                               open_engine):
    """Seeded random damage to the metadata and tensor index of a real adapter: each copy
    is either usable or refused with ModelFileError, and the engine keeps working."""
    import random

    engine = open_engine()
    data = tiny_adapter.read_bytes()
    rng = random.Random(7)
    refused = 0
    for i in range(60):
        damaged = bytearray(data)
        start = rng.randrange(8, 1500)
        for j in range(start, start + rng.randrange(1, 16)):
            damaged[j] = rng.randrange(256)
        path = tmp_path / f"damaged-{i}.gguf"
        path.write_bytes(bytes(damaged))
        try:
            engine.set_adapter(path)
        except ModelFileError as error:
            refused += 1
            assert "\n" not in str(error)
        engine.set_adapter(None)
    assert refused > 10
    assert engine.prompt_tokens([{"role": "user", "content": "still alive"}])
