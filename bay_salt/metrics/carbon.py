"""Shipping points to carbon: batched, bounded, never in the collector's way.

:class:`Shipper` keeps points in a bounded queue and a thread of its own
sends them in batches over carbon's pickle protocol (optionally through TLS
with a client certificate: Bay's carbon takes the nodes' connections only
that way). When carbon is down or slow the queue fills up to ``capacity``
and the oldest points go first (counted in :attr:`dropped`); collection
never blocks on the network.
"""

from __future__ import annotations

import collections
import logging
import pickle
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger("bay.metrics")

Point = tuple[str, tuple[float, float]]


@dataclass(frozen=True)
class Target:
    """Where carbon's pickle receiver is, and how to reach it."""

    host: str
    port: int
    #: a client certificate and the CA that signed carbon's (empty: plain TCP)
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.ca_file)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" + (" (TLS)" if self.tls else "")


#: the largest pickle message carbon takes (its PICKLE_RECEIVER_MAX_LENGTH
#: default, and what Bay's carbon.conf says): a longer one makes carbon drop
#: the connection, and everything in it, without a word
MAX_MESSAGE = 2**20


def encode(batch: list[Point]) -> bytes:
    """One pickle-protocol message: a 4-byte length and a pickled list of
    ``(path, (timestamp, value))`` (protocol 2, what carbon unpickles safely)."""
    payload = pickle.dumps(batch, protocol=2)
    return struct.pack("!L", len(payload)) + payload


def messages(batch: list[Point], limit: int = MAX_MESSAGE) -> tuple[list[bytes], int]:
    """``batch`` as pickle messages of at most ``limit`` bytes of payload each
    (halved until they fit: a backlog after an outage comes in big batches of
    long names), and how many points could not fit at all (a single point
    longer than ``limit``: dropped, and counted by the caller)."""
    msg = encode(batch)
    if len(msg) - 4 <= limit:
        return [msg], 0
    if len(batch) == 1:
        return [], 1
    half = len(batch) // 2
    first, lost1 = messages(batch[:half], limit)
    second, lost2 = messages(batch[half:], limit)
    return first + second, lost1 + lost2


def parse_plaintext(line: str, now: float | None = None) -> Point | None:
    """``path value [timestamp]`` (carbon's line protocol, what statsd sends) as a
    point; None for a line that is not one (it is dropped, never shipped)."""
    parts = line.split()
    if len(parts) not in (2, 3):
        return None
    try:
        value = float(parts[1])
        ts = float(parts[2]) if len(parts) == 3 else (time.time() if now is None else now)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):  # NaN, infinities
        return None
    return parts[0], (ts, value)


