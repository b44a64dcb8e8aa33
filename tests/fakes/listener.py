"""A TCP listener on 127.0.0.1 that records every connection made to it (and what was sent
first): a test proves that nothing reached an address by finding the list empty."""

from __future__ import annotations

import socket
import threading


class Listener:
    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            connection.settimeout(1)
            try:
                self.seen.append(connection.recv(4096))
            except OSError:
                self.seen.append(b"")
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.close()
