"""bay-logs: every node's log daemon.

* its HTTPS endpoint (aiohttp, like the registry) serves the output of the node's Bay containers, live
  (from Docker) or kept after the container was removed
  (:mod:`.kept`), with ``tail``, ``since`` and ``follow``; a bearer token
  the master signed must cover the service (:mod:`.tokens`);
* it removes kept output by age and by the node's cap (every ``gc_interval``);
* its relay (:mod:`.relay`) takes services' log lines and writes them to Kafka.

    GET /v1/logs/SERVICE/GROUP              the group's containers here: live and kept (JSON)
    GET /v1/logs/SERVICE/GROUP/INSTANCE     one instance's output (text)
        ?tail=N&since=T&follow=1&timestamps=1

    bay-logs [--config /etc/bay/logs.json]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import json
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass, field

from aiohttp import web

from bay_salt.logs import kept, tokens
from bay_salt.logs.slots import Slots
from bay_salt.model import names
from bay_salt.util import retry

log = logging.getLogger("bay.logs")


@dataclass
class Config:
    node: str
    dir: str
    retention: float
    node_max_bytes: int
    gc_interval: float = 60.0
    #: the endpoint: HTTPS on ``address`` with the node's certificate (no certificate: loopback, plain HTTP)
    address: str = "127.0.0.1"
    port: int = 8095
    cert_file: str = ""
    key_file: str = ""
    token_public_key: str = ""
    #: the relay (port 0: none): on ``relay_host`` (empty: Docker's bridge gateway)
    relay_port: int = 0
    relay_host: str = ""
    relay_buffer: int = 100_000
    #: containers' stdout and stderr through the relay too (label ``stream``)
    ship_output: bool = False
    kafka: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> Config:
        with open(path, encoding="utf-8") as fh:
            return cls(**json.load(fh))


#: seconds a client has to complete its TLS handshake, then to send its request
HANDSHAKE, REQUEST_WAIT = 5.0, 15.0
#: connections served at once, in all and from one address; more are closed when accepted
MAX_CONNECTIONS, PER_SOURCE = 64, 8
#: lines of kept output read (in a worker) per chunk sent
BATCH = 1000


def _flag(q, name: str) -> bool:
    return q.get(name, "0") in ("1", "true", "yes")


class Endpoint:
    """The log endpoint's requests (aiohttp). What blocks (Docker, the kept
    files) runs in a pool of :data:`MAX_CONNECTIONS` workers, so a follow
    stream holds a worker, never the event loop."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=MAX_CONNECTIONS, thread_name_prefix="logs")
        self._docker = None
        #: connections whose request has come (the others are closed after REQUEST_WAIT seconds)
        self.requested: weakref.WeakSet = weakref.WeakSet()

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    @staticmethod
    def _json(status: int, body) -> web.Response:
        resp = web.json_response(body, status=status)
        resp.force_close()
        return resp

    async def get(self, request: web.Request) -> web.StreamResponse:
        self.requested.add(request.transport)
        path = request.raw_path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        prefix = [p for p in names.LOG_URL_PREFIX.split("/") if p]
        if parts[: len(prefix)] != prefix or len(parts) not in (len(prefix) + 2, len(prefix) + 3):
            return self._json(404, {"error": f"no such path {path}; GET {names.LOG_URL_PREFIX}/SERVICE/GROUP"
                                             "[/INSTANCE]"})
        rest = parts[len(prefix):]
        try:
            kept.check_name(*rest)
        except ValueError as err:
            return self._json(400, {"error": str(err)})
        try:
            claims = tokens.check(self.cfg.token_public_key, request.headers.get("Authorization"), rest[0])
        except tokens.Refused as err:
            return self._json(err.status, {"error": str(err)})
        q = request.query
        try:
            tail = int(q["tail"]) if q.get("tail") not in (None, "", "all") else None
            since = kept.parse_since(q["since"]) if q.get("since") else None
        except ValueError as err:
            return self._json(400, {"error": str(err)})
        if len(rest) == 2:
            return self._json(200, await self.run(self.listing, *rest))
        return await self.output(request, *rest, tail=tail, since=since, follow=_flag(q, "follow"),
                                 timestamps=_flag(q, "timestamps"), expires=float(claims["exp"]))

    def _live(self, service: str, group: str, instance: str | None = None) -> list:
        import docker

        try:
            if self._docker is None:
                self._docker = docker.from_env(timeout=30)
            return self._docker.containers.list(all=True, filters={"label": [
                f"{names.LABEL_SERVICE}={service}", f"{names.LABEL_GROUP}={group}",
                *([f"{names.LABEL_INSTANCE}={instance}"] if instance else [])]})
        except docker.errors.DockerException as err:
            log.warning("docker: %s", err)
            return []

    def listing(self, service: str, group: str) -> dict:
        live = [{"instance": c.labels.get(names.LABEL_INSTANCE), "container": c.name, "status": c.status}
                for c in self._live(service, group)]
        return {"node": self.cfg.node, "live": live,
                "kept": [k.to_dict() for k in kept.entries(self.cfg.dir, service, group)]}

    async def output(self, request: web.Request, service: str, group: str, instance: str, tail: int | None,
                     since: float | None, follow: bool, timestamps: bool, expires: float) -> web.StreamResponse:
        live = await self.run(self._live, service, group, instance)
        if live:
            return await self._stream(request, live[0], tail, since, follow, timestamps, expires)
        lines = await self.run(kept.read, self.cfg.dir, service, group, instance, tail, since, timestamps)
        if lines is not None:
            lines = iter(lines)
        if lines is None:
            return self._json(404, {"error": f"{service}.{group}/{instance}: no container and no kept output on "
                                             f"{self.cfg.node}"})
        meta = await self.run(kept.find, self.cfg.dir, service, group, instance)
        resp = await self._head(request, "kept", meta)
        while True:
            batch = await self.run(lambda: b"".join(itertools.islice(lines, BATCH)))
            if not batch:
                break
            await resp.write(batch)
        await resp.write_eof()
        return resp

    async def _head(self, request: web.Request, source: str, meta: kept.Kept | None = None) -> web.StreamResponse:
        """The start of a text body sent in chunks (a follower gets each line as it comes)."""
        headers = {"Content-Type": "text/plain; charset=utf-8", "X-Bay-Source": source, "X-Bay-Node": self.cfg.node}
        if meta is not None:
            headers.update({"X-Bay-Exit-Code": str(meta.exit_code), "X-Bay-OOM-Killed": str(meta.oom_killed).lower(),
                            "X-Bay-Finished-At": meta.finished_at})
        resp = web.StreamResponse(status=200, headers=headers)
        resp.enable_chunked_encoding()
        resp.force_close()
        await resp.prepare(request)
        return resp

    async def _stream(self, request: web.Request, container, tail, since, follow, timestamps,
                      expires: float) -> web.StreamResponse:
        import docker

        kwargs = {"stdout": True, "stderr": True, "timestamps": True, "tail": tail if tail is not None else "all"}
        if since is not None:
            kwargs["since"] = since
        try:
            chunks = await self.run(lambda: container.logs(stream=True, follow=follow, **kwargs))
        except docker.errors.DockerException as err:
            return self._json(502, {"error": f"docker: {err}"})
        resp = await self._head(request, "live")

        def close():
            closing = getattr(chunks, "close", None)
            if closing:
                closing()

        # a follow stream ends when its token does: closing Docker's stream ends the reads below
        ended = asyncio.Event()

        def expire():
            ended.set()
            self.pool.submit(close)

        timer = asyncio.get_running_loop().call_later(max(0.0, expires - time.time()), expire) if follow else None
        pending = b""
        try:
            while True:
                try:
                    chunk = await self.run(next, chunks, None)
                except Exception:  # noqa: BLE001 - the stream closed under it when the token expired
                    if not ended.is_set():
                        raise
                    break
                if chunk is None:
                    break
                pending += chunk
                *whole, pending = pending.split(b"\n")
                if whole:
                    out = [ln + b"\n" for ln in whole]
                    await resp.write(b"".join(out if timestamps else (kept.strip_time(ln) for ln in out)))
            if pending:
                await resp.write(pending if timestamps else kept.strip_time(pending))
            await resp.write_eof()
        except (ConnectionResetError, ssl.SSLError):
            pass  # the reader went away
        finally:
            if timer:
                timer.cancel()
            await self.run(close)
        return resp


