"""The Distribution API's endpoints, one module per area (as Distribution's
own ``registry/handlers``): :mod:`.blobs` (pulls of blobs), :mod:`.uploads`
(pushes of blobs), :mod:`.manifests`, :mod:`.listings` (the base endpoint,
tags, the catalog, referrers). Each is a class of handlers over the
:class:`bay_salt.registry.server.Server` that owns the worker pools, the
stores and access control."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from bay_salt.registry import reference

if TYPE_CHECKING:
    from bay_salt.registry.server import Server
    from bay_salt.registry.stores import Registry


class Handlers:
    """What every area's handlers share: the server, its stores and its storage pool."""

    def __init__(self, srv: Server):
        self.srv = srv

    @property
    def reg(self) -> Registry:
        return self.srv.reg

    async def run(self, fn, *args):
        """``fn(*args)`` in the server's storage pool (storage calls block)."""
        return await self.srv.run(fn, *args)

    @staticmethod
    def name(request: web.Request) -> str:
        """The request's repository name, checked against the grammar (no path traversal)."""
        return reference.check_name(request.match_info["name"])
