"""Containers' stdout and stderr into Kafka too (label ``stream``), so a
container's output outlives its node: the log relay's records of lines a
service never sent to the relay.

For each running Bay container on the node, Docker's log stream of its
stdout and of its stderr (``follow``, with Docker's timestamps) is read and
each line goes through the relay (:meth:`~bay_salt.logs.relay.Relay.take`:
the container's labels, its rate limit, Kafka's bounded buffer) with
``stream`` and Docker's ``time``. New containers are picked up from
Docker's ``start`` events. Where each container's streams got to is saved
every few seconds (``cursor``): a restarted daemon goes on from there, so
a line may be sent twice after a crash (at most the last few seconds), never
lost while the container runs.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bay_salt.model import names

log = logging.getLogger("bay.logs")

STREAMS = ("stdout", "stderr")
#: seconds between two saves of where each stream got to
SAVE_EVERY = 5.0


def split_timestamp(line: bytes) -> tuple[float | None, bytes]:
    """Docker's ``timestamps=True`` prefix (RFC 3339, nanoseconds) off a line: (epoch seconds, the rest)."""
    stamp, sep, rest = line.partition(b" ")
    if not sep:
        return None, line
    text = stamp.decode("ascii", "replace").rstrip("Z")
    head, _, frac = text.partition(".")
    try:
        t = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return None, line
    return t + (float(f"0.{frac[:9]}") if frac.isdigit() else 0.0), rest


class Cursor:
    """Where each container's streams got to (epoch seconds), saved to ``path`` atomically."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.at: dict[str, float] = {}
        self._lock = threading.Lock()
        try:
            self.at = {k: float(v) for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            self.at = {}

    def get(self, key: str) -> float | None:
        with self._lock:
            return self.at.get(key)

    def set(self, key: str, t: float) -> None:
        with self._lock:
            if t > self.at.get(key, 0.0):
                self.at[key] = t

    def save(self, alive: set[str] | None = None) -> None:
        with self._lock:
            if alive is not None:  # containers gone: forgotten
                self.at = {k: v for k, v in self.at.items() if k.split("/")[0] in alive}
            data = json.dumps(self.at)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(data)
        os.replace(tmp, self.path)


class OutputShipper:
    """``take(line, who, stream, t)``: the relay's; ``client``: a docker SDK client."""

    def __init__(self, client, take: Callable[[bytes, tuple[str, str, str], str, float | None], None],
                 cursor: Cursor, started: float | None = None):
        self.client, self.take, self.cursor = client, take, cursor
        self.started = time.time() if started is None else started
        self.following: set[str] = set()
        self._lock = threading.Lock()
        self.lines = 0

    def run(self) -> None:
        """Follow what runs now, then each container as it starts; save the cursor meanwhile."""
        threading.Thread(target=self._save_forever, name="output-cursor", daemon=True).start()
        while True:
            try:
                since = time.time()
                for c in self.client.api.containers(filters={"label": names.LABEL_SERVICE}):  # one call
                    self.follow(c["Id"], c.get("Labels") or {}, from_start=False)
                for e in self.client.events(decode=True, since=int(since) - 1,
                                            filters={"type": "container", "event": ["start"],
                                                     "label": names.LABEL_SERVICE}):
                    attrs = (e.get("Actor") or {}).get("Attributes") or {}
                    self.follow(e.get("id") or (e.get("Actor") or {}).get("ID", ""), attrs)
            except Exception as err:  # noqa: BLE001 - dockerd restarted: list again
                log.warning("container output: docker: %s", err)
                time.sleep(2)

    def follow(self, cid: str, labels: dict, from_start: bool = True) -> None:
        """Ship ``cid``'s streams: from where they got to, else from its start
        (``from_start``: it started now) or from when this daemon started."""
        if not cid or names.LABEL_SERVICE not in labels:
            return
        who = (labels[names.LABEL_SERVICE], labels.get(names.LABEL_GROUP, "_"), labels.get(names.LABEL_INSTANCE, "_"))
        for stream in STREAMS:
            key = f"{cid}/{stream}"
            with self._lock:
                if key in self.following:
                    continue
                self.following.add(key)
            threading.Thread(target=self._stream, args=(cid, who, stream, from_start),
                             name=f"output-{cid[:12]}-{stream}", daemon=True).start()

    def _stream(self, cid: str, who: tuple[str, str, str], stream: str, from_start: bool) -> None:
        key = f"{cid}/{stream}"
        since = self.cursor.get(key)
        if since is None and not from_start:
            since = self.started
        try:
            chunks = self.client.api.logs(cid, stdout=stream == "stdout", stderr=stream == "stderr", stream=True,
                                          follow=True, timestamps=True, since=since)
            rest = b""
            for chunk in chunks:
                rest += chunk
                *lines, rest = rest.split(b"\n")
                for line in lines:
                    t, text = split_timestamp(line)
                    if t is not None and since is not None and t <= since:
                        continue  # sent before the restart
                    self.take(text + b"\n", who, stream, t)
                    self.lines += 1
                    if t is not None:
                        self.cursor.set(key, t)
        except Exception as err:  # noqa: BLE001 - the container went: its stream ends
            log.debug("container output %s %s: %s", cid[:12], stream, err)
        finally:
            with self._lock:
                self.following.discard(key)

    def _save_forever(self) -> None:
        while True:
            time.sleep(SAVE_EVERY)
            try:
                with self._lock:
                    alive = {k.split("/")[0] for k in self.following}
                self.cursor.save(alive)
            except OSError as err:
                log.warning("container output: cursor not saved: %s", err)
