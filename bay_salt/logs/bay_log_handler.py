"""A logging handler for services on Bay: records go to the node's log
relay, which writes them into the service's Kafka topic (docs/logs.md).

It needs nothing but the standard library, so a service can copy this one
file into its image::

    import logging
    from bay_log_handler import BayLogHandler   # this file, copied

    logging.getLogger().addHandler(BayLogHandler())
    logging.getLogger("orders").info("paid", extra={"order": 1234})

The relay's address comes from the environment every Bay container gets
(``BAY_LOG_HOST``, ``BAY_LOG_PORT``). Each record is one line of JSON:
``time``, ``level``, ``logger``, ``message``, the exception's traceback if
any, and the ``extra`` fields. The relay adds ``service``, ``group``,
``instance`` and ``node``. While the relay does not answer, records wait
in memory (at most ``buffer``; the oldest go first) and are sent when it
does; logging never blocks the service.
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import socket
import threading

#: attributes every LogRecord has; anything else came through ``extra``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class BayLogHandler(logging.Handler):
    def __init__(self, host: str | None = None, port: int | None = None, buffer: int = 10000,
                 level: int = logging.NOTSET):
        super().__init__(level)
        self.host = host or os.environ.get("BAY_LOG_HOST", "127.0.0.1")
        self.port = int(port or os.environ.get("BAY_LOG_PORT", "5140"))
        self.queue: collections.deque[bytes] = collections.deque(maxlen=buffer)
        self.dropped = 0
        self._wake = threading.Condition()
        self._closed = False
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._send_forever, name="bay-log-handler", daemon=True)
        self._thread.start()

    def line(self, record: logging.LogRecord) -> bytes:
        doc = {"time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                   timespec="milliseconds").replace("+00:00", "Z"),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatter.formatException(record.exc_info) if self.formatter else \
                logging.Formatter().formatException(record.exc_info)
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                doc[k] = v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
        return json.dumps(doc, separators=(",", ":"), default=repr).encode() + b"\n"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.line(record)
        except Exception:  # noqa: BLE001 - logging must not raise into the service
            self.handleError(record)
            return
        with self._wake:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1
            self.queue.append(data)
            self._wake.notify()

    def _connect(self) -> socket.socket | None:
        try:
            return socket.create_connection((self.host, self.port), timeout=5)
        except OSError:
            return None

    def _send_forever(self) -> None:
        backoff = 0.5
        while True:
            with self._wake:
                while not self.queue and not self._closed:
                    self._wake.wait()
                if self._closed and not self.queue:
                    return
                batch = [self.queue.popleft() for _ in range(min(500, len(self.queue)))]
            if self._sock is None:
                self._sock = self._connect()
            try:
                if self._sock is None:
                    raise OSError("the relay does not answer")
                self._sock.sendall(b"".join(batch))
                backoff = 0.5
            except OSError:
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                with self._wake:  # back in front, in order (when full, the newest go)
                    self.queue.extendleft(reversed(batch))
                    if self._closed:
                        return
                threading.Event().wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (up to ``timeout``) until what was logged has been handed to the relay."""
        deadline = threading.Event()
        waited = 0.0
        while self.queue and waited < timeout:
            deadline.wait(0.05)
            waited += 0.05

    def close(self) -> None:
        self.flush()
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._sock is not None:
            self._sock.close()
        super().close()
