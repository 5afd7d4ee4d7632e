"""A client for HAProxy's Runtime API (the admin stats socket)."""

from __future__ import annotations

import socket


class RuntimeAPIError(RuntimeError):
    pass


class RuntimeAPI:
    """One command per connection, as HAProxy's non-interactive mode expects."""

    def __init__(self, path: str, timeout: float = 5.0):
        self.path = path
        self.timeout = timeout

    def execute(self, command: str) -> str:
        if any(c in command for c in "\n\r;") or not command.isprintable():
            # ";" chains commands in HAProxy's CLI: a value spliced into a command could add its own
            raise ValueError(f"one Runtime API command at a time (no newline, ';' or control character): "
                             f"{command[:120]!r}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError as err:
                raise RuntimeAPIError(f"cannot reach the HAProxy Runtime API at {self.path}: {err}") from None
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def info(self) -> dict[str, str]:
        """``show info`` as a dict."""
        out = {}
        for line in self.execute("show info").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
        return out
