"""Export and import of the user's adapter file: round trips, and bad files refused untouched."""

import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from oppu.core.adapter_files import AlreadyStored, ForeignBase, export, import_adapter
from oppu.core.adapters import AdapterError, list_adapters
from oppu.core.cli import main
from oppu.trainer.adapter_bundle import BundleError
from oppu.trainer.peft_files import AdapterFileError
from oppu.trainer.prepare import sha256_file
from oppu.trainer.versions import read_meta
from tests.support.adapter_profiles import open_profile, snapshot
from tests.support.adapter_zips import lora_b_doubled, rezip, weights_changed
from tests.support.parity import (
    PARITY_BOUND,
    PROMPT,
    correlation,
    llama_last_logits,
    tokenize,
    torch_last_logits,
)
from tests.support.peft_fixtures import load_gguf_model, load_peft


def test_zip_round_trip_into_a_fresh_profile_gives_identical_logits(alice, exported, tiny_gguf,
                                                                   tiny_model):
    original = list_adapters(alice)[0]
    with open_profile("bob", tiny_gguf) as bob:
        imported = import_adapter(bob, exported)
        assert (imported.version, imported.origin, imported.is_active) == ("v1", "imported", False)
        assert imported.base_sha256 == original.base_sha256

        ids = tokenize(tiny_gguf, PROMPT)
        served = llama_last_logits(tiny_gguf, ids, imported.gguf_path)
        assert np.array_equal(served, llama_last_logits(tiny_gguf, ids, original.gguf_path))
        theirs = torch_last_logits(load_peft(tiny_model, imported.peft_dir), ids)
        assert np.array_equal(theirs, torch_last_logits(load_peft(tiny_model, original.peft_dir),
                                                        ids))
        assert correlation(served, theirs) >= PARITY_BOUND


def test_zip_holds_a_plain_peft_folder_gguf_meta_and_readme(alice, exported, tmp_path,
                                                           tiny_gguf, tiny_model):
    from peft import PeftModel

    with zipfile.ZipFile(exported) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unzipped")
    assert {"peft/adapter_config.json", "peft/adapter_model.safetensors", "adapter.gguf",
            "meta.json", "README.txt"} <= names

    unzipped = tmp_path / "unzipped"
    model = PeftModel.from_pretrained(load_gguf_model.__wrapped__(tiny_gguf), unzipped / "peft")
    ids = tokenize(tiny_gguf, PROMPT)
    original = list_adapters(alice)[0]
    assert np.array_equal(torch_last_logits(model.eval(), ids),
                          torch_last_logits(load_peft(tiny_model, original.peft_dir), ids))

    meta = json.loads((unzipped / "meta.json").read_text())
    assert meta["base"] == {"name": tiny_gguf.name, "sha256": sha256_file(tiny_gguf),
                            "architecture": "llama"}
    assert (meta["rank"], meta["alpha"]) == (8, 16)
    assert meta["training"]["train_words"] == 1234
    assert meta["training"]["metrics"]["new"]["loss"] == 2.5
    assert meta["app_version"] and meta["created"] and meta["version"] == "v1"
    readme = (unzipped / "README.txt").read_text()
    for usage in ("--lora adapter.gguf", "ADAPTER", "PeftModel.from_pretrained", tiny_gguf.name):
        assert usage in readme


