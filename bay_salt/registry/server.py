"""Bay's registry: the OCI Distribution API (v1.1) over aiohttp.

Stateless: every request goes to storage (:mod:`bay_salt.registry.stores`), so
any number of instances behind HAProxy serve the same registry, and any
instance can take any chunk of any upload. Request bodies stream to storage
through a bounded queue (never held whole); blob GETs are sent from the file
with sendfile (filesystem storage), stream from storage (HDFS), or, with a
local blob cache (remote storage: HDFS), from the instance's disk
once storage has confirmed the blob (see :mod:`bay_salt.registry.cache`).

    bay-registry --storage file:///var/lib/bay-registry --port 5000
    bay-registry --storage hdfs://nn1:9870,nn2:9870/bay-registry \
        --cache-dir /var/cache/bay-registry --cache-size 10737418240
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import grp
import json
import logging
import os
import queue
import signal
import socket
import ssl
from collections.abc import Iterator

from aiohttp import web

from bay_salt import storage
from bay_salt.registry import auth, stores
from bay_salt.registry.cache import BlobCache
from bay_salt.registry.errors import Code, RegistryError
from bay_salt.registry.handlers.blobs import BlobHandlers
from bay_salt.registry.handlers.listings import ListingHandlers
from bay_salt.registry.handlers.manifests import ManifestHandlers
from bay_salt.registry.handlers.uploads import UploadHandlers

log = logging.getLogger("bay.registry")

QUEUE_DEPTH = 8  # chunks of the request body in flight to storage (backpressure)
FILLS = 8  # blobs copied from storage into the cache at once
LOGINS = 2  # password checks at once


class Server:
    """One registry instance: its worker pools, access control and the
    endpoints' routes; the endpoints themselves are in
    :mod:`bay_salt.registry.handlers`."""

    def __init__(self, registry: stores.Registry, workers: int = 16, redirect_blobs: bool = False,
                 cache: BlobCache | None = None, policy: auth.Policy | None = None, tls_proxied: bool = False):
        """``redirect_blobs``: answer blob GETs with a redirect to where storage
        serves the bytes (HDFS: a DataNode), so they do not pass through here
        (not with a ``cache``: then blobs are served from this instance's disk).
        ``tls_proxied``: clients reach it over TLS that a proxy in front ends
        (HAProxy on the registry node): the URLs it gives them are https."""
        self.reg = registry
        self.tls_proxied = tls_proxied
        self.policy = policy or auth.Policy()
        self.redirect_blobs = redirect_blobs and cache is None
        self.cache = cache
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="storage")
        # cache fills copy whole blobs: their own threads, so they never hold up other requests
        self.fills = concurrent.futures.ThreadPoolExecutor(max_workers=FILLS, thread_name_prefix="fill")
        # password checks (bcrypt, ~0.2 s of CPU each) in their own few threads: a flood of logins
        # waits there and never holds up pulls and pushes in the storage pool
        self.logins = concurrent.futures.ThreadPoolExecutor(max_workers=LOGINS, thread_name_prefix="login")

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def login(self, header: str | None) -> str | None:
        return await asyncio.get_running_loop().run_in_executor(self.logins, self.policy.login, header)

    async def run_fill(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.fills, fn, *args)

    async def consume(self, request: web.Request, fn, *args):
        """Run ``fn(*args, chunks)`` in a worker while the body streams in."""
        q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        done = object()

        def chunks() -> Iterator[bytes]:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.pool, lambda: fn(*args, chunks()))

        def offer(item) -> bool:
            """In a helper thread: wait for room in the queue, unless the worker has ended."""
            while not fut.done():
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    pass
            return False

        async def put(item) -> bool:
            return await loop.run_in_executor(None, offer, item)  # never blocks the event loop

        try:
            async for c in request.content.iter_chunked(storage.CHUNK):
                if not await put(c):
                    break
        except Exception as err:  # noqa: BLE001 - a broken client connection: the worker stops
            await put(err)
            raise
        finally:
            await put(done)
        return await fut

    # --- errors ---------------------------------------------------------------------
    @web.middleware
    async def errors(self, request: web.Request, handler) -> web.StreamResponse:
        """OCI errors as the spec's JSON body; a storage failure as a plain 500
        (its cause is logged, not sent)."""
        try:
            return await handler(request)
        except RegistryError as err:
            return web.json_response(err.body(), status=err.status, headers=err.headers)
        except storage.StorageError as err:
            log.error("storage: %s", err)
            return web.Response(status=500, text="storage error\n")

    # --- access ---------------------------------------------------------------------
    @staticmethod
    def _needs(request: web.Request) -> tuple[str, str, str] | None:
        """What a request needs: ``(type, name, action)``; None: any valid credentials (the base endpoint)."""
        if request.path.rstrip("/") == "/v2":
            return None
        if request.path == "/v2/_catalog":
            return ("registry", "catalog", "*")
        action = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(request.method, "push")
        return ("repository", request.match_info.get("name", ""), action)

    def _challenge(self, request: web.Request, needs: tuple[str, str, str] | None, why: str) -> RegistryError:
        scheme = "https" if request.secure or self.tls_proxied else "http"
        if self.policy.mode == "basic":
            header = f'Basic realm="{auth.SERVICE}"'
        else:
            header = f'Bearer realm="{scheme}://{request.host}/token",service="{auth.SERVICE}"'
            if needs:
                kind, name, action = needs
                actions = "pull,push" if action == "push" else action
                header += f',scope="{kind}:{name}:{actions}"'
        return RegistryError(401, Code.UNAUTHORIZED, why, headers={"WWW-Authenticate": header})

    @web.middleware
    async def access(self, request: web.Request, handler) -> web.StreamResponse:
        """Every request but the token endpoint's is checked against the policy
        (:mod:`bay_salt.registry.auth`); what it may is kept on the request."""
        if request.path == "/token":
            return await handler(request)
        needs = self._needs(request)
        header = request.headers.get("Authorization")
        if self.policy.mode == "basic":
            user = await self.login(header)
            request["may"] = lambda kind, name, action, user=user: (
                self.policy.may_list_catalog(user) if kind == "registry"
                else action in self.policy.allowed(user, name))
            authenticated = user is not None
        else:
            claims = self.policy.bearer(header)
            request["may"] = lambda kind, name, action, claims=claims: bool(claims) and auth.token_allows(
                claims, kind, name, action)
            authenticated = claims is not None
        if needs is None:
            if authenticated or self.policy.anonymous_pull:
                return await handler(request)
            raise self._challenge(request, None, "authentication required")
        if not request["may"](*needs):
            if self.policy.mode == "basic" and authenticated:
                raise RegistryError(403, Code.DENIED, "requested access to the resource is denied",
                                    {"name": needs[1], "action": needs[2]})
            raise self._challenge(request, needs, "authentication required" if not authenticated
                                  else "insufficient scope")
        return await handler(request)

    async def token(self, request: web.Request) -> web.Response:
        """The token endpoint: HTTP basic credentials (or none: anonymous) in,
        a token carrying what the user may of the requested scopes out."""
        header = request.headers.get("Authorization")
        user = await self.login(header)
        if header and user is None:
            return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": "wrong credentials"}]},
                                     status=401, headers={"WWW-Authenticate": f'Basic realm="{auth.SERVICE}"'})
        return web.json_response(self.policy.issue(user, request.query.getall("scope", [])))

    def routes(self) -> list[web.RouteDef]:
        """The distribution API's endpoints (:mod:`bay_salt.registry.handlers`); anything else is a
        plain 404 (or 405)."""
        name = "/v2/{name:.+}"
        blobs, uploads = BlobHandlers(self), UploadHandlers(self)
        manifests, listings = ManifestHandlers(self), ListingHandlers(self)
        return ([web.get("/token", self.token)] if self.policy.on else []) + [
            web.get("/v2/", listings.base), web.get("/v2", listings.base),
            web.get("/v2/_catalog", listings.catalog),
            web.post(name + "/blobs/uploads/", uploads.start),
            web.patch(name + "/blobs/uploads/{uuid}", uploads.patch),
            web.put(name + "/blobs/uploads/{uuid}", uploads.finish),
            web.get(name + "/blobs/uploads/{uuid}", uploads.status),
            web.delete(name + "/blobs/uploads/{uuid}", uploads.cancel),
            web.get(name + "/blobs/{digest}", blobs.get),  # HEAD too
            web.delete(name + "/blobs/{digest}", blobs.delete),
            web.get(name + "/manifests/{reference}", manifests.get),  # HEAD too
            web.put(name + "/manifests/{reference}", manifests.put),
            web.delete(name + "/manifests/{reference}", manifests.delete),
            web.get(name + "/tags/list", listings.tags),
            web.get(name + "/referrers/{digest}", listings.referrers),
        ]


async def _collect_garbage(app: web.Application, interval: float):
    """Online GC every ``interval`` seconds while the server runs."""
    srv: Server = app["server"]

    async def every():
        while True:
            await asyncio.sleep(interval)
            try:
                out = await srv.run(srv.reg.gc)
                log.info("gc: kept %d blobs, removed %d", out["kept"], len(out["removed"]))
            except (storage.StorageError, OSError) as err:
                log.warning("gc failed (tried again in %.0f s): %s", interval, err)

    task = asyncio.create_task(every())
    yield
    task.cancel()


def reload_policy(srv: Server, path: str) -> bool:
    """Read the access policy at ``path`` again (SIGHUP) and use it for the
    requests from now on; one whose mode differs (token, basic, none) needs
    a restart and is refused, as is one that does not parse. True if taken."""
    try:
        with open(path, encoding="utf-8") as fh:
            new = auth.Policy.from_dict(json.load(fh))
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.error("access policy %s not reloaded, the current one stays: %s", path, err)
        return False
    if new.mode != srv.policy.mode:
        log.error("access policy %s: mode %s -> %s needs a restart; the current one stays", path, srv.policy.mode,
                  new.mode)
        return False
    srv.policy = new
    log.info("access policy reloaded from %s: %d users, %d with grants", path, len(new.users), len(new.grants))
    return True


def make_app(registry: stores.Registry, redirect_blobs: bool = False, cache: BlobCache | None = None,
             gc_interval: float = 0, policy: auth.Policy | None = None, policy_file: str | None = None,
             tls_proxied: bool = False) -> web.Application:
    """The registry's web application; ``gc_interval`` > 0 runs online GC that
    often; ``policy``: who may do what (none: anyone anything), read again
    from ``policy_file`` on SIGHUP."""
    srv = Server(registry, redirect_blobs=redirect_blobs, cache=cache, policy=policy, tls_proxied=tls_proxied)
    # bodies stream; no whole-body limit applies
    middlewares = [srv.errors] + ([srv.access] if srv.policy.on else [])
    app = web.Application(client_max_size=0, middlewares=middlewares)
    app.add_routes(srv.routes())
    app["server"] = srv
    if gc_interval > 0:
        app.cleanup_ctx.append(lambda a: _collect_garbage(a, gc_interval))
    if policy_file:
        async def on_hup(a):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_policy, srv, policy_file)
        app.on_startup.append(on_hup)
    return app


def unix_listener(path: str, group: str | None = None) -> socket.socket:
    """A listening UNIX socket at ``path`` (one left by a previous run replaced),
    mode 0660: its owner and ``group`` (HAProxy's) only."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    if group:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    sock.listen(1024)
    return sock


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bay-registry", description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", required=True, help="file:///PATH or hdfs://NAMENODE:HTTPPORT[,...]/PATH")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--gc-grace", type=float, default=3600.0,
                   help="seconds an unreferenced blob is kept (a push in flight may still reference it)")
    p.add_argument("--gc-interval", type=float, default=0, help="run online GC this often (seconds; 0: never)")
    p.add_argument("--redirect-blobs", action="store_true",
                   help="send blob GETs to where storage serves them (HDFS: the DataNode), not through this server"
                        " (ignored with --cache-dir)")
    p.add_argument("--cache-dir", help="keep blobs read from remote storage on this disk and serve them from here")
    p.add_argument("--cache-size", type=int, default=10 << 30, help="bytes the cache may hold (default 10 GiB)")
    p.add_argument("--auth-file", help="who may do what: a JSON policy (bay_salt.registry.auth); none: anyone anything")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM; with --tls-key)")
    p.add_argument("--tls-key", help="the certificate's key (PEM)")
    p.add_argument("--unix-socket", help="listen on this UNIX socket instead of --host/--port (the proxy in front "
                                         "reaches it without TCP)")
    p.add_argument("--unix-socket-group", help="the socket's group (mode 0660: its owner and this group only)")
    p.add_argument("--tls-proxied", action="store_true",
                   help="plain HTTP here, TLS ended by a proxy in front (HAProxy): the URLs given are https")
    args = p.parse_args(argv)
    # until the reload handler is in place a SIGHUP (systemctl reload) must not end the process
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("hdfs").setLevel(logging.WARNING)  # a line for every WebHDFS call otherwise
    reg = stores.Registry(storage.from_url(args.storage), gc_grace=args.gc_grace)
    cache = BlobCache(args.cache_dir, args.cache_size) if args.cache_dir else None
    policy = None
    if args.auth_file:
        with open(args.auth_file, encoding="utf-8") as fh:
            policy = auth.Policy.from_dict(json.load(fh))
    ssl_context = None
    if args.tls_cert:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    app = make_app(reg, redirect_blobs=args.redirect_blobs, cache=cache, gc_interval=args.gc_interval,
                   policy=policy, policy_file=args.auth_file, tls_proxied=args.tls_proxied)
    if args.unix_socket:
        web.run_app(app, sock=unix_listener(args.unix_socket, args.unix_socket_group), access_log=None)
    else:
        web.run_app(app, host=args.host, port=args.port, access_log=None, ssl_context=ssl_context)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
