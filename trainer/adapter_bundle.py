"""The user's adapter file: a .zip to carry to another machine, and reading one back safely.

The zip holds `peft/` (loadable with `PeftModel.from_pretrained` once unzipped),
`adapter.gguf` (llama.cpp `--lora`, Ollama `ADAPTER`), `meta.json` and a README.

Reading is strict and happens entirely in memory, before anything is written: the
format is told by its bytes, not its name; a pickle anywhere is refused (loading one
can run code); the safetensors header is checked against the data; the config must be
a LoRA llama.cpp can load. Only the two PEFT files are taken from an archive: the GGUF
inside it is never trusted but rewritten from them, for the importing profile's base.
"""

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from oppu.storage.atomic import atomic_path
from oppu.storage.paths import A_FOLDER, file_problem
from oppu.trainer.peft_files import (
    CONFIG_NAME,
    MODEL_CARD_NAME,
    WEIGHTS_NAME,
    AdapterFileError,
    PeftLora,
    parse_lora,
    parsed_json,
    without_local_paths,
)
from oppu.trainer.versions import GGUF_FILE, META_FILE, PEFT_DIR

FORMAT = "oppu-adapter"
FORMAT_VERSION = 1
README_NAME = "README.txt"
MAX_TOTAL_BYTES = 4 * 2**30
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
PICKLE_PROTOCOLS = tuple(bytes([0x80, n]) for n in range(2, 6))

README = """\
Your OPPU personal adapter, version {version}
============================================

A LoRA adapter trained on your own writing. It only works with the base model it was
trained on:
  {base_name}
  sha256 {base_sha256}

Files
  adapter.gguf   the adapter for llama.cpp and Ollama
  peft/          the same adapter for Hugging Face peft
  meta.json      base model, rank {rank}, alpha {alpha}, training summary, app version

llama.cpp
  llama-cli    -m {base_name} --lora adapter.gguf
  llama-server -m {base_name} --lora adapter.gguf
  (--lora-scaled adapter.gguf 0.5 for a weaker effect)

Ollama: a Modelfile with
  FROM /path/to/{base_name}
  ADAPTER /path/to/adapter.gguf
then: ollama create my-voice -f Modelfile && ollama run my-voice

peft (Python): the base must be the very weights it was trained on, so load the GGUF
  from transformers import AutoModelForCausalLM
  from peft import PeftModel
  base = AutoModelForCausalLM.from_pretrained("folder/of/the/gguf", gguf_file="{base_name}")
  model = PeftModel.from_pretrained(base, "peft")

OPPU desktop on another machine
  oppu import-adapter this-file.zip [--activate]
"""


class BundleError(AdapterFileError):
    """A file that cannot be imported; the message says why."""


@dataclass
class Bundle:
    """A validated adapter read from a file: the PEFT bytes as found, and what they hold."""

    source: Path
    kind: str  # zip | folder | gguf
    config_bytes: bytes
    weights_bytes: bytes
    lora: PeftLora
    meta: dict = field(default_factory=dict)


def bundle_meta(version: str, base_name: str, base_sha256: str, architecture: str,
                lora: PeftLora, training: dict, app_version: str, created: str) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "version": version,
            "base": {"name": base_name, "sha256": base_sha256, "architecture": architecture},
            "rank": lora.rank, "alpha": lora.alpha,
            "target_modules": lora.config.get("target_modules"), "training": training,
            "app_version": app_version, "created": created}