def test_a_zip_carries_no_local_path(alice, tmp_path, tiny_gguf):
    """peft records the folder it loaded the base from: the user's name, in a shared file."""
    peft = list_adapters(alice)[0].peft_dir
    config = json.loads((peft / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "/home/ann/.local/share/oppu/cache/bases/0123"
    (peft / "adapter_config.json").write_text(json.dumps(config))
    (peft / "README.md").write_text("base_model: /home/ann/.local/share/oppu/cache/bases/0123")
    exported = export(alice, out=tmp_path / "shared.zip")
    with zipfile.ZipFile(exported) as archive:
        assert "peft/README.md" not in archive.namelist()
        assert not any(b"/home/ann" in archive.read(name) for name in archive.namelist())
        shared = json.loads(archive.read("peft/adapter_config.json"))
    assert shared["base_model_name_or_path"] == tiny_gguf.name
    assert {k: v for k, v in shared.items() if k != "base_model_name_or_path"} == {
        k: v for k, v in config.items() if k != "base_model_name_or_path"}


def test_bare_gguf_export_is_the_versions_adapter_gguf(alice, tmp_path):
    path = export(alice, format="gguf", out=tmp_path)
    assert path.parent == tmp_path and path.name.endswith("-adapter.gguf")
    assert path.read_bytes() == list_adapters(alice)[0].gguf_path.read_bytes()


def test_merged_export_runs_in_llama_cpp(alice, tmp_path, monkeypatch, tiny_gguf):
    monkeypatch.chdir(tmp_path)
    seen = []
    path = export(alice, format="merged", report=seen.append)
    assert path == tmp_path / "oppu-alice-v1-merged-q8_0.gguf"
    ids = tokenize(tiny_gguf, PROMPT)
    version = list_adapters(alice)[0]
    with_adapter = llama_last_logits(tiny_gguf, ids, version.gguf_path)
    assert correlation(llama_last_logits(path, ids), with_adapter) >= PARITY_BOUND
    # q8_0 is the merged copy chat serves, copied; without that copy it is merged afresh
    assert path.read_bytes() == version.merged_path.read_bytes()
    assert not any(p.phase == "merge" for p in seen) and seen[-1].done == seen[-1].total
    version.merged_path.unlink()
    seen.clear()
    again = export(alice, format="merged", out=tmp_path / "again.gguf", report=seen.append)
    assert again.read_bytes() == path.read_bytes() and any(p.phase == "merge" for p in seen)


def test_import_activates_only_when_asked(alice, exported, tmp_path):
    other = rezip(exported, tmp_path / "other.zip", weights_changed(lora_b_doubled))
    second = import_adapter(alice, other, activate=True)
    assert (second.version, second.is_active) == ("v2", True)
    assert second.merged_path is not None  # chat serves it merged, as a trained version
    assert [a.is_active for a in list_adapters(alice)] == [True, False]


def test_an_adapter_already_stored_is_not_imported_again(alice, exported, fresh):
    before = snapshot(alice)
    with pytest.raises(BundleError, match="mine.zip is already stored as version v1"):
        import_adapter(alice, exported, activate=True)
    assert snapshot(alice) == before
    assert import_adapter(fresh, exported).version == "v1"
    with pytest.raises(BundleError, match="already stored as version v1"):
        import_adapter(fresh, exported)


def test_the_same_adapter_in_another_file_format_is_not_imported_again(alice, exported, fresh,
                                                                        tmp_path):
    bare = export(alice, format="gguf", out=tmp_path)
    assert import_adapter(fresh, bare).version == "v1"
    assert (list_adapters(fresh)[0].metrics, list_adapters(fresh)[0].words_trained) == ({}, 0)
    before = snapshot(fresh)
    with pytest.raises(AlreadyStored, match="mine.zip is already stored as version v1; its "
                                            "training summary, missing there, was added"):
        import_adapter(fresh, exported)  # the .gguf carries no summary; its zip does
    [kept] = list_adapters(fresh)
    assert (kept.words_trained, kept.metrics["base"]["loss"]) == (1234, 3.0)
    assert read_meta(kept.path)["train_words"] == 1234 and snapshot(fresh) == before
    with pytest.raises(BundleError, match="mine.zip is already stored as version v1; nothing"):
        import_adapter(fresh, exported)


def test_the_command_line_says_when_an_import_only_added_a_training_summary(alice, exported,
                                                                            fresh, tmp_path,
                                                                            capsys):
    import_adapter(fresh, export(alice, format="gguf", out=tmp_path))
    capsys.readouterr()
    assert main(["--profile", "fresh", "import-adapter", str(exported)]) == 0
    assert capsys.readouterr().out.startswith("mine.zip is already stored as version v1; its "
                                              "training summary")
    assert main(["--profile", "fresh", "import-adapter", str(exported)]) == 1
    other = rezip(exported, tmp_path / "other.zip", weights_changed(lora_b_doubled))
    assert import_adapter(fresh, other).version == "v2"


def test_other_base_is_refused_unless_forced(exported, other_base):
    with open_profile("carol", other_base) as carol:
        before = snapshot(carol)
        with pytest.raises(ForeignBase, match="trained on tiny-llama.gguf .*, not on this "
                                              "profile's base"):
            import_adapter(carol, exported)
        assert snapshot(carol) == before

        forced = import_adapter(carol, exported, force=True)
        assert forced.base_sha256 == sha256_file(other_base)
        assert sha256_file(other_base).encode() in forced.gguf_path.read_bytes()








def _config_with(changes: dict):
    return lambda c: c | {"peft/adapter_config.json": json.dumps(
        json.loads(c["peft/adapter_config.json"]) | changes)}


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _headers_say(good, path, local_field: int, central_field: int, value: int):
    """`good` with a 2-byte field of every local and central header set to `value`: the
    encryption flag (a password-protected zip) or the compression method (Deflate64)."""
    data = bytearray(good.read_bytes())
    for signature, field in ((b"PK\x03\x04", local_field), (b"PK\x01\x02", central_field)):
        start = data.find(signature)
        while start >= 0:
            data[start + field:start + field + 2] = value.to_bytes(2, "little")
            start = data.find(signature, start + 4)
    return _write(path, bytes(data))


def _member(bundle: Path, name: str) -> bytes:
    with zipfile.ZipFile(bundle) as members:
        [found] = [m for m in members.namelist() if m.rsplit("/", 1)[-1] == name]
        return members.read(found)


BAD_FILES = {
    "password": (lambda good, path: _headers_say(good, path, 6, 8, 1), "password"),
    "deflate64": (lambda good, path: _headers_say(good, path, 8, 10, 9), "cannot be unpacked"),
    "empty": (lambda good, path: _write(path, b""), "is empty"),
    "truncated": (lambda good, path: _write(path, good.read_bytes()[:good.stat().st_size // 2]),
                  "damaged or truncated"),
    "pickle": (lambda good, path: rezip(good, path, lambda c: c | {
        "peft/adapter_model.bin": pickle.dumps({"weights": [1, 2]})}), "pickle"),
    "disguised-pickle": (lambda good, path: rezip(good, path, lambda c: c | {
        "notes.txt": pickle.dumps("hello", protocol=4)}), "pickle"),
    "wrong-shapes": (lambda good, path: rezip(good, path, weights_changed(
        lambda name, v: v[:, :48] if ".lora_A." in name else v)), "does not fit .*x48"),
    "truncated-safetensors": (lambda good, path: rezip(good, path, lambda c: c | {
        "peft/adapter_model.safetensors": c["peft/adapter_model.safetensors"][:-64]}),
        "truncated"),
    "targets-leave-out-weights": (lambda good, path: rezip(good, path, _config_with(
        {"target_modules": ["q_proj", "v_proj"]})), "target_modules .* leave out"),
    "nan-alpha": (lambda good, path: rezip(good, path, _config_with({"lora_alpha": math.nan})),
                  "valid rank r and lora_alpha"),
    "negative-alpha": (lambda good, path: rezip(good, path, _config_with({"lora_alpha": -1e30})),
                       "valid rank r and lora_alpha"),
    "infinite-weights": (lambda good, path: rezip(good, path, weights_changed(
        lambda name, v: np.full_like(v, np.inf) if ".lora_B." in name else v)),
        "not finite numbers"),
    "huge-weights": (lambda good, path: rezip(good, path, weights_changed(
        lambda name, v: v * 1e18 if ".lora_B." in name else v)), "could change a weight by up"),
    "huge-alpha": (lambda good, path: rezip(good, path, _config_with({"lora_alpha": 1e30})),
                   "could change a weight by up"),
    "deeply-nested-meta": (lambda good, path: rezip(good, path, lambda c: c | {
        "meta.json": b"[" * 100_000 + b"]" * 100_000}), "meta.json is not valid JSON"),
    "deeply-nested-config": (lambda good, path: rezip(good, path, lambda c: c | {
        "peft/adapter_config.json": b"[" * 100_000 + b"]" * 100_000}),
        "adapter_config.json is not valid JSON"),
    "a-pipe": (lambda good, path: os.mkfifo(path) or path, "not a regular file"),
    "a-loop-of-links": (lambda good, path: path.symlink_to(path) or path,
                        "too many levels of symbolic links"),
    "not-an-adapter": (lambda good, path: _write(path, b"just some text"),
                       "not an adapter export"),
    "broken-gguf": (lambda good, path: _write(path, b"GGUF" + bytes(60)), "damaged or truncated"),
    "truncated-gguf": (lambda good, path: _write(path.with_suffix(".gguf"), _member(
        good, "adapter.gguf")[:-100]),
                       "its header does not match the data that follows$"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_imports_are_refused_with_a_reason_and_nothing_written(alice, exported, tmp_path,
                                                                    kind):
    make, reason = BAD_FILES[kind]
    bad = make(exported, tmp_path / f"bad-{kind}.zip")
    before = snapshot(alice)
    with pytest.raises(AdapterFileError, match=reason):
        import_adapter(alice, bad, activate=True, force=True)
    assert snapshot(alice) == before


@pytest.mark.parametrize("training", ["oops", {"metrics": "garbage", "train_words": "lots"},
                                      {"metrics": {"new": 5, "base": {"loss": "x"}},
                                       "train_words": -5}])
def test_an_ill_formed_description_is_dropped_not_trusted(fresh, exported, tmp_path, training):
    def describe(contents):
        meta = json.loads(contents["meta.json"])
        return contents | {"meta.json": json.dumps(meta | {"training": training})}

    imported = import_adapter(fresh, rezip(exported, tmp_path / "odd.zip", describe))
    assert (imported.metrics, imported.words_trained) == ({}, 0)
    assert [v.version for v in list_adapters(fresh)] == [imported.version]
    assert main(["--profile", "fresh", "adapters"]) == 0


def test_export_writes_into_a_new_folder_and_never_over_a_file(alice, tmp_path, capsys):
    mine = tmp_path / "mine.txt"
    mine.write_text("my own file")
    with pytest.raises(AdapterError, match="already exists"):
        export(alice, out=mine)
    assert mine.read_text() == "my own file"
    assert export(alice, out=mine, overwrite=True) == mine and mine.stat().st_size > 1000
    made = export(alice, out=f"{tmp_path / 'new' / 'sub'}/")
    assert made.parent == tmp_path / "new" / "sub" and made.suffix == ".zip"
    with pytest.raises(AdapterError, match=r"mine.txt/x is not a folder \(end the path with /"):
        export(alice, out=mine / "x" / "a.zip")  # a typo: no folders made along the way
    with pytest.raises(AdapterError, match="cannot make the folder .*: a file is in the way"):
        export(alice, out=f"{mine / 'new'}/")
    assert mine.is_file() and not (tmp_path / "x").exists()
    capsys.readouterr()
    assert main(["--profile", "alice", "export", "-o", str(mine / "x.zip")]) == 1  # not a folder
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.splitlines()[-1].startswith(
        f"oppu: cannot write {mine / 'x.zip'}: {mine} is not a folder")


def test_bare_gguf_round_trip_gives_back_the_same_adapter(alice, tmp_path, tiny_gguf):
    """The exported .gguf alone (no PEFT files) imports into another profile: the PEFT
    weights come back exactly (q/k un-permuted) and llama.cpp serves identical logits."""
    from safetensors.numpy import load

    original = list_adapters(alice)[0]
    bare = export(alice, format="gguf", out=tmp_path / "mine-adapter.gguf")
    with open_profile("frank", tiny_gguf) as frank:
        imported = import_adapter(frank, bare)
        assert (imported.origin, imported.base_sha256) == ("imported", original.base_sha256)
        old = load((original.peft_dir / "adapter_model.safetensors").read_bytes())
        new = load((imported.peft_dir / "adapter_model.safetensors").read_bytes())
        assert sorted(old) == sorted(new)
        assert all(np.array_equal(old[k], new[k]) for k in old)
        ids = tokenize(tiny_gguf, PROMPT)
        assert np.array_equal(llama_last_logits(tiny_gguf, ids, imported.gguf_path),
                              llama_last_logits(tiny_gguf, ids, original.gguf_path))


def test_a_bare_gguf_for_another_base_needs_force(alice, tmp_path, other_base):
    bare = export(alice, format="gguf", out=tmp_path / "mine-adapter.gguf")
    with open_profile("gina", other_base) as gina:
        before = snapshot(gina)
        with pytest.raises(ForeignBase, match=r"trained on tiny-test-llama \(sha256"):
            import_adapter(gina, bare)  # the base's name, not the adapter's own
        with pytest.raises(BundleError, match=r"a GGUF model \(a base model, or a merged "
                                              r"export\), not a LoRA adapter"):
            import_adapter(gina, other_base, force=True)
        assert snapshot(gina) == before
        assert import_adapter(gina, bare, force=True).version == "v1"


def test_a_peft_folder_without_meta_needs_force(fresh, adapter_dir):
    before = snapshot(fresh)
    with pytest.raises(BundleError, match="does not say which base"):
        import_adapter(fresh, adapter_dir)
    assert snapshot(fresh) == before
    assert import_adapter(fresh, adapter_dir, force=True).version == "v1"


def test_an_unzipped_export_or_one_zipped_again_from_its_folder_imports(fresh, exported,
                                                                         tmp_path):
    """What a file manager makes of the zip (macOS unzips downloads; "Compress" zips the
    folder again, one level down): it still says which base it was trained on."""
    folder = tmp_path / "mine"
    with zipfile.ZipFile(exported) as bundle:
        bundle.extractall(folder)
    assert import_adapter(fresh, folder).version == "v1"
    again = rezip(exported, tmp_path / "mine-again.zip",
                  lambda contents: {f"mine/{name}": data for name, data in contents.items()})
    with pytest.raises(BundleError, match="already stored as version v1"):  # base accepted
        import_adapter(fresh, again)


def test_export_refuses_what_it_cannot_do(alice, tmp_path, other_base):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(AdapterError, match="no adapter version 'v9' .*v1"):
        export(alice, version="v9", out=out)
    with pytest.raises(ValueError, match="merged only"):
        export(alice, format="zip", quant="f16", out=out)
    with pytest.raises(ValueError, match="format must be"):
        export(alice, format="tar", out=out)
    alice.set("base_model", str(other_base))
    with pytest.raises(AdapterError, match="trained on tiny-llama.gguf"):
        export(alice, format="merged", out=out)
    with pytest.raises(AdapterError, match="a.zip ends in .zip, but the gguf format writes a "
                                           ".gguf file: name it a.gguf"):
        export(alice, format="gguf", out=out / "a.zip")
    with pytest.raises(AdapterError, match="ends in .gguf, but the zip format"):
        export(alice, format="zip", out=out / "a.GGUF")
    assert list(out.iterdir()) == []


def test_the_command_line_writes_the_format_the_file_name_asks_for(alice, tmp_path, capsys):
    assert main(["--profile", "alice", "export", "-o", str(tmp_path / "mine.gguf")]) == 0
    assert (tmp_path / "mine.gguf").read_bytes()[:4] == b"GGUF"
    assert main(["--profile", "alice", "export", "-o", str(tmp_path / "mine.zip")]) == 0
    assert (tmp_path / "mine.zip").read_bytes()[:2] == b"PK"
    from oppu.trainer.gguf_file import read_header

    assert main(["--profile", "alice", "export", "--quant", "f16", "-o",
                 str(tmp_path / "merged.gguf")]) == 0  # a type asks for the merged model
    assert "adapter.type" not in read_header(tmp_path / "merged.gguf").fields  # a model


def test_no_active_adapter_is_explained(tiny_gguf, tmp_path):
    with open_profile("dave", tiny_gguf) as dave, \
            pytest.raises(AdapterError, match="no adapter is active"):
        export(dave, out=tmp_path)


def test_command_line_export_and_import(alice, tmp_path, capsys, tiny_gguf):
    out = tmp_path / "cli.zip"
    assert main(["--profile", "alice", "export", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with open_profile("erin", tiny_gguf):
        pass
    assert main(["--profile", "erin", "import-adapter", str(out), "--activate"]) == 0
    assert "imported cli.zip as v1 (active)" in capsys.readouterr().out

    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    assert main(["--profile", "erin", "import-adapter", str(empty)]) == 1
    error = capsys.readouterr().err.strip()
    assert error == "oppu: empty.zip is empty"
    assert main(["--profile", "erin", "export", "--version", "v7"]) == 1
    assert "no adapter version 'v7'" in capsys.readouterr().err


def test_odd_member_names_are_never_written(alice, exported, fresh, tmp_path):
    evil = rezip(exported, tmp_path / "evil.zip", lambda c: c | {"../../escape.txt": b"x"})
    imported = import_adapter(fresh, evil)
    assert sorted(p.name for p in imported.path.iterdir()) == [
        "adapter.gguf", "merged-q8_0.gguf", "meta.json", "peft"]
    assert not list(alice.folder.parent.rglob("escape.txt"))
