"""The log relay on every node: services write log lines to it over TCP
(the line protocol, docs/logs.md), it writes them into their service's
Kafka topic.

A line is a JSON object (``{"message": ..., "level": ..., any other
field}``) or plain text (it becomes the message). The relay adds ``time``
when the line has none, and always sets ``service``, ``group``,
``instance`` and ``node`` itself from the container that connected (by its
bridge address), so a service cannot write into another's topic nor claim
to be another. Connections from an address that is no Bay container are
closed.

Bounded, so one service cannot take the relay from the others: at most
``MAX_CONNECTIONS`` connections in all and ``PER_CONTAINER`` from one
container (more are closed at once), and each container's lines go at most
``RATE`` bytes a second (a bucket of ``BURST``): beyond that its lines are
dropped and counted (``dropped``), with a warning at most every
``WARN_EVERY`` seconds per container. Kafka's own buffer is capped by the sink.
"""

from __future__ import annotations

import datetime
import json
import logging
import socketserver
import threading
import time
from collections.abc import Callable

from bay_salt.logs.slots import Slots
from bay_salt.model import names

log = logging.getLogger("bay.logs")

#: a longer line is cut here (and marked)
MAX_LINE = 64 * 1024
#: an unknown sender is looked up again this many times, this far apart
LOOKUPS, LOOKUP_WAIT = 4, 0.25
#: connections the relay serves at once, in all and from one container
MAX_CONNECTIONS, PER_CONTAINER = 256, 8
#: bytes a second one container may write, and the burst it may write at once
RATE, BURST = 1 << 20, 4 << 20
#: seconds between two warnings about one container's dropped lines
WARN_EVERY = 10.0


def now_iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(line: bytes, owner: tuple[str, str, str], node: str, now: float, stream: str | None = None
           ) -> dict | None:
    """The record of one line (None for an empty line); ``stream``: a line of
    the container's stdout or stderr (Docker's), ``now`` Docker's time of it."""
    cut = len(line) > MAX_LINE
    text = line[:MAX_LINE].rstrip(b"\r\n").decode("utf-8", "replace")
    if not text.strip():
        return None
    obj = None
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
    if not isinstance(obj, dict):
        obj = {"message": text}
    obj.setdefault("time", now_iso(now))
    obj.setdefault("level", "info")
    if cut:
        obj["truncated"] = True
    obj.update(zip(names.LOG_LABELS, (*owner, node)))
    if stream:
        obj["stream"] = stream
    return obj


class Relay:
    """``put(topic, key, value)`` is the Kafka sink; ``owner(ip)`` names the container at an address."""

    def __init__(self, node: str, put: Callable[[str, bytes, bytes], bool],
                 owner: Callable[..., tuple[str, str, str] | None], clock: Callable[[], float],
                 rate: int = RATE, burst: int = BURST):
        """``owner(ip, fresh=False)``: the container at ``ip`` (``fresh``: ask Docker again)."""
        self.node, self.put, self.owner, self.clock = node, put, owner, clock
        self.lines = self.refused = self.dropped = 0
        self.rate, self.burst = rate, burst
        self._lock = threading.Lock()
        self.slots = Slots(MAX_CONNECTIONS, PER_CONTAINER, WARN_EVERY)
        self._bucket: dict[tuple[str, str, str], tuple[float, float]] = {}  # container -> (bytes allowed, when)
        self._warned: dict[tuple[str, str, str], float] = {}

    def open(self, address: str) -> str | None:
        """Count a new connection from ``address``; why it is refused (None: served). :meth:`close` it after."""
        refused = self.slots.take(address)
        if refused:
            with self._lock:
                self.refused += 1
        return refused

    def close(self, address: str) -> None:
        self.slots.give(address)

    def _allowed(self, who: tuple[str, str, str], size: int, now: float) -> bool:
        """Take ``size`` bytes from the container's bucket (refilled at ``rate``, up to ``burst``)."""
        with self._lock:
            have, at = self._bucket.get(who, (float(self.burst), now))
            have = min(float(self.burst), have + (now - at) * self.rate)
            if have >= size:
                self._bucket[who] = (have - size, now)
                return True
            self._bucket[who] = (have, now)
            self.dropped += 1
            warn = now - self._warned.get(who, float("-inf")) >= WARN_EVERY
            if warn:
                self._warned[who] = now
        if warn:
            log.warning("log relay: %s.%s %s writes more than %d bytes/s: lines dropped (%d in all so far)",
                        *who, self.rate, self.dropped)
        return False

    def take(self, line: bytes, who: tuple[str, str, str], stream: str | None = None, at: float | None = None) -> None:
        """One line of ``who``'s into its topic (``stream``/``at``: a line of its stdout/stderr, Docker's time)."""
        now = self.clock()
        if not self._allowed(who, len(line), now):
            return
        rec = record(line, who, self.node, at if at is not None else now, stream)
        if rec is None:
            return
        self.put(names.log_topic(who[0]), who[2].encode(), json.dumps(rec, separators=(",", ":")).encode())
        with self._lock:
            self.lines += 1

    def serve(self, host: str, port: int) -> socketserver.ThreadingTCPServer:
        relay = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                address = self.client_address[0]
                refused = relay.open(address)
                if refused:
                    if relay.slots.warn(address, time.monotonic()):  # a flood of connections, not of log lines
                        log.warning("log relay: connection from %s closed: %s (%d refused in all so far)", address,
                                    refused, relay.refused)
                    return
                try:
                    self.relay_lines()
                finally:
                    relay.close(address)

            def relay_lines(self):
                who = relay.owner(self.client_address[0])
                for _ in range(LOOKUPS):
                    if who is not None:
                        break
                    # a container that writes at once can be here before Docker lists it as running
                    time.sleep(LOOKUP_WAIT)
                    who = relay.owner(self.client_address[0], fresh=True)
                if who is None:
                    with relay._lock:
                        relay.refused += 1
                    log.warning("log relay: %s is no Bay container; connection closed", self.client_address[0])
                    return
                while True:
                    line = self.rfile.readline(MAX_LINE + 1)
                    if not line:
                        return
                    if len(line) > MAX_LINE and not line.endswith(b"\n"):
                        # the rest of an over-long line is dropped
                        while (more := self.rfile.readline(MAX_LINE)) and not more.endswith(b"\n"):
                            pass
                    relay.take(line, who)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            # socketserver's default backlog is 5: a container dialling fast fills it, and every other
            # container's connect then waits out a SYN retry (1 s, 3 s, ...) however soon it is refused
            request_queue_size = 128

        server = Server((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="log-relay", daemon=True).start()
        log.info("log relay on %s:%d (TCP, one line per record)", host, port)
        return server
