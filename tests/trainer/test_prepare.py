"""Base preparation: the dequantized cache keyed by sha256, its atomicity, and bad GGUFs."""

import hashlib
import json
import shutil

import pytest
import torch

from oppu.trainer.disk_needs import SLACK, prepared_base_bytes
from oppu.trainer.prepare import (
    META_FILE,
    REBUILDING,
    BaseModelError,
    bases_cache,
    prepare_base,
    sha256_file,
)


class Interrupted(Exception):
    pass


def test_sha256_file_streams_the_whole_file(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 10_000
    path.write_bytes(data)
    assert sha256_file(path, block=4096) == hashlib.sha256(data).hexdigest()


def test_prepare_caches_the_gguf_weights_and_hits_the_cache_after(tiny_gguf, oppu_home):
    from transformers import AutoModelForCausalLM

    sha = sha256_file(tiny_gguf)
    cache = bases_cache()
    # What a killed earlier run leaves: a temp folder of a dead process, a final folder
    # without its meta file. Neither may count as a cache.
    stale = cache / f".tmp-{sha[:16]}-999999999"  # above any pid_max: no such process
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    (cache / sha).mkdir()
    (cache / sha / "config.json").write_text("{}")

    messages = []
    base = prepare_base(tiny_gguf, report=lambda message, fraction: messages.append(message))
    assert "dequantizing the weights" in messages and messages[-1] == "base model ready"
    assert base.sha256 == sha and base.hf_dir == cache / sha
    assert (base.architecture, base.n_head, base.n_head_kv, base.n_layer) == ("llama", 4, 2, 2)
    assert {"model.safetensors", "config.json", "tokenizer.json", META_FILE} <= {
        p.name for p in base.hf_dir.iterdir()}
    assert not list(cache.glob(".tmp-*"))

    again = []
    hit = prepare_base(tiny_gguf, report=lambda message, fraction: again.append(message))
    assert hit == base and "dequantizing the weights" not in again

    cached = hit.load_model()
    reference = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent),
                                                     gguf_file=tiny_gguf.name)
    expected = reference.state_dict()
    for name, tensor in cached.state_dict().items():
        assert cached.state_dict()[name].dtype == torch.float32
        assert torch.equal(tensor, expected[name]), name
    assert "quantization_config" not in cached.config.to_dict()
    cached_bytes = sum(p.stat().st_size for p in hit.hf_dir.iterdir())
    assert 0.9 * (prepared_base_bytes(tiny_gguf) - SLACK) <= cached_bytes
    assert cached_bytes <= prepared_base_bytes(tiny_gguf)
    assert hit.load_tokenizer().chat_template


def test_an_interrupted_preparation_leaves_no_cache(tiny_gguf, oppu_home):
    def stop_after_weights(message, _fraction):
        if message == "saving the tokenizer":
            raise Interrupted

    with pytest.raises(Interrupted):
        prepare_base(tiny_gguf, report=stop_after_weights)
    cache = bases_cache()
    assert list(cache.iterdir()) == []


def test_a_disk_too_full_for_the_prepared_copy_refuses_before_writing(tiny_gguf, oppu_home,
                                                                       monkeypatch):
    from oppu.storage import disk_space

    monkeypatch.setattr(disk_space.shutil, "disk_usage", lambda _folder: shutil._ntuple_diskusage(
        total=1 << 30, used=(1 << 30) - (1 << 20), free=1 << 20))
    with pytest.raises(disk_space.NotEnoughDiskSpace, match=(
            "^not enough free disk space to prepare the base model for training: it needs "
            "about .* MB and 1 MB is free in ")):
        prepare_base(tiny_gguf)
    assert list(bases_cache().iterdir()) == []


def _truncated(tiny_gguf, path):
    path.write_bytes(tiny_gguf.read_bytes()[:2000])
    return path


def _unsupported(tiny_gguf, path):
    import gguf

    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("make, expected", [
    (lambda gguf, path: path, "not found"),
    (lambda gguf, path: path.write_bytes(b"PK\x03\x04 a zip file, not a model") and path,
     "not a GGUF model file"),
    (_truncated, "base.gguf is truncated"),
    (_unsupported, "architecture 'bert' is not supported"),
])
def test_a_bad_base_file_gives_one_clear_error(tiny_gguf, tmp_path, oppu_home, make, expected):
    path = make(tiny_gguf, tmp_path / "base.gguf")
    with pytest.raises(BaseModelError, match=expected) as raised:
        prepare_base(path)
    assert "\n" not in str(raised.value)
    assert not (oppu_home / "cache" / "bases").exists() or not list(bases_cache().iterdir())


def _cut_weights(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])


def _rewrite_meta(**changes):
    def damage(folder):
        meta = json.loads((folder / META_FILE).read_text())
        (folder / META_FILE).write_text(json.dumps(meta | changes))
    return damage


@pytest.mark.parametrize("damage", [
    lambda folder: (folder / META_FILE).write_text("{half a reco"),
    lambda folder: (folder / META_FILE).write_text("{}"),
    _cut_weights,
    lambda folder: (folder / "tokenizer.json").unlink(),
    _rewrite_meta(sha256="0" * 64),  # a copy of another base's cache
    _rewrite_meta(format=0),  # written by an older version of the app
], ids=["meta-not-json", "meta-empty", "weights-cut", "tokenizer-gone", "other-sha", "old-format"])
def test_a_damaged_or_stale_cache_is_rebuilt_not_used(tiny_gguf, tiny_base, damage, monkeypatch,
                                                      tmp_path):
    home = tmp_path / "home"
    shutil.copytree(tiny_base.hf_dir.parent.parent.parent, home)  # the session's prepared root
    monkeypatch.setenv("OPPU_HOME", str(home))
    folder = bases_cache() / tiny_base.sha256
    damage(folder)

    messages = []
    base = prepare_base(tiny_gguf, report=lambda message, fraction: messages.append(message))
    assert REBUILDING in messages
    assert "dequantizing the weights" in messages
    assert base.hf_dir == folder and (base.n_head, base.n_layer) == (4, 2)
    assert base.load_tokenizer().chat_template
    assert base.load_model().config.num_hidden_layers == 2
