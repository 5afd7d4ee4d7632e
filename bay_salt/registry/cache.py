"""A registry instance's local cache of blobs read from remote storage (HDFS).

Blobs are content-addressed and never change, so a copy on the instance's
own disk is as good as the original for as long as storage still has the
blob *and* the repository still links it. The server checks both in storage
on every request (two NameNode lookups) before it serves the local copy, so a
deleted or garbage-collected blob is never served from here. The cache is
not state: wiping it changes nothing but speed, and any instance still takes
any request.

- filled on the first full GET of a blob by a worker that copies it from
  storage into a temporary file at storage's pace, not a client's; that GET
  and any others of the blob meanwhile follow the file as it grows and are
  sent from it with sendfile: one read from storage serves twenty clients,
  and none waits for another to finish;
- nothing partial or wrong is ever kept or completed: the file is renamed
  into place only if it is whole and its digest matches, and the last byte
  of a blob goes to clients only after that check (a failed fill cuts their
  responses short, which every client takes as a failed download);
- bounded: past ``max_bytes`` the least recently served blobs are evicted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import BinaryIO

from bay_salt.registry.reference import check_digest

log = logging.getLogger("bay.registry.cache")


class BlobCache:
    def __init__(self, root: str, max_bytes: int):
        self.root = os.path.abspath(root)
        self.max_bytes = max_bytes
        self._filling: dict[str, Fill] = {}
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
    def fill(self, digest: str, size: int, chunks: Callable[[], Iterable[bytes]],
             run: Callable[..., Awaitable]) -> Fill:
        """The fill of ``digest`` in progress, or one started now: ``run(fn, *args)``
        runs it in a worker (storage reads block), reading ``chunks()``."""
        fill = self._filling.get(digest)
        if fill is None:
            fill = self._filling[digest] = Fill(self, digest, size)
            fill.task = asyncio.ensure_future(run(fill.run, chunks))
            fill.task.add_done_callback(fill._task_ended)
        return fill

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


class FillFailed(Exception):
    """The fill ended before the whole blob was written and verified."""


class Fill:
    """One blob being copied from storage into the cache (:meth:`run`, in a
    worker thread) while requests on the event loop send what is written so
    far (:meth:`open`, :meth:`available`)."""

    def __init__(self, cache: BlobCache, digest: str, size: int):
        self.cache, self.digest, self.size = cache, digest, size
        self.final = cache.path(digest)
        alg, self.expected = check_digest(digest)
        self.h = hashlib.new(alg)
        os.makedirs(os.path.dirname(self.final), exist_ok=True)
        self.path = f"{self.final}.tmp-{secrets.token_hex(6)}"  # the final name once verified
        self.fh = open(self.path, "wb")  # noqa: SIM115 - closed when the fill ends
        self.n = 0  # bytes written and flushed (readable by senders)
        self.done = self.ok = False
        self.task: asyncio.Future | None = None
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._rename = threading.Lock()

    # in the worker -----------------------------------------------------------------
    def run(self, chunks: Callable[[], Iterable[bytes]]) -> None:
        try:
            for chunk in chunks():
                self.fh.write(chunk)
                self.fh.flush()
                self.h.update(chunk)
                self.n += len(chunk)
                self._loop.call_soon_threadsafe(self._changed.set)
            self.fh.close()
            if self.n == self.size and self.h.hexdigest() == self.expected:
                with self._rename:
                    os.replace(self.path, self.final)
                    self.path = self.final
                self.ok = True
                self.cache._added(self.size)
            else:
                log.warning("cache fill of %s discarded: %d of %d bytes, digest %s", self.digest, self.n,
                            self.size, "matches" if self.h.hexdigest() == self.expected else "does not match")
        except Exception as err:  # noqa: BLE001 - storage or disk: the senders are told, nothing is kept
            log.warning("cache fill of %s failed after %d of %d bytes: %s", self.digest, self.n, self.size, err)
        finally:
            self.fh.close()
            if not self.ok:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            self.done = True
            self._loop.call_soon_threadsafe(self._ended)

    def _task_ended(self, task: asyncio.Future) -> None:
        """The worker never ran or never got to its end (an executor shut
        down, a cancelled task): the senders must not wait for it."""
        if not self.done and (task.cancelled() or task.exception() is not None):
            log.warning("cache fill of %s did not run: %s", self.digest,
                        "cancelled" if task.cancelled() else task.exception())
            self.done = True
            self.fh.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self._ended()

    def _ended(self) -> None:
        if self.cache._filling.get(self.digest) is self:
            del self.cache._filling[self.digest]
        self._changed.set()

    # on the event loop -------------------------------------------------------------
    def open(self) -> BinaryIO:
        """A reader of the file (open before the fill renames or drops it)."""
        with self._rename:
            return open(self.path, "rb")  # noqa: SIM115 - the caller closes it

    async def available(self, sent: int) -> int:
        """How far the blob may be sent, once that is past ``sent``: what is
        written so far, all of it only once verified. FillFailed: never."""
        while True:
            self._changed.clear()
            limit = self.size if self.ok else min(self.n, self.size - 1)
            if limit > sent:
                return limit
            if self.done:
                raise FillFailed(self.digest)
            await self._changed.wait()
