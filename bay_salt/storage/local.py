"""A directory on a local (or shared) filesystem as storage."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from bay_salt.storage.driver import CHUNK, NotFound, Stat, check_path, tmp_name, visible


class LocalDriver:
    """A directory on a local (or shared) filesystem."""

    name = "filesystem"

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def _p(self, path: str) -> str:
        return os.path.join(self.root, *check_path(path).split("/"))

    def local_path(self, path: str) -> str | None:
        """Where the object is on this machine's disk (the server sends it with sendfile)."""
        return self._p(path)

    def location(self, path: str, offset: int = 0, length: int | None = None) -> str | None:
        return None

    def stat(self, path: str) -> Stat:
        try:
            st = os.stat(self._p(path))
        except FileNotFoundError:
            raise NotFound(path) from None
        return Stat(st.st_size, st.st_mtime)

    def read(self, path: str) -> bytes:
        try:
            with open(self._p(path), "rb") as fh:
                return fh.read()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(path) from None

    def open(self, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        try:
            fh = open(self._p(path), "rb")  # noqa: SIM115 - closed by the generator
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(path) from None

        def gen():
            with fh:
                fh.seek(offset)
                left = length
                while left is None or left > 0:
                    buf = fh.read(CHUNK if left is None else min(CHUNK, left))
                    if not buf:
                        return
                    if left is not None:
                        left -= len(buf)
                    yield buf

        return gen()

    def put(self, path: str, data: bytes) -> None:
        self.put_stream(path, iter([data]))

    def put_stream(self, path: str, chunks: Iterator[bytes]) -> int:
        final = self._p(path)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = tmp_name(final)
        n = 0
        try:
            with open(tmp, "wb") as fh:
                for c in chunks:
                    fh.write(c)
                    n += len(c)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return n

    def append(self, path: str, data: bytes) -> int:
        return self.append_stream(path, iter([data]))

    def append_stream(self, path: str, chunks: Iterator[bytes]) -> int:
        """Append every chunk; returns the new size."""
        final = self._p(path)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        with open(final, "ab") as fh:
            for c in chunks:
                fh.write(c)
            fh.flush()
            os.fsync(fh.fileno())
            return fh.tell()

    def move(self, src: str, dst: str) -> None:
        d = self._p(dst)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        try:
            os.replace(self._p(src), d)
        except FileNotFoundError:
            raise NotFound(src) from None

    def delete(self, path: str) -> None:
        p = self._p(path)
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except FileNotFoundError:
                raise NotFound(path) from None

    def list(self, path: str) -> list[str]:
        try:
            return visible(os.listdir(self._p(path)))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(path) from None
