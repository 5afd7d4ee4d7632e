"""Events from a node to the master that are not lost: each is kept (in
memory, at most ``capacity``; past that the oldest go, counted and logged)
until the master has acknowledged it, and sent again until then. The master
handles duplicates (an event about an instance already replaced does
nothing); reconciliation is the safety net for what is lost anyway (the agent
stopped, its memory gone)."""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from bay_salt.model import envelope

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


class NoLeader(RuntimeError):
    """No master can be named as the acting controller now; the event is kept and sent again."""


def leader_of(masters: list[str], read: Callable[[], str | None] | None) -> Callable[[], str]:
    """Which of ``masters`` to send an event to: the only one, or the one whose
    controller leads (``read()``: the address in the controller's lock, None
    if nobody holds it; the last one read stays in use while KV cannot be
    read). An address that is not one of the minion's own masters is refused."""
    known: list[str | None] = [None]

    def address(name: str) -> str:
        try:
            return socket.gethostbyname(name)
        except OSError:
            return name

    def target() -> str:
        if len(masters) == 1:
            return masters[0]
        try:
            known[0] = read() if read else None
        except Exception as err:  # noqa: BLE001 - Consul away: the last leader known
            if known[0] is None:
                raise NoLeader(f"cannot read which master leads ({err})") from None
        if known[0] is None:
            raise NoLeader("no master leads the controller now")
        if known[0] in masters:
            return known[0]
        # the lock may name by DNS what the minion names by address (or the other way round)
        held = address(known[0])
        for m in masters:
            if address(m) == held:
                return m
        raise NoLeader(f"the controller's lock names {known[0]!r}, not one of this node's masters "
                       f"({', '.join(masters)})")

    return target


def salt_master_sender(config: str, timeout: float = 5.0, leader: Callable[[], str | None] | None = None
                       ) -> tuple[str, Callable[[str, dict], None]]:
    """``(minion id, send)``: ``send`` delivers an event as the node's minion,
    signed with its key (:mod:`bay_salt.model.envelope`), over Salt's request
    channel to the master whose controller leads (``leader()``: its address
    from the lock, needed only with several masters), and returns only once
    that master has taken it. One channel per master is kept open (a new one
    after a failure): a new channel's connection and authentication would cost
    more than the event."""
    import salt.channel.client
    import salt.config
    import salt.minion

    opts = salt.config.minion_config(config)
    # this process's own channel gives up after ``timeout``, once: the Sender tries again
    # (the minion daemon's own settings are not touched)
    opts.update(auth_timeout=max(1, int(timeout)), auth_tries=1, retry_dns=0, request_channel_timeout=timeout,
                request_channel_tries=1)
    masters = opts["master"] if isinstance(opts["master"], list) else [opts["master"]]
    target = leader_of([str(m) for m in masters], leader)
    channels: dict = {}
    with open(os.path.join(opts["pki_dir"], "minion.pem"), "rb") as fh:  # root only, as the minion's
        key = envelope.load_private(fh.read())

    def send(tag: str, data: dict) -> None:
        master = target()
        channel = channels.get(master)
        if channel is None:
            mopts = dict(opts, master=master)
            mopts.update(salt.minion.resolve_dns(mopts, fallback=False))  # its address, as the minion resolves it
            channel = channels[master] = salt.channel.client.ReqChannel.factory(mopts)
        load = {"id": opts["id"], "tag": tag, "data": data, "cmd": "_minion_event",
                envelope.FIELD: envelope.sign(key, opts["id"], tag, data)}
        try:
            channel.send(load, tries=1, timeout=timeout)
        except BaseException:
            channels.pop(master, None)
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - a broken channel may not close cleanly: it is dropped anyway
                pass
            raise

    return opts["id"], send
