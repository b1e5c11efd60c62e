"""Adapter files a review found mishandled: odd metadata, a damaged stored file, an
adapter moving to a new base, imports racing, and merged exports that were not what they
said."""

import zipfile

import pytest

from oppu.core.adapter_files import export, import_adapter
from oppu.core.adapters import AdapterError, list_adapters
from oppu.core.cli import main
from oppu.trainer.adapter_bundle import BundleError
from oppu.trainer.prepare import sha256_file
from tests.support.adapter_profiles import snapshot
from tests.support.gguf_rewrite import rewrite_gguf
from tests.support.parity import PARITY_BOUND, PROMPT, correlation, llama_last_logits, tokenize


def _name_not_utf8(bare, path):
    data = bytearray(bare.read_bytes())
    at = data.find(b"tiny-test-llama")
    data[at] = 0xFF
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("damage, reason", [
    (lambda bare, path: rewrite_gguf(bare, path, values={"adapter.lora.alpha": [1.0, 2.0]}),
     r"alpha is \[1.0, 2.0\], not a"),
    (lambda bare, path: rewrite_gguf(bare, path, values={"adapter.lora.alpha": "abc"}),
     "alpha is 'abc', not a number"),
    (lambda bare, path: rewrite_gguf(bare, path, values={"adapter.lora.alpha": float("inf")}),
     "alpha is inf; it must be a positive finite number"),
    (_name_not_utf8, "metadata general.name is damaged"),
], ids=["alpha-array", "alpha-text", "alpha-inf", "name-not-utf8"])
def test_an_adapter_gguf_with_odd_metadata_is_refused_naming_file_and_key(alice, tmp_path,
                                                                           damage, reason):
    bare = export(alice, format="gguf", out=tmp_path / "mine-adapter.gguf")
    bad = damage(bare, tmp_path / "odd-adapter.gguf")
    before = snapshot(alice)
    with pytest.raises(BundleError, match=f"odd-adapter.gguf: .*{reason}"):
        import_adapter(alice, bad, force=True)
    assert snapshot(alice) == before


def test_an_adapter_kept_for_an_old_base_imports_again_for_the_new_one(alice, exported,
                                                                        other_base):
    """Moving to another base of the same shapes: the version kept for the old base does
    not stop the adapter from coming in (forced) for the new one, once."""
    alice.set("base_model", str(other_base))
    moved = import_adapter(alice, exported, force=True)
    assert (moved.version, moved.base_sha256) == ("v2", sha256_file(other_base))
    with pytest.raises(BundleError, match="already stored as version v2"):
        import_adapter(alice, exported, force=True)


def test_import_with_activate_of_a_stored_adapter_activates_it(alice, exported, fresh, capsys):
    import_adapter(fresh, exported)
    assert main(["--profile", "fresh", "import-adapter", str(exported), "--activate"]) == 0
    assert "mine.zip is already stored as v1; it is now active" in capsys.readouterr().out
    assert [v.is_active for v in list_adapters(fresh)] == [True]
    assert main(["--profile", "fresh", "import-adapter", str(exported)]) == 1
    assert "already stored as version v1; nothing imported" in capsys.readouterr().err


def test_a_damaged_or_missing_adapter_gguf_is_written_again_before_export(alice, tmp_path, other_base):
    version = list_adapters(alice)[0]
    whole = version.gguf_path.read_bytes()
    version.gguf_path.write_bytes(whole[:len(whole) // 2])
    bare = export(alice, format="gguf", out=tmp_path / "a.gguf")
    assert bare.read_bytes() == whole == version.gguf_path.read_bytes()
    with zipfile.ZipFile(export(alice, out=tmp_path / "a.zip")) as bundle:
        assert bundle.read("adapter.gguf") == whole

    version.gguf_path.unlink()
    assert export(alice, format="gguf", out=tmp_path / "c.gguf").read_bytes() == whole

    version.gguf_path.unlink()
    weights = version.peft_dir / "adapter_model.safetensors"
    kept = weights.read_bytes()
    weights.write_bytes(kept[:100])
    with pytest.raises(AdapterError, match=r"v1 is damaged: adapter.gguf \(.*\) and its "
                                           r"trained weights \(adapter_model.safetensors"):
        export(alice, format="zip", out=tmp_path / "d.zip")
    weights.write_bytes(kept)

    version.gguf_path.write_bytes(whole[:len(whole) // 2])
    alice.set("base_model", str(other_base))  # the base it was trained on is gone
    with pytest.raises(AdapterError, match="v1's adapter.gguf is damaged .*truncated.*only "
                                           "with the base it was trained on, tiny-llama.gguf"):
        export(alice, format="gguf", out=tmp_path / "b.gguf")
    assert not (tmp_path / "b.gguf").exists()


def test_a_merged_f16_export_holds_every_block_weight_in_f16(alice, tmp_path, tiny_gguf):
    from oppu.trainer.gguf_file import read_header

    path = export(alice, format="merged", quant="f16", out=tmp_path / "m.gguf")
    header = read_header(path)
    matrices = [t for t in header.tensors if t.name.startswith("blk.") and len(t.ne) == 2]
    assert matrices and {t.type for t in matrices} == {1}  # GGML F16
    assert header.get("general.file_type") == 1  # MOSTLY_F16, as llama.cpp labels it
    assert read_header(list_adapters(alice)[0].merged_path).get("general.file_type") == 7
    ids = tokenize(tiny_gguf, PROMPT)
    with_adapter = llama_last_logits(tiny_gguf, ids, list_adapters(alice)[0].gguf_path)
    assert correlation(llama_last_logits(path, ids), with_adapter) >= PARITY_BOUND


def test_the_same_adapter_imported_twice_at_once_is_stored_once(fresh, exported, monkeypatch):
    """Another import of the same file commits while this one writes its files: the check
    under the store's write lock sees it, and this one stores nothing."""
    from oppu.trainer import versions

    real = versions.write_model_files
    racing = []

    def meanwhile_another_import(*args, **kwargs):
        real(*args, **kwargs)
        if not racing:
            racing.append("started")
            racing.append(import_adapter(fresh, exported))

    monkeypatch.setattr(versions, "write_model_files", meanwhile_another_import)
    with pytest.raises(BundleError, match="already stored as version v1"):
        import_adapter(fresh, exported)
    assert [v.version for v in list_adapters(fresh)] == [racing[1].version] == ["v1"]
    assert sorted(p.name for p in fresh.adapters_dir.iterdir()) == ["v1"]
