"""Typed errors of the store. Each message is one line a person can act on."""


class StorageError(Exception):
    pass


class IngestError(StorageError):
    """A file or text that cannot become a document. `reason` is the one-line report."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class EmptyInput(IngestError):
    pass


class BinaryFile(IngestError):
    pass


class FileTooLarge(IngestError):
    pass


class UnsupportedType(IngestError):
    pass


class UnreadablePath(IngestError):
    pass


class BrokenFile(IngestError):
    """A file of a known kind whose contents are damaged or not of that kind."""


class MailAddressNotSet(IngestError):
    pass


class DocumentNotFound(StorageError):
    pass


class StoreUnavailable(StorageError):
    """The profile's database cannot be opened: damaged, or held by another process."""


class StoreDamaged(StoreUnavailable):
    """The profile's database file is not a readable SQLite database."""
