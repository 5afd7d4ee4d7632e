"""Pulls of blobs: ``GET``/``HEAD``/``DELETE /v2/NAME/blobs/DIGEST``, with
ranges; sent by sendfile from the file (filesystem storage), from the local
blob cache (remote storage, :mod:`bay_salt.registry.cache`), by a redirect to
where storage serves them, or streamed from storage."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Iterator

from aiohttp import web

from bay_salt import storage
from bay_salt.registry import reference
from bay_salt.registry.cache import FillFailed
from bay_salt.registry.errors import Code, RegistryError
from bay_salt.registry.handlers import Handlers

log = logging.getLogger("bay.registry")


def _read_file(path: str, start: int, length: int, block: int = 4 * storage.CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        while length > 0:
            data = f.read(min(block, length))
            if not data:
                raise OSError(f"{path}: shorter than its size")
            length -= len(data)
            yield data


class BlobHandlers(Handlers):
    async def get(self, request: web.Request) -> web.StreamResponse:
        name, digest = self.name(request), request.match_info["digest"]
        reference.check_digest(digest)
        size = await self.run(self.reg.blobs.size, name, digest)
        if request.method == "HEAD":
            await self.run(self.reg.blobs.touch, name, digest)  # a push checking for it: online GC keeps it
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream",
                   "Accept-Ranges": "bytes"}
        start, end, status = 0, size - 1, 200
        rng = request.headers.get("Range")
        if rng:
            m = re.match(r"^bytes=(\d*)-(\d*)$", rng.strip())
            if not m or (not m[1] and not m[2]):
                raise RegistryError(416, Code.BLOB_UNKNOWN, "invalid range", {"range": rng[:100]})
            if m[1]:
                start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
            else:
                start, end = max(0, size - int(m[2])), size - 1
            if start > end or start >= size:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        local = self.reg.blobs.file(digest) if request.method == "GET" and size else None
        if local and not request.secure:  # filesystem storage: sendfile
            return self._send_file(local, digest)
        if local is None and self.srv.cache is not None and request.method == "GET" and size:
            if request.secure:  # a cached blob is streamed below
                local = self.srv.cache.get(digest, size)
            if local is None:
                served = await self._from_cache(request, digest, size, rng, headers)
                if served is not None:
                    return served
        if self.srv.redirect_blobs and request.method == "GET" and length and not rng:  # ranges: served here (206)
            url = await self.run(self.reg.blobs.location, digest, start, length)
            if url:
                return web.Response(status=307, headers={"Location": url, "Docker-Content-Digest": digest})
        headers["Content-Length"] = str(length)
        resp = web.StreamResponse(status=status, headers=headers)
        if request.method == "HEAD":
            resp.content_length = length
            await resp.prepare(request)
            return resp
        await resp.prepare(request)
        if local:  # over TLS there is no sendfile: big reads, few writes (asyncio's fallback is 20x slower)
            request.transport.set_write_buffer_limits(high=4 * storage.CHUNK)
            await self._pump(resp, _read_file(local, start, length))
        else:
            await self._pump(resp, await self.run(self.reg.blobs.stream, digest, start, length))
        return resp

    async def _pump(self, resp: web.StreamResponse, chunks: Iterator[bytes]) -> None:
        """Send every chunk (each read in a worker: storage reads block) and end the body."""
        while True:
            chunk = await self.run(next, chunks, None)
            if chunk is None:
                break
            await resp.write(chunk)
        await resp.write_eof()

    @staticmethod
    def _send_file(path: str, digest: str) -> web.FileResponse:
        # sendfile; Range answered by aiohttp (206 with Content-Range, 416 past the end)
        return web.FileResponse(path, headers={"Docker-Content-Digest": digest,
                                               "Content-Type": "application/octet-stream"})

    async def _from_cache(self, request: web.Request, digest: str, size: int, rng: str | None,
                          headers: dict) -> web.StreamResponse | None:
        """Serve the blob from the local cache (storage has just confirmed it
        is there and linked): from its file, or, for a full GET of a blob not
        cached yet, following the cache's fill of it; None: serve it from
        storage (a range of a blob not cached yet, or a fill that could not
        start)."""
        cached = self.srv.cache.get(digest, size)
        if cached is not None:
            return self._send_file(cached, digest)
        if rng:
            return None
        try:
            fill = self.srv.cache.fill(digest, size, lambda: self.reg.blobs.stream(digest, 0, size), self.srv.run_fill)
            reader = fill.open()
        except OSError as err:  # the cache's disk: serve from storage meanwhile
            log.warning("blob cache unusable for %s: %s", digest, err)
            return None
        with reader:
            try:
                limit = await fill.available(0)
            except FillFailed:
                return None  # storage's own answer (its error, or the bytes) from the usual path
            resp = web.StreamResponse(status=200, headers=dict(headers, **{"Content-Length": str(size)}))
            await resp.prepare(request)
            sent = 0
            while True:
                if request.transport is None:
                    raise ConnectionResetError("client went away")
                await self._send_part(request, resp, reader, sent, limit - sent)
                sent = limit
                if sent == size:
                    break
                try:
                    limit = await fill.available(sent)
                except FillFailed:  # cut short, never a whole wrong body (the fill has logged why)
                    if request.transport is not None:
                        request.transport.close()
                    raise ConnectionResetError(f"cache fill of {digest} failed") from None
        await resp.write_eof()
        return resp

    async def _send_part(self, request: web.Request, resp: web.StreamResponse, f, offset: int, count: int) -> None:
        """``count`` bytes of file ``f`` from ``offset``: sendfile, or over TLS big reads and writes."""
        if not request.secure:
            await asyncio.get_running_loop().sendfile(request.transport, f, offset, count)
            return
        request.transport.set_write_buffer_limits(high=4 * storage.CHUNK)
        while count > 0:
            data = await self.run(os.pread, f.fileno(), min(count, 4 * storage.CHUNK), offset)
            if not data:
                raise OSError(f"{f.name}: shorter than expected")
            await resp.write(data)
            offset, count = offset + len(data), count - len(data)

    async def delete(self, request: web.Request) -> web.Response:
        await self.run(self.reg.blobs.delete, self.name(request), request.match_info["digest"])
        return web.Response(status=202)
