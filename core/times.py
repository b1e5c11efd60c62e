"""Times as the user reads them. The store keeps naive UTC (`storage.models.utcnow`); the
app and the command line show the user's local time, to the minute."""

from datetime import UTC, datetime


def local_time(value: datetime | None) -> str:
    """A stored time in the user's local time ("" for none)."""
    if value is None:
        return ""
    return f"{value.replace(tzinfo=UTC).astimezone():%Y-%m-%d %H:%M}"
