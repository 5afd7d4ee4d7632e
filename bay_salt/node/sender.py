"""Events from a node to the master that are not lost: each is kept (in
memory, at most ``capacity``; past that the oldest go, counted and logged)
until the master has acknowledged it, and sent again until then. The master
handles duplicates (an event about an instance already replaced does
nothing); reconciliation is the safety net for what is lost anyway (the agent
stopped, its memory gone)."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("bay.events")


class Sender:
    def __init__(self, send: Callable[[str, dict], None], capacity: int = 10_000, retry_max: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep):
        """``send(tag, data)``: delivers one event, raising if the master did not take it."""
        self._send = send
        self.queue: collections.deque[tuple[str, dict]] = collections.deque()
        self.capacity = capacity
        self.retry_max = retry_max
        self.sleep = sleep
        self.sent = self.resent = self.dropped = 0
        self._ready = threading.Condition()

    def put(self, tag: str, data: dict) -> None:
        with self._ready:
            if len(self.queue) >= self.capacity:
                old, _ = self.queue.popleft()
                self.dropped += 1
                log.error("event queue full (%d): dropped the oldest, %s (%d dropped in all; reconciliation finds "
                          "what they said)", self.capacity, old, self.dropped)
            self.queue.append((tag, data))
            self._ready.notify()

    def drain(self, stop: threading.Event | None = None, once: bool = False) -> None:
        """Send what is queued, oldest first, each until the master has it;
        ``once``: return when the queue is empty (tests), else wait for more."""
        wait = 0.25
        while not (stop and stop.is_set()):
            with self._ready:
                if not self.queue:
                    if once:
                        return
                    self._ready.wait(timeout=1.0)
                    continue
                tag, data = self.queue[0]
            try:
                self._send(tag, data)
            except Exception as err:  # noqa: BLE001 - the master is away: keep it, try again
                self.resent += 1
                log.warning("could not send %s to the master (%s); %d queued, trying again in %.1f s", tag,
                            str(err) or type(err).__name__, len(self.queue), wait)
                self.sleep(wait)
                wait = min(self.retry_max, wait * 2)
                continue
            wait = 0.25
            with self._ready:
                if self.queue and self.queue[0] == (tag, data):
                    self.queue.popleft()
            self.sent += 1


def salt_master_sender(config: str, timeout: float = 5.0) -> tuple[str, Callable[[str, dict], None]]:
    """``(minion id, send)``: ``send`` delivers an event to the master as the
    node's minion (its own key: the master knows which node sent it) over
    Salt's request channel, and returns only once the master has taken it."""
    import salt.channel.client
    import salt.config
    import salt.minion

    opts = salt.config.minion_config(config)
    # this process's own channel gives up after ``timeout``, once: the Sender tries again
    # (the minion daemon's own settings are not touched)
    opts.update(auth_timeout=max(1, int(timeout)), auth_tries=1, retry_dns=0, request_channel_timeout=timeout,
                request_channel_tries=1)
    state = {"resolved": False}

    def send(tag: str, data: dict) -> None:
        if not state["resolved"]:  # the master's address, as the minion resolves it
            opts.update(salt.minion.resolve_dns(opts, fallback=False))
            state["resolved"] = True
        load = {"id": opts["id"], "tag": tag, "data": data, "cmd": "_minion_event"}
        with salt.channel.client.ReqChannel.factory(opts) as channel:
            channel.send(load, tries=1, timeout=timeout)

    return opts["id"], send