def write_bundle_zip(version_dir: Path, out_path: Path, meta: dict) -> Path:
    """The zip of one adapter version folder (`peft/`, `adapter.gguf`), written atomically."""
    version_dir = Path(version_dir)
    peft = version_dir / PEFT_DIR
    readme = README.format(version=meta["version"], base_name=meta["base"]["name"],
                           base_sha256=meta["base"]["sha256"], rank=meta["rank"],
                           alpha=meta["alpha"])
    with atomic_path(Path(out_path)) as temp, zipfile.ZipFile(temp, "w",
                                                               zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(peft.iterdir()):
            if item.name == CONFIG_NAME:  # older versions hold the base's local path
                archive.writestr(f"{PEFT_DIR}/{CONFIG_NAME}", without_local_paths(
                    item.read_bytes(), meta["base"]["name"]))
            elif item.is_file() and item.name != MODEL_CARD_NAME:
                archive.write(item, f"{PEFT_DIR}/{item.name}")
        archive.write(version_dir / GGUF_FILE, GGUF_FILE)
        archive.writestr(META_FILE, json.dumps(meta, indent=2, sort_keys=True, default=str))
        archive.writestr(README_NAME, readme)
    return Path(out_path)


def read_bundle(path: Path, base=None) -> Bundle:
    """A zip export, a PEFT folder or (given the profile's `base`, a BaseInfo) a bare LoRA
    GGUF, validated; BundleError (a one-line reason) otherwise."""
    path = Path(path).expanduser()
    problem, info = file_problem(path)
    if problem == A_FOLDER:
        return _read_folder(path)
    if problem:
        raise BundleError(f"{path}: {problem}")
    size = info.st_size
    if size == 0:
        raise BundleError(f"{path.name} is empty")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == b"GGUF" and base is not None:
        return _read_gguf(path, base)
    if head[:2] != b"PK":
        raise BundleError(f"{path.name} is not an adapter export (expected a .zip or an "
                          "adapter .gguf exported by OPPU, or a PEFT adapter folder)")
    return _read_zip(path)


def _refuse_pickle(name: str, head: bytes) -> None:
    if name.lower().endswith(PICKLE_SUFFIXES) or head[:2] in PICKLE_PROTOCOLS:
        raise BundleError(f"contains {name}, a pickle: refused, because loading a pickle can "
                          "run arbitrary code (only safetensors adapters are accepted)")


def _read_zip(path: Path) -> Bundle:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_TOTAL_BYTES:
                raise BundleError(f"{path.name} unpacks to more than "
                                  f"{MAX_TOTAL_BYTES // 2**30} GiB")
            # A pickle anywhere is refused, by its name or its start. Only what an adapter
            # is made of is unpacked: a huge extra member (a zip bomb) costs nothing.
            contents = {}
            for member in members:
                with archive.open(member) as handle:
                    head = handle.read(2)
                    _refuse_pickle(member.filename, head)
                    if member.filename.rpartition("/")[2] in (META_FILE, CONFIG_NAME,
                                                             WEIGHTS_NAME):
                        contents[member.filename] = head + handle.read()
    except BundleError as error:
        raise BundleError(f"{path.name}: {error}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as error:
        raise BundleError(f"{path.name} is damaged or truncated ({error})") from None
    except (RuntimeError, NotImplementedError) as error:  # a password; Deflate64 and the like
        raise BundleError(f"{path.name} cannot be unpacked ({error}): zip the exported files "
                          "again without a password") from None
    configs = [name for name in contents if name.rpartition("/")[2] == CONFIG_NAME]
    if len(configs) != 1:
        raise BundleError(f"{path.name} holds {len(configs)} {CONFIG_NAME} files; an adapter "
                          "export holds exactly one, in peft/")
    prefix = configs[0][:-len(CONFIG_NAME)]
    if prefix + WEIGHTS_NAME not in contents:
        raise BundleError(f"{path.name} has no {prefix}{WEIGHTS_NAME}")
    # An export zipped again from its unzipped folder has it all one folder down.
    top = prefix.removesuffix(f"{PEFT_DIR}/")
    meta = _parse_meta(contents.get(top + META_FILE), path.name)
    return _bundle(path, "zip", contents[configs[0]], contents[prefix + WEIGHTS_NAME], meta)


def _read_folder(folder: Path) -> Bundle:
    for item in folder.rglob("*"):
        if item.is_file():
            with open(item, "rb") as handle:
                try:
                    _refuse_pickle(item.name, handle.read(2))
                except BundleError as error:
                    raise BundleError(f"{folder.name}: {error}") from None
    # An unzipped export (its peft/ beside meta.json), or a bare PEFT folder.
    peft = folder / PEFT_DIR if (folder / PEFT_DIR / CONFIG_NAME).is_file() else folder
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (peft / n).is_file()]
    if missing:
        raise BundleError(f"{folder} is not a PEFT adapter folder (missing {', '.join(missing)})")
    meta = _parse_meta((folder / META_FILE).read_bytes() if (folder / META_FILE).is_file()
                       else None, folder.name)
    return _bundle(folder, "folder", (peft / CONFIG_NAME).read_bytes(),
                   (peft / WEIGHTS_NAME).read_bytes(), meta)


def _read_gguf(path: Path, base) -> Bundle:
    from oppu.trainer.gguf_import import read_adapter_gguf

    try:
        config, weights, meta = read_adapter_gguf(path, base)
    except AdapterFileError as error:
        raise BundleError(f"{path.name}: {error}") from None
    return _bundle(path, "gguf", config, weights, meta)


def _parse_meta(raw: bytes | None, label: str) -> dict:
    if raw is None:
        return {}
    try:
        meta = parsed_json(raw)
    except ValueError:
        raise BundleError(f"{label}: {META_FILE} is not valid JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("base", {}), dict):
        raise BundleError(f"{label}: {META_FILE} is not an adapter description")
    return meta | {"training": _training(meta.get("training"))}


def _training(raw) -> dict:
    """What an imported description says about its training, as far as it is well formed:
    it is shown to the user, never trusted."""
    if not isinstance(raw, dict):
        return {}
    metrics = raw.get("metrics") if isinstance(raw.get("metrics"), dict) else {}
    words = raw.get("train_words")
    return {
        "metrics": {name: numbers for name in ("base", "new", "active")
                    if (numbers := _finite_numbers(metrics.get(name)))},
        "train_words": words if type(words) is int and words >= 0 else 0,
        "config": raw["config"] if isinstance(raw.get("config"), dict) else {},
    }


def _finite_numbers(entry) -> dict:
    if not isinstance(entry, dict):
        return {}
    return {k: v for k, v in entry.items() if k in ("loss", "perplexity", "tokens")
            and type(v) in (int, float) and math.isfinite(v)}


def _bundle(source: Path, kind: str, config: bytes, weights: bytes, meta: dict) -> Bundle:
    try:
        lora = parse_lora(config, weights)
    except AdapterFileError as error:
        raise BundleError(f"{source.name}: {error}") from None
    return Bundle(source, kind, config, weights, lora, meta)
