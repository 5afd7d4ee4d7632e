"""Pushes of blobs: ``POST /v2/NAME/blobs/uploads/`` (a new upload, a
monolithic one with ``digest``, or a cross-repository ``mount``), then
``PATCH`` chunks, ``PUT`` to finish, ``GET`` its progress, ``DELETE`` to
cancel. Bodies stream to storage (:meth:`bay_salt.registry.server.Server.consume`)."""

from __future__ import annotations

import re

from aiohttp import web

from bay_salt.registry import reference
from bay_salt.registry.errors import Code, RegistryError
from bay_salt.registry.handlers import Handlers


class UploadHandlers(Handlers):
    def _headers(self, name: str, uuid: str, size: int) -> dict:
        return {"Location": f"/v2/{name}/blobs/uploads/{uuid}", "Docker-Upload-UUID": uuid,
                "Range": f"0-{max(0, size - 1)}" if size else "0-0", "Content-Length": "0"}

    async def start(self, request: web.Request) -> web.Response:
        name, q = self.name(request), request.query
        source = q.get("from")
        may = request.get("may")
        # with access control, a mount needs pull on its source (else: an upload, as the spec allows)
        mountable = may is None or (source and may("repository", source, "pull"))
        if "mount" in q and mountable:
            digest = q["mount"]
            reference.check_digest(digest)
            if await self.run(self.reg.blobs.mount, name, digest, source):
                return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                                         "Docker-Content-Digest": digest})
        if "digest" in q:  # monolithic: POST with the whole blob
            digest = q["digest"]
            reference.check_digest(digest)
            blob = await self.srv.consume(request, self.reg.uploads.put, name, digest)
            return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{blob.digest}",
                                                     "Docker-Content-Digest": blob.digest})
        uuid = await self.run(self.reg.uploads.start, name)
        return web.Response(status=202, headers=self._headers(name, uuid, 0))

    @staticmethod
    def _range_start(request: web.Request) -> int | None:
        """Where a chunk says it starts (Content-Range), checked against its length."""
        cr = request.headers.get("Content-Range")
        if not cr:
            return None
        m = re.match(r"^(?:bytes )?(\d+)-(\d+)$", cr.strip())
        if not m:
            raise RegistryError(416, Code.BLOB_UPLOAD_INVALID, "invalid Content-Range", {"range": cr[:100]})
        start = int(m[1])
        length = request.headers.get("Content-Length")
        if length is not None and int(m[2]) - start + 1 != int(length):
            raise RegistryError(416, Code.BLOB_UPLOAD_INVALID, "Content-Range does not match Content-Length",
                                {"range": cr[:100], "length": length})
        return start

    async def patch(self, request: web.Request) -> web.Response:
        name, uuid = self.name(request), request.match_info["uuid"]
        size = await self.srv.consume(request, self.reg.uploads.append, name, uuid, self._range_start(request))
        return web.Response(status=202, headers=self._headers(name, uuid, size))

    async def finish(self, request: web.Request) -> web.Response:
        name, uuid = self.name(request), request.match_info["uuid"]
        digest = request.query.get("digest")
        reference.check_digest(digest or "")
        if request.content_length or request.headers.get("Transfer-Encoding"):
            await self.srv.consume(request, self.reg.uploads.append, name, uuid, self._range_start(request))
        blob = await self.run(self.reg.uploads.finish, name, uuid, digest)
        return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{blob.digest}",
                                                 "Docker-Content-Digest": blob.digest, "Content-Length": "0"})

    async def status(self, request: web.Request) -> web.Response:
        name, uuid = self.name(request), request.match_info["uuid"]
        size = await self.run(self.reg.uploads.size, name, uuid)
        return web.Response(status=204, headers=self._headers(name, uuid, size))

    async def cancel(self, request: web.Request) -> web.Response:
        await self.run(self.reg.uploads.cancel, self.name(request), request.match_info["uuid"])
        return web.Response(status=204)