class _Watched(asyncio.Protocol):
    """aiohttp's protocol for one connection, and a future set when the connection is lost."""

    def __init__(self, inner, lost: asyncio.Future):
        self.inner, self.lost = inner, lost

    def connection_made(self, transport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc) -> None:
        self.inner.connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


class Serving:
    """The endpoint running in its own thread and event loop (:func:`serve`);
    :meth:`shutdown` stops it."""

    def __init__(self, cfg: Config, ctx: ssl.SSLContext | None, address: str):
        self.cfg, self.ctx, self.address = cfg, ctx, address
        self.endpoint = Endpoint(cfg)
        self.slots = Slots(MAX_CONNECTIONS, PER_SOURCE)
        self.loop = asyncio.new_event_loop()
        self.listener = socket.create_server((address, cfg.port), backlog=128, reuse_port=False)
        self.listener.setblocking(False)
        self.thread = threading.Thread(target=self._run, name="log-endpoint", daemon=True)
        self._accepting: asyncio.Task | None = None
        self._connections: set = set()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.endpoint.get)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        self._accepting = self.loop.create_task(self._accept())
        self.loop.run_forever()

    async def _accept(self) -> None:
        """Accept here and do nothing slow: a connection past the slots is
        closed at once; each other one's TLS handshake (bounded by HANDSHAKE
        seconds) and requests go on in a task of its own."""
        while True:
            conn, peer = await self.loop.sock_accept(self.listener)
            refused = self.slots.take(peer[0])
            if refused:
                if self.slots.warn(peer[0], time.monotonic()):
                    log.warning("log endpoint: %s: closing what comes from it (warned once per %g s)", refused,
                                self.slots.warn_every)
                conn.close()
                continue
            task = self.loop.create_task(self._serve(conn, peer[0]))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _serve(self, conn: socket.socket, source: str) -> None:
        """One connection: its TLS handshake, then its request, which must
        come within REQUEST_WAIT seconds (an idle client is closed)."""
        lost = self.loop.create_future()
        try:
            transport, _ = await self.loop.connect_accepted_socket(
                lambda: _Watched(self.runner.server(), lost), conn, ssl=self.ctx,
                ssl_handshake_timeout=HANDSHAKE if self.ctx else None,
                ssl_shutdown_timeout=HANDSHAKE if self.ctx else None)  # a client that never answers the close
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as err:
            log.debug("log endpoint: no TLS handshake from %s: %s", source, err)
            conn.close()
            self.slots.give(source)
            return
        try:
            try:
                await asyncio.wait_for(asyncio.shield(lost), REQUEST_WAIT)
                return
            except TimeoutError:
                if transport not in self.endpoint.requested:
                    transport.abort()  # at once: a TLS close would wait for the idle client's answer
            await lost
        finally:
            self.slots.give(source)

    def start(self) -> Serving:
        self.thread.start()
        return self

    def shutdown(self) -> None:
        async def stop():
            if self._accepting:
                self._accepting.cancel()
            await self.runner.cleanup()
            for task in list(self._connections):
                task.cancel()
            self.loop.stop()

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop(), self.loop)
            self.thread.join(10)
        self.listener.close()
        self.endpoint.pool.shutdown(wait=False, cancel_futures=True)

    server_close = shutdown


