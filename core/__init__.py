"""Qt-free use cases. The app reaches storage, trainer and engine only through here."""

from oppu.storage.privacy import go_offline

__all__ = ["go_offline"]
