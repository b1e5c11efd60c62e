"""Qt-free use cases. The app reaches storage, trainer and engine only through here.

This package module stays light (no SQLAlchemy, torch or llama.cpp): the window is built
from what it exports before anything heavy loads.
"""

from oppu.storage.file_types import SUPPORTED_NAMES, SUPPORTED_SUFFIXES
from oppu.storage.paths import DEFAULT_PROFILE, data_root, list_profiles
from oppu.storage.privacy import go_offline

__all__ = ["DEFAULT_PROFILE", "SUPPORTED_NAMES", "SUPPORTED_SUFFIXES", "data_root", "go_offline",
           "list_profiles"]
