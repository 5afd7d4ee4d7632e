"""Manifests: ``GET``/``HEAD``/``PUT``/``DELETE /v2/NAME/manifests/REFERENCE``
(a tag or a digest); a body over :data:`bay_salt.registry.reference.MAX_MANIFEST`
is refused while it streams in."""

from __future__ import annotations

from aiohttp import web

from bay_salt.registry import reference
from bay_salt.registry.errors import Code, RegistryError
from bay_salt.registry.handlers import Handlers


class ManifestHandlers(Handlers):
    async def get(self, request: web.Request) -> web.Response:
        name, ref = self.name(request), request.match_info["reference"]
        body, media, digest = await self.run(self.reg.manifests.get, name, ref)
        headers = {"Docker-Content-Digest": digest, "Content-Type": media}
        if request.method == "HEAD":
            return web.Response(status=200, headers={**headers, "Content-Length": str(len(body))})
        return web.Response(status=200, body=body, headers=headers)

    async def delete(self, request: web.Request) -> web.Response:
        await self.run(self.reg.manifests.delete, self.name(request), request.match_info["reference"])
        return web.Response(status=202)

    async def put(self, request: web.Request) -> web.Response:
        name, ref = self.name(request), request.match_info["reference"]
        if (request.content_length or 0) > reference.MAX_MANIFEST:
            raise RegistryError(413, Code.SIZE_INVALID, f"manifest larger than {reference.MAX_MANIFEST} bytes",
                                {"size": request.content_length})
        body = bytearray()
        async for c in request.content.iter_chunked(1 << 16):
            body += c
            if len(body) > reference.MAX_MANIFEST:
                raise RegistryError(413, Code.SIZE_INVALID, f"manifest larger than {reference.MAX_MANIFEST} bytes")
        body = bytes(body)
        digest, subject = await self.run(self.reg.manifests.put, name, ref, body,
                                         request.headers.get("Content-Type", ""))
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest,
                   "Content-Length": "0"}
        if subject:
            headers["OCI-Subject"] = subject
        return web.Response(status=201, headers=headers)
