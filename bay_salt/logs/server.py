"""bay-logs: every node's log daemon.

* its HTTPS endpoint serves the output of the node's Bay containers, live
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
import json
import logging
import os
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bay_salt.logs import kept, tokens
from bay_salt.logs.slots import Slots
from bay_salt.model import names

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


class Handler(BaseHTTPRequestHandler):
    server_version = "bay-logs"
    # output goes in chunks (HTTP/1.1 chunked encoding): a follower gets each line as it comes
    protocol_version = "HTTP/1.1"
    #: seconds a connection may keep the server waiting for its request (an idle or slow client is closed)
    timeout = 15
    cfg: Config
    docker_client = None

    def log_message(self, fmt, *args):  # requests go to the journal at debug only (no tokens in logs)
        log.debug("%s %s", self.address_string(), fmt % args)

    def _json(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        """One chunk of the body (an empty one ends it)."""
        if data or not getattr(self, "_ended", False):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self._ended = not data

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        prefix = [p for p in names.LOG_URL_PREFIX.split("/") if p]
        if parts[: len(prefix)] != prefix or len(parts) not in (len(prefix) + 2, len(prefix) + 3):
            return self._json(404, {"error": f"no such path {url.path}; GET {names.LOG_URL_PREFIX}/SERVICE/GROUP"
                                             "[/INSTANCE]"})
        rest = parts[len(prefix):]
        try:
            kept.check_name(*rest)
        except ValueError as err:
            return self._json(400, {"error": str(err)})
        try:
            claims = tokens.check(self.cfg.token_public_key, self.headers.get("Authorization"), rest[0])
            self.expires = float(claims["exp"])  # a follow stream ends there
        except tokens.Refused as err:
            return self._json(err.status, {"error": str(err)})
        q = urllib.parse.parse_qs(url.query)
        try:
            tail = int(q["tail"][0]) if q.get("tail") and q["tail"][0] not in ("", "all") else None
            since = kept.parse_since(q["since"][0]) if q.get("since") else None
        except ValueError as err:
            return self._json(400, {"error": str(err)})
        follow = q.get("follow", ["0"])[0] in ("1", "true", "yes")
        stamps = q.get("timestamps", ["0"])[0] in ("1", "true", "yes")
        if len(rest) == 2:
            return self._json(200, self.listing(*rest))
        return self.output(*rest, tail=tail, since=since, follow=follow, timestamps=stamps)

    def _docker(self):
        import docker

        if Handler.docker_client is None:
            Handler.docker_client = docker.from_env(timeout=30)
        return Handler.docker_client

    def _live(self, service: str, group: str, instance: str | None = None) -> list:
        import docker

        try:
            return self._docker().containers.list(all=True, filters={"label": [
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

    def output(self, service: str, group: str, instance: str, tail: int | None, since: float | None,
               follow: bool, timestamps: bool) -> None:
        live = self._live(service, group, instance)
        if live:
            return self._stream(live[0], tail, since, follow, timestamps)
        lines = kept.read(self.cfg.dir, service, group, instance, tail, since, timestamps)
        if lines is None:
            return self._json(404, {"error": f"{service}.{group}/{instance}: no container and no kept output on "
                                             f"{self.cfg.node}"})
        meta = kept.find(self.cfg.dir, service, group, instance)
        self._head("kept", meta)
        batch: list[bytes] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= 1000:
                self._chunk(b"".join(batch))
                batch = []
        self._chunk(b"".join(batch))
        self._chunk(b"")

    def _head(self, source: str, meta: kept.Kept | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Bay-Source", source)
        self.send_header("X-Bay-Node", self.cfg.node)
        if meta is not None:
            self.send_header("X-Bay-Exit-Code", str(meta.exit_code))
            self.send_header("X-Bay-OOM-Killed", str(meta.oom_killed).lower())
            self.send_header("X-Bay-Finished-At", meta.finished_at)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _stream(self, container, tail, since, follow, timestamps) -> None:
        import docker

        kwargs = {"stdout": True, "stderr": True, "timestamps": True, "tail": tail if tail is not None else "all"}
        if since is not None:
            kwargs["since"] = since
        try:
            chunks = container.logs(stream=True, follow=follow, **kwargs)
        except docker.errors.DockerException as err:
            return self._json(502, {"error": f"docker: {err}"})
        self._head("live")
        pending = b""
        # a follow stream ends when its token does: closing the stream ends the loop below
        ended = threading.Event()

        def expire():
            ended.set()
            close = getattr(chunks, "close", None)
            if close:
                close()

        timer = threading.Timer(max(0.0, getattr(self, "expires", 0.0) - time.time()), expire) if follow else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            for chunk in chunks:
                pending += chunk
                *whole, pending = pending.split(b"\n")
                if whole:
                    out = [ln + b"\n" for ln in whole]
                    self._chunk(b"".join(out if timestamps else (kept.strip_time(ln) for ln in out)))
            if pending:
                self._chunk(pending if timestamps else kept.strip_time(pending))
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the reader went away
        except Exception:  # noqa: BLE001 - the stream closed under it when the token expired
            if not ended.is_set():
                raise
            try:
                self._chunk(b"")
            except OSError:
                pass
        finally:
            if timer:
                timer.cancel()
            close = getattr(chunks, "close", None)
            if close:
                close()


#: seconds a client has to complete its TLS handshake
HANDSHAKE = 5.0
#: connections served at once (each a thread), in all and from one address; more are closed at once
MAX_CONNECTIONS, PER_SOURCE = 64, 8


def serve(cfg: Config) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"cfg": cfg})

    tls = bool(cfg.cert_file and cfg.key_file)
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    slots = Slots(MAX_CONNECTIONS, PER_SOURCE)

    class Server(ThreadingHTTPServer):
        """Accepts in its one serving thread and does nothing slow there: each
        connection's TLS handshake (bounded by HANDSHAKE seconds) and request
        run in a thread of its own, at most MAX_CONNECTIONS at once and
        PER_SOURCE from one address (past that a connection is closed at
        once), so an idle or slow client never holds the endpoint."""

        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128  # socketserver's 5 makes every client wait out SYN retries behind a fast one

        def process_request(self, request, client_address):
            refused = slots.take(client_address[0])
            if refused:
                if slots.warn(client_address[0], time.monotonic()):
                    log.warning("log endpoint: %s: closing what comes from it (warned once per %g s)", refused,
                                slots.warn_every)
                self.shutdown_request(request)
                return
            super().process_request(request, client_address)

        def process_request_thread(self, request, client_address):
            try:
                if ctx is not None:
                    request.settimeout(HANDSHAKE)
                    try:
                        request = ctx.wrap_socket(request, server_side=True)
                    except (OSError, ssl.SSLError) as err:
                        log.debug("log endpoint: no TLS handshake from %s: %s", client_address[0], err)
                        self.shutdown_request(request)
                        return
                super().process_request_thread(request, client_address)
            finally:
                slots.give(client_address[0])

    address = cfg.address if tls else "127.0.0.1"
    server = Server((address, cfg.port), handler)
    if not tls:
        log.warning("no certificate (bay:monitoring:tls): the log endpoint listens on loopback only")
    threading.Thread(target=server.serve_forever, name="log-endpoint", daemon=True).start()
    log.info("log endpoint on %s://%s:%d%s", "https" if tls else "http", address, cfg.port, names.LOG_URL_PREFIX)
    return server


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
    while True:  # Docker's bridge may not be there yet at boot
        try:
            sources = ContainerSources()
            host = cfg.relay_host or sources.gateway()
            break
        except Exception as err:  # noqa: BLE001 - Docker not up yet
            log.warning("log relay not started yet: %s", err)
            time.sleep(5)
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
