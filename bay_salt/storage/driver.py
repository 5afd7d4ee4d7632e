"""The storage interface: the :class:`Driver` protocol, its errors, and the
rules every driver keeps (checked paths, temporary objects never listed)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

CHUNK = 1 << 20
#: marks a temporary object (no name, tag or digest of the spec's grammar has a "~")
TMP_MARK = "~tmp-"


def tmp_name(final: str) -> str:
    return f"{final}{TMP_MARK}{secrets.token_hex(6)}"


def visible(entries: list[str]) -> list[str]:
    """A listing without temporary objects, sorted."""
    return sorted(e for e in entries if TMP_MARK not in e)


class StorageError(RuntimeError):
    pass


class NotFound(StorageError):
    pass


@dataclass(frozen=True)
class Stat:
    size: int
    mtime: float  # epoch seconds


def check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"refused storage path {path!r}")
    return path


class Driver(Protocol):
    name: str

    def stat(self, path: str) -> Stat: ...
    def read(self, path: str) -> bytes: ...
    def open(self, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]: ...
    def put(self, path: str, data: bytes) -> None: ...
    def put_stream(self, path: str, chunks: Iterator[bytes]) -> int: ...
    def append(self, path: str, data: bytes) -> int: ...
    def append_stream(self, path: str, chunks: Iterator[bytes]) -> int: ...
    def move(self, src: str, dst: str) -> None: ...
    def delete(self, path: str) -> None: ...
    def list(self, path: str) -> list[str]:
        """Names under ``path``, sorted, never a temporary object's."""

    def local_path(self, path: str) -> str | None:
        """The object's file on this machine (sent with sendfile), or None."""

    def location(self, path: str, offset: int = 0, length: int | None = None) -> str | None:
        """A URL where storage itself serves the object's bytes, or None."""
