"""HDFS as storage, over WebHDFS (the ``hdfs`` package)."""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Iterator

from bay_salt.storage.driver import CHUNK, NotFound, Stat, StorageError, check_path, tmp_name, visible


class HDFSDriver:
    """HDFS over WebHDFS with the ``hdfs`` package. ``urls``: one or more
    NameNode HTTP URLs (HA pairs are tried in turn)."""

    name = "hdfs"

    def __init__(self, urls: list[str] | str, root: str = "/bay-registry", user: str | None = None,
                 timeout: float = 30.0):
        import hdfs  # the registry's optional dependency for this driver

        self._hdfs = hdfs
        url = ";".join(urls) if isinstance(urls, list) else urls
        self.client = hdfs.InsecureClient(url, user=user or os.environ.get("USER") or "root", timeout=timeout)
        self.root = root.rstrip("/") or "/"
        self.client.makedirs(self.root)

    def _p(self, path: str) -> str:
        return posixpath.join(self.root, check_path(path))

    def _missing(self, err: Exception) -> bool:
        text = str(err)
        return getattr(err, "exception", "") == "FileNotFoundException" or "FileNotFoundException" in text \
            or "does not exist" in text or text.endswith("not found.")

    def stat(self, path: str) -> Stat:
        st = self.client.status(self._p(path), strict=False)
        if st is None:
            raise NotFound(path)
        return Stat(int(st["length"]), st["modificationTime"] / 1000.0)

    def read(self, path: str) -> bytes:
        return b"".join(self.open(path))

    def local_path(self, path: str) -> str | None:
        return None

    def location(self, path: str, offset: int = 0, length: int | None = None) -> str | None:
        """Where a DataNode serves these bytes (WebHDFS OPEN without following
        the redirect): the registry can send clients there directly."""
        params = {"offset": offset, "noredirect": "true"}
        if length is not None:
            params["length"] = length
        try:
            return self.client._open(self._p(path), **params).json()["Location"]
        except self._hdfs.HdfsError as err:
            if self._missing(err):
                raise NotFound(path) from None
            raise StorageError(str(err)) from None

    def open(self, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        try:  # buffer_size: the DataNode reads the block in pieces of this size (its default: 4 KiB)
            ctx = self.client.read(self._p(path), offset=offset, length=length, chunk_size=CHUNK, buffer_size=CHUNK)
            reader = ctx.__enter__()
        except self._hdfs.HdfsError as err:
            if self._missing(err):
                raise NotFound(path) from None
            raise StorageError(str(err)) from None

        def gen():
            try:
                yield from reader
            finally:
                ctx.__exit__(None, None, None)

        return gen()

    def put(self, path: str, data: bytes) -> None:
        self.put_stream(path, iter([data]))

    def _replace(self, src: str, dst: str) -> None:
        """Atomic rename over an existing ``dst`` (WebHDFS RENAME with
        ``renameoptions=OVERWRITE``, the NameNode's rename2): one round trip,
        and no moment when ``dst`` is missing."""
        try:
            self.client._rename(src, destination=dst, renameoptions="OVERWRITE")
        except self._hdfs.HdfsError as err:
            if self._missing(err):
                raise NotFound(src if "source" in str(err) else dst) from None
            raise StorageError(str(err)) from None

    def put_stream(self, path: str, chunks: Iterator[bytes]) -> int:
        # the temporary object sits beside the final one: CREATE makes the
        # directories, and the rename needs no MKDIRS (3 requests in all)
        final = self._p(path)
        tmp = tmp_name(final)
        counted = _Counting(chunks)
        try:
            self.client.write(tmp, data=counted, overwrite=True)
            self._replace(tmp, final)
        except BaseException:
            self.client.delete(tmp)
            raise
        return counted.n

    def append(self, path: str, data: bytes) -> int:
        return self.append_stream(path, iter([data]))

    def append_stream(self, path: str, chunks: Iterator[bytes]) -> int:
        """Append the chunks in one streamed WebHDFS APPEND (or CREATE, for a
        new object); nothing held whole. Returns the new size."""
        p = self._p(path)
        st = self.client.status(p, strict=False)
        counted = _Counting(chunks)
        if st is None:
            self.client.write(p, data=counted, overwrite=False)
        else:
            self.client.write(p, data=counted, append=True)
        return (int(st["length"]) if st else 0) + counted.n

    def move(self, src: str, dst: str) -> None:
        d = self._p(dst)
        try:
            self._replace(self._p(src), d)
        except NotFound:
            if self.client.status(self._p(src), strict=False) is None:
                raise NotFound(src) from None
            self.client.makedirs(posixpath.dirname(d))  # a new directory (e.g. a blob's)
            self._replace(self._p(src), d)

    def delete(self, path: str) -> None:
        if not self.client.delete(self._p(path), recursive=True):
            raise NotFound(path)

    def list(self, path: str) -> list[str]:
        try:
            return visible(self.client.list(self._p(path)))
        except self._hdfs.HdfsError as err:
            if self._missing(err) or "not a directory" in str(err).lower():
                raise NotFound(path) from None
            raise StorageError(str(err)) from None


class _Counting(io.RawIOBase):
    """A file-like over an iterator of chunks (``requests`` streams it), counting bytes."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.buf, self.n = iter(chunks), memoryview(b""), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not len(self.buf):
            try:
                self.buf = memoryview(next(self.chunks))
            except StopIteration:
                return 0
        k = min(len(b), len(self.buf))
        b[:k] = self.buf[:k]
        self.buf = self.buf[k:]  # a view: no copy of the rest of the chunk
        self.n += k
        return k
