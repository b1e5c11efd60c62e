"""`NetworkGuard`: refuses every connection and name lookup made through Python."""

import socket
from typing import Self


class NetworkGuard:
    """Refuses every connection and name lookup made through Python, recording each try."""

    def __init__(self):
        self.attempts: list[str] = []
        self._saved = {}

    def _refuse(self, what: str):
        def refuse(*args, **_kwargs):
            self.attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
            raise ConnectionRefusedError(f"offline guard: {what} refused")

        return refuse

    def __enter__(self) -> Self:
        targets = [(socket.socket, "connect"), (socket.socket, "connect_ex"),
                   (socket, "create_connection"), (socket, "getaddrinfo"),
                   (socket, "gethostbyname"), (socket, "gethostbyname_ex")]
        for owner, name in targets:
            self._saved[owner, name] = getattr(owner, name)
            label = f"socket.{name}" if owner is socket.socket else name
            setattr(owner, name, self._refuse(label))
        return self

    def __exit__(self, *_exc) -> None:
        for (owner, name), original in self._saved.items():
            setattr(owner, name, original)
