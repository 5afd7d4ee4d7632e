"""Storage drivers of Bay's registry, behind one small interface.

Paths are ``/``-separated and relative to the driver's root; the registry
builds every path itself from validated names and digests (see
:mod:`bay_salt.registry.layout`), and :func:`check_path` refuses anything
else (``..``, absolute, empty parts) once more here.

Writes of whole objects are atomic (write a temporary object beside the final
one, then rename), so a crash never leaves a partial object visible under its
final name, and listings never show temporary objects: their names carry
:data:`TMP_MARK`, which no repository name, tag or digest can contain.
Optional features (a local file to send with sendfile, a URL where storage
serves an object itself) are part of the interface: a driver without them
answers None. Both drivers are synchronous; the server runs them in a thread
pool.
"""

from __future__ import annotations

import io
import os
import posixpath
import secrets
import shutil
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


def from_url(url: str, user: str | None = None) -> Driver:
    """``file:///var/lib/bay-registry`` or ``hdfs://nn1:9870,nn2:9870/bay-registry``
    (WebHDFS ports; ``user``: the HDFS user, default $USER)."""
    if url.startswith("file://"):
        return LocalDriver(url[len("file://"):])
    if url.startswith("hdfs://"):
        hosts, _, root = url[len("hdfs://"):].partition("/")
        return HDFSDriver([f"http://{h}" for h in hosts.split(",")], "/" + root, user=user)
    if url.startswith("/"):
        return LocalDriver(url)
    raise StorageError(f"storage {url!r}: expected file:///PATH or hdfs://NAMENODE:PORT[,...]/PATH")

