"""What the registry lists: the base endpoint (``/v2/``), a repository's
tags, the catalog and a manifest's referrers, paginated with ``n`` and
``last`` as the spec says."""

from __future__ import annotations

import json

from aiohttp import web

from bay_salt.registry import reference
from bay_salt.registry.errors import Code, RegistryError
from bay_salt.registry.handlers import Handlers


class ListingHandlers(Handlers):
    async def base(self, request: web.Request) -> web.Response:
        return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})


    @staticmethod
    def _page(items: list[str], request: web.Request, path: str) -> tuple[list[str], dict]:
        q = request.query
        if "last" in q:
            items = [i for i in items if i > q["last"]]
        headers = {}
        if "n" in q:
            try:
                n = int(q["n"])
            except ValueError:
                # no OCI error code fits (the spec allows 14): a plain 400
                raise web.HTTPBadRequest(text=f"invalid n: {q['n'][:20]!r}\n") from None
            if n < len(items) and n > 0:
                headers["Link"] = f'<{path}?n={n}&last={items[n - 1]}>; rel="next"'
            items = items[:max(n, 0)]
        return items, headers

    async def tags(self, request: web.Request) -> web.Response:
        name = self.name(request)
        if not await self.run(self.reg.repo_exists, name):
            raise RegistryError(404, Code.NAME_UNKNOWN, "repository name not known to registry", {"name": name})
        items, headers = self._page(await self.run(self.reg.tags.list, name), request, f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": items}, headers=headers)

    async def catalog(self, request: web.Request) -> web.Response:
        items, headers = self._page(await self.run(self.reg.catalog), request, "/v2/_catalog")
        return web.json_response({"repositories": items}, headers=headers)

    async def referrers(self, request: web.Request) -> web.Response:
        name, digest = self.name(request), request.match_info["digest"]
        reference.check_digest(digest)
        art = request.query.get("artifactType")
        descs = await self.run(self.reg.referrers.list, name, digest, art)
        headers = {"OCI-Filters-Applied": "artifactType"} if art else {}
        return web.Response(status=200, body=json.dumps({"schemaVersion": 2, "mediaType": reference.OCI_INDEX,
                                                          "manifests": descs}).encode(),
                            headers={**headers, "Content-Type": reference.OCI_INDEX})