class Shipper:
    def __init__(self, target: Target, capacity: int = 100_000, batch: int = 5_000, timeout: float = 5.0,
                 retry: float = 2.0, max_message: int = MAX_MESSAGE):
        self.target = target
        self.max_message = max_message
        self.queue: collections.deque[Point] = collections.deque(maxlen=capacity)
        self.batch = batch
        self.timeout = timeout
        self.retry = retry
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.connected = False
        self.last_error = ""
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._stop = False
        self._thread: threading.Thread | None = None

    # --- collectors' side: never blocks on the network -----------------
    def put(self, points: Iterable[Point]) -> None:
        with self._cond:
            for p in points:
                if len(self.queue) == self.queue.maxlen:
                    self.dropped += 1
                self.queue.append(p)
            self._cond.notify()

    def pending(self) -> int:
        return len(self.queue)

    # --- the sender thread ------------------------------------------------
    def start(self) -> Shipper:
        self._thread = threading.Thread(target=self._run, name="bay-carbon", daemon=True)
        self._thread.start()
        return self

    def stop(self, flush: float = 5.0) -> None:
        """Send what is queued (for up to ``flush`` seconds), then stop."""
        deadline = time.monotonic() + flush
        while self.queue and time.monotonic() < deadline and self.connected:
            time.sleep(0.05)
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread:
            self._thread.join(timeout=flush + self.timeout)
        self._close()

    def _connect(self) -> socket.socket:
        t = self.target
        raw = socket.create_connection((t.host, t.port), timeout=self.timeout)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if not t.tls:
            return raw
        ctx = ssl.create_default_context(cafile=t.ca_file)
        # the cluster's own CA signs every node's certificate: the chain is what
        # is checked (carbon's name is whatever node has role monitoring)
        ctx.check_hostname = False
        if t.cert_file:
            ctx.load_cert_chain(t.cert_file, t.key_file or None)
        return ctx.wrap_socket(raw)

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self.connected = False

    def _take(self) -> list[Point]:
        with self._cond:
            while not self.queue and not self._stop:
                self._cond.wait(timeout=1.0)
            n = min(self.batch, len(self.queue))
            return [self.queue.popleft() for _ in range(n)]

    def _giveback(self, batch: list[Point]) -> None:
        """A batch that was not sent goes back to the front (the oldest points
        are the ones dropped if the queue is full meanwhile)."""
        with self._cond:
            room = self.queue.maxlen - len(self.queue)
            keep = batch[max(0, len(batch) - room):]
            self.dropped += len(batch) - len(keep)
            self.queue.extendleft(reversed(keep))

    def _peer_closed(self) -> bool:
        """Whether carbon (or the proxy in front of it) has closed the
        connection. Carbon never writes to its clients, so a readable socket
        means end of file or a reset: what would be sent into it now is lost
        without an error (no acks in the pickle protocol), so look first."""
        sock = self._sock
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        sock.setblocking(False)
        try:
            return sock.recv(1) == b""
        except (ssl.SSLWantReadError, BlockingIOError):
            return False  # part of a TLS record, nothing to read yet
        except OSError:
            return True
        finally:
            sock.settimeout(self.timeout)

    def send_now(self, batch: list[Point]) -> None:
        """One batch, synchronously (the thread's step; raises OSError)."""
        if self._sock is not None and self._peer_closed():
            log.info("carbon at %s closed the connection; connecting again", self.target)
            self._close()
        if self._sock is None:
            self._sock = self._connect()
            if not self.connected:
                log.info("connected to carbon at %s", self.target)
            self.connected = True
        parts, too_long = messages(batch, self.max_message)
        self._sock.sendall(b"".join(parts))
        self.sent += len(batch) - too_long
        self.dropped += too_long

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._stop:
                    return
                continue
            try:
                self.send_now(batch)
            except OSError as err:
                self.errors += 1
                if self.connected or self.last_error != str(err):
                    log.warning("carbon at %s: %s (keeping up to %d points, retrying)", self.target, err,
                                self.queue.maxlen)
                self.last_error = str(err)
                self._close()
                self._giveback(batch)
                with self._cond:
                    if self._stop:
                        return
                    self._cond.wait(timeout=self.retry)


class Shards:
    """Points over several carbon-caches, each series to the one carbon's
    consistent-hash ring gives it (the ring graphite-web's CARBONLINK_HOSTS
    builds, so it asks the right cache for a series' unflushed points).

    One :class:`Shipper` per cache, each with its own queue, bound and
    connection: a cache away fills only its own queue. It answers what a
    Shipper answers (``put``, ``pending``, the counters), added up."""

    def __init__(self, targets: dict[tuple[str, str], Target], capacity: int = 100_000, **kw):
        from bay_salt.metrics.ring import Ring

        self.shippers = {key: Shipper(t, capacity=max(1, capacity // len(targets)), **kw)
                         for key, t in targets.items()}
        self.target = tuple(targets.values())
        self._ring = Ring(self.shippers)
        #: series -> its shipper (the same series come every interval; the ring is an md5 each)
        self._where: dict[str, Shipper] = {}

    def _of(self, path: str) -> Shipper:
        ship = self._where.get(path)
        if ship is None:
            if len(self._where) >= 1_000_000:  # series come and go: never grow without bound
                self._where.clear()
            ship = self._where[path] = self.shippers[self._ring.node(path)]
        return ship

    def put(self, points: Iterable[Point]) -> None:
        by: dict[int, tuple[Shipper, list[Point]]] = {}
        for p in points:
            ship = self._of(p[0])
            by.setdefault(id(ship), (ship, []))[1].append(p)
        for ship, pts in by.values():
            ship.put(pts)

    def pending(self) -> int:
        return sum(s.pending() for s in self.shippers.values())

    def start(self) -> Shards:
        for s in self.shippers.values():
            s.start()
        return self

    def stop(self, flush: float = 5.0) -> None:
        for s in self.shippers.values():
            s.stop(flush)

    sent = property(lambda self: sum(s.sent for s in self.shippers.values()))
    dropped = property(lambda self: sum(s.dropped for s in self.shippers.values()))
    errors = property(lambda self: sum(s.errors for s in self.shippers.values()))
    connected = property(lambda self: all(s.connected for s in self.shippers.values()))
    last_error = property(lambda self: "; ".join(f"{s.target}: {s.last_error}" for s in self.shippers.values()
                                                 if s.last_error))


def open_shipper(targets: dict[tuple[str, str], Target], capacity: int = 100_000) -> Shipper | Shards:
    """A :class:`Shipper` for one carbon, :class:`Shards` for several (not started)."""
    if len(targets) == 1:
        return Shipper(next(iter(targets.values())), capacity=capacity)
    return Shards(targets, capacity=capacity)