def serve(cfg: Config) -> Serving:
    tls = bool(cfg.cert_file and cfg.key_file)
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    address = cfg.address if tls else "127.0.0.1"
    serving = Serving(cfg, ctx, address).start()
    if not tls:
        log.warning("no certificate (bay:monitoring:tls): the log endpoint listens on loopback only")
    log.info("log endpoint on %s://%s:%d%s", "https" if tls else "http", address, cfg.port, names.LOG_URL_PREFIX)
    return serving


def collect_forever(cfg: Config, stop: threading.Event) -> None:
    while not stop.wait(cfg.gc_interval):
        try:
            kept.collect(cfg.dir, cfg.retention, cfg.node_max_bytes)
        except OSError as err:
            log.warning("kept output not cleaned up: %s", err)


def start_relay(cfg: Config):
    """The relay into Kafka (None when this node has no Kafka to write to)."""
    if not (cfg.relay_port and cfg.kafka.get("bootstrap")):
        return None, None
    from bay_salt.host.sources import ContainerSources
    from bay_salt.logs.kafka import Client, Sink
    from bay_salt.logs.relay import Relay

    sink = Sink(Client.from_dict(cfg.kafka), cfg.relay_buffer)
    def docker_bridge():
        found = ContainerSources()
        return found, cfg.relay_host or found.gateway()

    sources, host = retry.at_boot(docker_bridge, "the log relay: Docker and its bridge", logger=log)
    relay = Relay(cfg.node, sink.put, sources.owner, time.time)
    if cfg.ship_output:  # containers' stdout and stderr into their topic too
        from bay_salt.logs.output import Cursor, OutputShipper

        shipper = OutputShipper(sources.client, relay.take, Cursor(os.path.join(cfg.dir, "output-cursor.json")))
        threading.Thread(target=shipper.run, name="container-output", daemon=True).start()
    return relay.serve(host, cfg.relay_port), (relay, sink)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bay-logs", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="/etc/bay/logs.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = Config.load(args.config)
    except (OSError, ValueError, TypeError) as err:
        raise SystemExit(f"bay-logs: {args.config}: {err}") from None
    os.makedirs(cfg.dir, mode=0o700, exist_ok=True)
    kept.collect(cfg.dir, cfg.retention, cfg.node_max_bytes)
    serve(cfg)
    stop = threading.Event()
    threading.Thread(target=collect_forever, args=(cfg, stop), name="log-gc", daemon=True).start()
    _, relaying = start_relay(cfg)
    last = (0, 0, 0, 0)
    while True:
        time.sleep(60)
        if relaying:
            relay, sink = relaying
            now = (relay.lines, relay.dropped, sink.dropped, relay.refused)
            if now != last:
                log.info("log relay: %d lines, %d dropped over a container's rate, %d dropped with Kafka's "
                         "buffer full, %d connections refused, %d waiting for Kafka", *now, sink.waiting())
                last = now


if __name__ == "__main__":  # pragma: no cover
    main()
