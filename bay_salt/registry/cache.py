"""A registry instance's local cache of blobs read from remote storage (HDFS).

Blobs are content-addressed and never change, so a copy on the instance's
own disk is as good as the original for as long as storage still has the
blob *and* the repository still links it. The server checks both in storage
on every request (two NameNode lookups) before it serves the local copy, so a
deleted or garbage-collected blob is never served from here. The cache is
not state: wiping it changes nothing but speed, and any instance still takes
any request.

- filled on the first full GET of a blob: the bytes stream to that client
  and to a temporary file at once; the file is renamed into place only if
  its digest matches, so nothing partial or wrong is ever served from here;
- concurrent GETs of a blob being filled wait for that fill (one read from
  storage, not twenty), then are served from the file (sendfile);
- bounded: past ``max_bytes`` the least recently served blobs are evicted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import threading

from bay_salt.registry.core import check_digest

log = logging.getLogger("bay.registry.cache")


class BlobCache:
    def __init__(self, root: str, max_bytes: int):
        self.root = os.path.abspath(root)
        self.max_bytes = max_bytes
        self._filling: dict[str, asyncio.Event] = {}
        self._lock = threading.Lock()
        os.makedirs(self.root, exist_ok=True)
        self.used = 0
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                p = os.path.join(dirpath, f)
                if ".tmp-" in f:  # a fill cut short by a crash
                    os.unlink(p)
                else:
                    self.used += os.path.getsize(p)

    def path(self, digest: str) -> str:
        alg, hexpart = check_digest(digest)  # refuses anything but a valid digest
        return os.path.join(self.root, alg, hexpart)

    def get(self, digest: str, size: int) -> str | None:
        """The cached file of ``digest`` if it holds ``size`` bytes (marked as used now)."""
        p = self.path(digest)
        try:
            if os.path.getsize(p) != size:
                return None
            os.utime(p)  # least recently served goes first
            return p
        except FileNotFoundError:
            return None

    # --- filling -------------------------------------------------------------------
    async def claim(self, digest: str) -> bool:
        """True: the caller fills ``digest`` (then calls :meth:`release`).
        False: another request was filling it and has finished (look again)."""
        ev = self._filling.get(digest)
        if ev is None:
            self._filling[digest] = asyncio.Event()
            return True
        await ev.wait()
        return False

    def release(self, digest: str) -> None:
        ev = self._filling.pop(digest, None)
        if ev is not None:
            ev.set()

    def writer(self, digest: str) -> "Fill":
        return Fill(self, digest)

    def _added(self, size: int) -> None:
        with self._lock:
            self.used += size
            if self.used <= self.max_bytes:
                return
            entries = []
            for dirpath, _, files in os.walk(self.root):
                for f in files:
                    if ".tmp-" not in f:
                        p = os.path.join(dirpath, f)
                        try:
                            st = os.stat(p)
                        except FileNotFoundError:
                            continue
                        entries.append((st.st_mtime, st.st_size, p))
            for _, sz, p in sorted(entries):
                if self.used <= self.max_bytes:
                    break
                try:
                    os.unlink(p)
                    self.used -= sz
                except FileNotFoundError:
                    pass


class Fill:
    """The temporary file of one fill: write chunks as they go to the client;
    :meth:`commit` keeps it only if the bytes hash to the digest."""

    def __init__(self, cache: BlobCache, digest: str):
        self.cache, self.digest = cache, digest
        self.final = cache.path(digest)
        alg, self.expected = check_digest(digest)
        self.h = hashlib.new(alg)
        os.makedirs(os.path.dirname(self.final), exist_ok=True)
        self.tmp = f"{self.final}.tmp-{secrets.token_hex(6)}"
        self.fh = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit/abort
        self.n = 0

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        self.h.update(chunk)
        self.n += len(chunk)

    def commit(self, size: int) -> bool:
        self.fh.close()
        if self.n != size or self.h.hexdigest() != self.expected:
            log.warning("cache fill of %s discarded: %d of %d bytes, digest %s", self.digest, self.n, size,
                        "matches" if self.h.hexdigest() == self.expected else "does not match")
            os.unlink(self.tmp)
            return False
        os.replace(self.tmp, self.final)
        self.cache._added(size)
        return True

    def abort(self) -> None:
        self.fh.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
