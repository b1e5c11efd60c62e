"""The plain callbacks every long job takes: `report(Progress)` and `should_stop() -> bool`."""

from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Progress:
    phase: str
    done: int = 0
    total: int = 0
    message: str = ""
    loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


Report = Callable[[Progress], None]
ShouldStop = Callable[[], bool]


def ignore(_progress: Progress) -> None:
    pass


def never() -> bool:
    return False


class Stopped(Exception):
    """A job ended early because `should_stop()` said so."""
