"""Typed errors of the engine. Each message is one line a person can act on."""

from pathlib import Path


class EngineError(Exception):
    pass


class ModelFileError(EngineError):
    """A GGUF that cannot be used: missing, unreadable, corrupt or of the wrong kind.

    `bundled_fallback` is set by the caller that knows of a model to offer instead
    (the bundled base); it is None when there is nothing better to offer.
    """

    def __init__(self, path: Path | str, reason: str, bundled_fallback: Path | None = None):
        self.path = Path(path)
        self.reason = reason
        self.bundled_fallback = bundled_fallback
        super().__init__(f"{self.path.name}: {reason}")


class AdapterMismatch(ModelFileError):
    """An adapter GGUF that was not made for the loaded base model."""


class ContextTooSmall(EngineError):
    """The context window cannot hold even the instruction and one short message."""
