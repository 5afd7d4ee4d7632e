"""The Distribution API's endpoints, one module per area (as Distribution's
own ``registry/handlers``): :mod:`.blobs` (pulls of blobs), :mod:`.uploads`
(pushes of blobs), :mod:`.manifests`, :mod:`.listings` (the base endpoint,
tags, the catalog, referrers). Each is a class of handlers over the
:class:`bay_salt.registry.server.Server` that owns the worker pools, the
stores and access control."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from bay_salt.registry import reference
from bay_salt.registry.cache import BlobCache
from bay_salt.registry.stores import Registry


class Server(Protocol):
    """What the handlers use of their server (:class:`bay_salt.registry.server.Server`)."""

    reg: Registry
    cache: BlobCache | None
    redirect_blobs: bool

    async def run(self, fn, *args): ...
    async def run_fill(self, fn, *args): ...
    async def consume(self, request: web.Request, fn, *args): ...


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
