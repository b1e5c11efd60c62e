"""A profile's settings: typed defaults with help text, stored as JSON rows in SQLite."""

import re
from dataclasses import dataclass, field, fields, replace

from oppu.trainer.config import DEVICES, PRESETS

MAIL_ADDRESS = re.compile(r"^[^@\s,]+@[^@\s,]+$")
TYPE_NAMES = {int: "a whole number", float: "a number", str: "text"}


def _setting(default, help: str, low=None, high=None, choices: tuple = ()):
    """A setting with its help text, and the range (`low`..`high`) or the `choices` that
    its values must keep to."""
    return field(default=default, metadata={"help": help, "low": low, "high": high,
                                            "choices": choices})


@dataclass(frozen=True)
class Settings:
    mail_addresses: tuple[str, ...] = _setting(
        (), "your own email addresses: only mail sent from them is imported")
    max_file_mb: float = _setting(20.0, "files larger than this are skipped on import",
                                  0.1, 4096)
    retrieval_k: int = _setting(4, "passages of your writing put into each chat prompt", 0, 20)
    retrieval_min_score: float = _setting(
        0.2, "passages less similar than this are left out", 0.0, 1.0)
    temperature: float = _setting(
        0.7, "sampling temperature of chat replies: higher is more varied, 0 always picks the "
             "likeliest word", 0.0, 2.0)
    top_p: float = _setting(
        0.9, "nucleus sampling of chat replies: each word is picked from the likeliest ones "
             "that together make up this share of the chances (1 allows all)", 0.01, 1.0)
    max_reply_tokens: int = _setting(512, "longest chat reply, in tokens", 1, 8192)
    adapter_scale: float = _setting(1.0, "strength of the personal adapter in chat", 0.0, 2.0)
    context_tokens: int = _setting(
        4096, "chat context window: how much of the chat and the quoted writing the model reads "
              "at once, in tokens (capped at what the model was trained for)",
        256, 131072)
    base_model: str = _setting("bundled",
                               "'bundled', a downloaded model's key or a path to a GGUF file")
    auto_retrain: bool = _setting(True, "retrain in the background when enough is new")
    retrain_min_words: int = _setting(2000, "new words needed before a retrain is due",
                                      0, 10**9)
    retrain_min_hours: float = _setting(24.0, "hours between automatic retrains", 0.0, 8760.0)
    retrain_only_idle: bool = _setting(
        True, "the app starts automatic retrains only after 5 minutes without input in its "
              "window (the background timer's `oppu train --if-due` does not wait)")
    training_preset: str = _setting("balanced", ", ".join(PRESETS), choices=tuple(PRESETS))
    training_device: str = _setting("auto", ", ".join(DEVICES), choices=DEVICES)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}

    def with_value(self, key: str, raw) -> "Settings":
        """A copy with `key` set, the value converted to the field's type, or ValueError."""
        known = {f.name: f for f in fields(self)}
        if key not in known:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(known)}")
        kind = type(getattr(self, key))
        if kind is tuple:
            value = tuple(raw) if isinstance(raw, (list, tuple)) else tuple(
                s.strip() for s in str(raw).split(",") if s.strip())
        elif kind is bool and isinstance(raw, str):
            if raw.lower() not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                raise ValueError(f"{key} must be true or false, not {raw!r}")
            value = raw.lower() in {"true", "1", "yes", "on"}
        else:
            try:
                value = kind(raw)
                if kind is int and isinstance(raw, float) and raw != value:  # 2.5 is not 2
                    raise ValueError
            except (TypeError, ValueError):
                raise ValueError(f"{key} must be {TYPE_NAMES.get(kind, kind.__name__)}, "
                                 f"not {raw!r}") from None
        if key == "mail_addresses":
            wrong = [a for a in value if not MAIL_ADDRESS.match(a)]
            if wrong:
                raise ValueError(f"not an email address: {', '.join(map(repr, wrong))}")
        rule = self._rule(key)
        if rule["choices"] and value not in rule["choices"]:
            raise ValueError(f"{key} must be {', '.join(rule['choices'][:-1])} or "
                             f"{rule['choices'][-1]}, not {raw!r}")
        if rule["low"] is not None and not rule["low"] <= value <= rule["high"]:
            raise ValueError(f"{key} must be between {rule['low']} and {rule['high']}, "
                             f"not {raw!r}")
        return replace(self, **{key: value})

    @classmethod
    def limits(cls, key: str) -> tuple:
        """(low, high) of a number setting, or (None, None)."""
        rule = cls._rule(key)
        return rule["low"], rule["high"]

    @classmethod
    def choices(cls, key: str) -> tuple[str, ...]:
        return cls._rule(key)["choices"]

    @classmethod
    def _rule(cls, key: str):
        """The help text and the bounds of setting `key`, as its field declares them."""
        return cls.__dataclass_fields__[key].metadata


def load_settings(store) -> Settings:
    from sqlalchemy import select

    from oppu.storage.models import Setting

    with store.read() as session:
        stored = dict(session.execute(select(Setting.key, Setting.value)).all())
    settings = Settings()
    for key, value in stored.items():
        try:
            settings = settings.with_value(key, value)
        except ValueError:  # from an older or newer version: what still passes, else the default
            if isinstance(value, list):
                settings = settings.with_value(key, [v for v in value if _passes(key, v)])
    return settings


def _passes(key: str, entry) -> bool:
    try:
        Settings().with_value(key, [entry])
        return True
    except ValueError:
        return False


def save_setting(store, settings: Settings, key: str) -> None:
    """Store one setting of `settings`: the others stay as stored (another process may
    have changed them meanwhile)."""
    from oppu.storage.models import Setting

    value = getattr(settings, key)
    with store.write() as session:
        session.merge(Setting(key=key, value=list(value) if isinstance(value, tuple) else value))
