"""The offline guard: no library may phone home.

Call `go_offline()` before importing chromadb, transformers, huggingface_hub or
sentence_transformers; they read these variables once, at import time.
"""

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OTEL_SDK_DISABLED": "true",
}


def go_offline() -> None:
    """Set every switch that stops a library from reaching the network."""
    os.environ.update(OFFLINE_ENV)


def online_env() -> dict[str, str]:
    """A copy of the environment for the one child process allowed to download."""
    env = dict(os.environ)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(key, None)
    return env
