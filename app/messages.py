"""Turning any failure into one line a person can read: the window never shows a traceback."""


def describe(error: BaseException) -> str:
    """One readable line for `error`; our own errors already speak plainly."""
    if isinstance(error, MemoryError):
        return "Ran out of memory. Close other programs or pick a smaller model, then try again."
    if isinstance(error, FileNotFoundError):
        return f"File not found: {error.filename or error}"
    if isinstance(error, PermissionError):
        return f"Permission denied: {error.filename or error}"
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    text = first_line(str(error))
    if type(error).__module__.startswith("oppu.") or isinstance(error, ValueError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def first_line(text: str, limit: int = 300) -> str:
    line = next((part.strip() for part in text.strip().splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def full_stop(text: str) -> str:
    """`text` ending as a sentence does: core's one-line messages end bare. Not after a
    file's path, where a dot would read as part of its name."""
    last = text.rsplit(None, 1)[-1] if text.strip() else ""
    if not last or text[-1] in ".!?…)" or "/" in last or "\\" in last:
        return text
    return text + "."


def sentence(text: str) -> str:
    """`text` starting with a capital, as core's one-line errors do not; a first word that
    names something (a version such as v1, a setting such as retrieval_k, a file) is kept."""
    first = text.split(" ", 1)[0].rstrip(",:;.")
    if not (first.isalpha() and first[:1].islower()):
        return text
    return text[:1].upper() + text[1:]
