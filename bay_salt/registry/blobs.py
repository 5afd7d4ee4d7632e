"""Blobs: content by digest, linked into the repositories that hold them.
A blob is served from a repository only while it is linked there; a link's
mtime is its last use (online GC keeps recently used blobs)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from bay_salt.registry import layout
from bay_salt.registry.errors import RegistryError, blob_unknown
from bay_salt.storage import Driver, NotFound


@dataclass
class Blob:
    digest: str
    size: int


class BlobStore:
    def __init__(self, driver: Driver, gc_grace: float):
        self.d = driver
        self.gc_grace = gc_grace

    def size(self, name: str, digest: str) -> int:
        """Size of a blob of repository ``name``; BLOB_UNKNOWN if not linked there."""
        try:
            self.d.stat(layout.layer(name, digest))
            return self.d.stat(layout.blob(digest)).size
        except NotFound:
            raise blob_unknown(digest) from None

    def exists(self, digest: str) -> bool:
        try:
            self.d.stat(layout.blob(digest))
            return True
        except NotFound:
            return False

    def touch(self, name: str, digest: str) -> None:
        """Refresh the repository's link to a blob (online GC keeps blobs with a recent link)."""
        path = layout.layer(name, digest)
        try:
            if time.time() - self.d.stat(path).mtime < self.gc_grace / 4:
                return
        except NotFound:
            pass
        self.link(name, digest)

    def link(self, name: str, digest: str) -> None:
        self.d.put(layout.layer(name, digest), digest.encode())

    def stream(self, digest: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The blob's bytes. The caller has checked it is linked in its
        repository (:meth:`size`); deleted since: BLOB_UNKNOWN."""
        try:
            return self.d.open(layout.blob(digest), offset, length)
        except NotFound:
            raise blob_unknown(digest) from None

    def read(self, digest: str) -> bytes:
        return self.d.read(layout.blob(digest))

    def file(self, digest: str) -> str | None:
        """The blob's file on this machine (filesystem storage), or None."""
        return self.d.local_path(layout.blob(digest))

    def location(self, digest: str, offset: int = 0, length: int | None = None) -> str | None:
        """A URL serving the blob's bytes straight from storage (HDFS: a
        DataNode), or None if the driver cannot."""
        try:
            return self.d.location(layout.blob(digest), offset, length)
        except NotFound:
            raise blob_unknown(digest) from None

    def delete(self, name: str, digest: str) -> None:
        """Unlink the blob from ``name`` (GC removes its content once no repository uses it)."""
        self.size(name, digest)
        self.d.delete(layout.layer(name, digest))

    def mount(self, name: str, digest: str, source: str | None) -> bool:
        """Cross-repository mount: link ``digest`` of ``source`` into ``name``
        (``source`` None: any repository's); False if not there."""
        if source:
            try:
                self.size(source, digest)
            except RegistryError:  # an unknown or invalid source mounts nothing
                return False
        elif not self.exists(digest):
            return False
        self.link(name, digest)
        return True

    def commit(self, src: str, digest: str) -> None:
        """Move a checked upload into place (content-addressed: if the blob is
        already there it is the same content, and the upload is left to be removed)."""
        if not self.exists(digest):
            self.d.move(src, layout.blob(digest))

    def put_small(self, digest: str, body: bytes) -> None:
        """Store a small blob (a manifest) given whole, unless it is there."""
        if not self.exists(digest):
            self.d.put(layout.blob(digest), body)
