"""One acting controller and one alert evaluator among the masters.

Every master runs the ``bay_controller`` and ``bay_alerts`` engines; for each
role exactly one acts, the holder of a Consul session lock at
``bay/leader/<role>`` (:func:`bay_salt.model.names.kv_leader`). The others
stand by, watching the lock.

* The leader **beats**: every ``beat`` seconds it renews its session and
  writes the lock's value again (who, where, since when), so the lock's
  ModifyIndex moves while the leader lives.
* A standby that has seen the index stand still for ``takeover`` seconds (on
  its own clock: no clock skew between masters matters) ends the silent
  leader's session; the lock is free after Consul's lock delay and the first
  standby to ask takes it. Consul's own session TTL (``ttl``, which Consul
  enforces only after twice that long) is the backstop when no standby is
  left to notice.
* **Fencing**: every KV transaction of the acting engine starts with a
  ``check-session`` of the lock (:meth:`Lease.fence`, given to the store as
  its ``fence``). A paused leader that wakes up after losing the lock has
  each of its writes rolled back whole; its next beat fails and its engine
  process ends (the salt-master starts it again, as a standby).
* A leader that cannot beat for ``takeover`` seconds (Consul gone, or its
  own pause) steps down the same way: by then a standby may lead.

A master restarted while it led finds the lock held by its own former
process (same master id, another session) and takes it back at once instead
of waiting for the silence.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import consul
import requests

from bay_salt.kv.records import Leader as Holder
from bay_salt.kv.records import read_leader as read  # noqa: F401 - who leads, for the callers of this module
from bay_salt.kv.store import ConsulStore, TxnError, Unavailable
from bay_salt.model import names

log = logging.getLogger("bay.leader")

#: seconds between two beats of the leader
BEAT = 1.0
#: seconds a standby waits on a silent leader before ending its session: four missed beats
#: (a leader's beat is one renew and one put, each a few ms; a loaded machine delays one by a second at most)
TAKEOVER = 4.0
#: Consul's session TTL (its minimum is 10 s; Consul ends a session 2 x TTL after its last renewal)
TTL = 15
#: seconds Consul keeps a lock that was released by an ended session from being taken again
LOCK_DELAY = 1

_ERRORS = (consul.ConsulException, requests.exceptions.RequestException, OSError, Unavailable)


class Lost(TxnError):
    """This engine no longer holds its lock (or never did): it must not act."""


def advertised(opts: dict) -> str:
    """Where the nodes reach this master (``bay_advertise`` in the master's config, else its FQDN)."""
    return str(opts.get("bay_advertise") or socket.getfqdn())


class Lease:
    """Leadership of one role for one engine process.

    ``connect()``: a :class:`ConsulStore` (not fenced) on a Consul server that
    answers; a new one is asked for when the one in use fails."""

    def __init__(self, connect: Callable[[], ConsulStore], role: str, master: str, address: str, *,
                 beat: float = BEAT, takeover: float = TAKEOVER, ttl: int = TTL, lock_delay: int = LOCK_DELAY,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.key = names.kv_leader(role)
        self.role, self.master, self.address = role, master, address
        self.connect = connect
        self.beat_every, self.takeover, self.ttl, self.lock_delay = beat, takeover, ttl, lock_delay
        self.clock, self.sleep = clock, sleep
        self.session: str | None = None
        self.since = 0.0
        self.last_beat = 0.0
        self._store: ConsulStore | None = None

    # --- Consul ----------------------------------------------------------------------
    def _client(self) -> consul.Consul:
        if self._store is None:
            self._store = self.connect()
        return self._store.client

    def _call(self, fn):
        """``fn(client)``; a failure drops the connection (the next call asks for another)."""
        try:
            return fn(self._client())
        except _ERRORS:
            self._store = None
            raise

    def holder(self) -> tuple[Holder | None, str | None, int]:
        """(who holds the lock, their session, the lock's ModifyIndex)."""
        index, item = self._call(lambda c: c.kv.get(self.key))
        if not item:
            return None, None, int(index or 0)
        return Holder.from_json(item.get("Value")), item.get("Session"), int(item.get("ModifyIndex") or 0)

    def _new_session(self) -> str:
        # no health checks: a master is not a Consul node; its beats (and the TTL) say it lives
        return self._call(lambda c: c.session.create(
            name=f"bay-{self.role}-{self.master}", checks=[], lock_delay=self.lock_delay, ttl=self.ttl,
            behavior="release"))

    def _put(self) -> bool:
        now = time.time()
        value = Holder(self.master, self.address, self.since or now, now).to_json()
        return bool(self._call(lambda c: c.kv.put(self.key, value, acquire=self.session)))

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True if this engine holds it now. A
        standby's session is renewed here (it would end after its TTL), or
        made again if it has ended."""
        if self.session is not None:
            try:
                self._call(lambda c: c.session.renew(self.session))
            except consul.NotFound:
                self.session = None
        if self.session is None:
            self.session = self._new_session()
        self.since = time.time()
        if self._put():
            self.last_beat = self.clock()
            log.info("bay %s: this master (%s) leads now", self.role, self.master)
            return True
        return False

    def beat(self) -> None:
        """Renew the session and write the lock again; :class:`Lost` if the lock is not ours any more."""
        if self.session is None:
            raise Lost(f"{self.role}: no session")
        try:
            self._call(lambda c: c.session.renew(self.session))
        except consul.NotFound:
            raise Lost(f"{self.role}: the session ended (a standby took over, or its TTL ran out)") from None
        if not self._put():
            raise Lost(f"{self.role}: the lock is held by another session")
        self.last_beat = self.clock()

    def fence(self) -> list[dict]:
        """The operation a fenced transaction starts with: it is rolled back
        unless this engine's session still holds the lock."""
        if self.session is None:
            raise Lost(f"this master does not lead the {self.role}")
        return [{"KV": {"Verb": "check-session", "Key": self.key, "Session": self.session}}]

    def end(self) -> None:
        """Give the lock up now (a stopping leader): a standby takes over without waiting."""
        if self.session:
            try:
                self._call(lambda c: c.session.destroy(self.session))
            except _ERRORS as err:
                log.warning("bay %s: could not end the session (its TTL ends it): %s", self.role, err)
        self.session = None

    # --- standing by and leading ---------------------------------------------------------
    def campaign(self, stop: threading.Event | None = None) -> bool:
        """Stand by until this engine holds the lock (True), or ``stop`` is set
        (False). A silent holder's session is ended after ``takeover`` s; the
        holder's index is followed with blocking queries."""
        seen_index, seen_at, announced = None, self.clock(), None
        while not (stop and stop.is_set()):
            try:
                if self.try_acquire():
                    return True
                held, session, index = self.holder()
                if held and held.master != announced:
                    log.info("bay %s: standing by; %s leads", self.role, held.master)
                    announced = held.master
                if session is None:
                    self.sleep(min(0.5, self.beat_every))  # free, but in its lock delay
                    continue
                if held and held.master == self.master:
                    # this master's former process (it restarted): it cannot be beating any more
                    log.info("bay %s: the lock is held by this master's former process: taking it back", self.role)
                    self._call(lambda c, s=session: c.session.destroy(s))
                    continue
                if index != seen_index:
                    seen_index, seen_at = index, self.clock()
                elif self.clock() - seen_at > self.takeover:
                    log.warning("bay %s: %s has not beaten for %.0f s: ending its session and taking over",
                                self.role, held.master if held else "the leader", self.clock() - seen_at)
                    self._call(lambda c, s=session: c.session.destroy(s))
                    continue
                self._wait_change(index, seen_at + self.takeover)
            except _ERRORS as err:
                log.warning("bay %s: standing by: Consul: %s", self.role, str(err).splitlines()[0][:200] if str(err)
                            else type(err).__name__)
                self.sleep(1.0)
        return False

    def _wait_change(self, index: int, deadline: float) -> None:
        """Until the lock's index moves past ``index``: at most two beats, and
        not much past ``deadline`` (when the holder counts as silent), so a
        takeover is not late by up to a whole wait."""
        wait = max(0.1, min(2 * self.beat_every, deadline - self.clock() + 0.05))
        self._call(lambda c: c.kv.get(self.key, index=index, wait=f"{int(wait * 1000)}ms"))

    def keep(self, on_lost: Callable[[str], None], stop: threading.Event | None = None) -> None:
        """Beat until the lock is lost (``on_lost(why)``) or ``stop`` is set.
        Failing to beat for ``takeover`` seconds counts as lost: a standby
        may lead by then."""
        while not (stop and stop.is_set()):
            self.sleep(self.beat_every)
            try:
                self.beat()
            except Lost as err:
                on_lost(str(err))
                return
            except _ERRORS as err:
                silent = self.clock() - self.last_beat
                if silent > self.takeover:
                    on_lost(f"{self.role}: no beat for {silent:.0f} s ({str(err).splitlines()[0][:120]})")
                    return
                log.warning("bay %s: beat failed (%.0f s without one): %s", self.role, silent, err)


def lead(opts: dict, role: str, reports) -> Lease:
    """Stand by until this master leads ``role`` (``reports``: the engine's
    :class:`~bay_salt.master.reports.NodeReports`, which give the Consul
    servers). From then on every store ``reports`` makes is fenced by the
    lease, and losing the lease ends this engine's process: the salt-master
    starts it again, standing by."""
    from bay_salt.kv.store import first_answering
    from bay_salt.master.siteview import controller_token

    def connect() -> ConsulStore:
        try:
            servers = reports.consul_servers()
        except Exception as err:  # noqa: BLE001 - what the site says cannot be read yet: ask again
            raise Unavailable(f"the Consul servers are not known yet: {err}") from None
        return first_answering(servers.addresses, servers.port, token=controller_token(opts), ca_file=servers.ca_file)

    lease = Lease(connect, role, str(opts.get("id") or socket.getfqdn()), advertised(opts))
    log.info("bay %s: standing by for the lock %s", role, lease.key)
    lease.campaign()
    reports.fence = lease.fence
    if reports.store is not None:
        reports.store.fence = lease.fence

    def lost(why: str) -> None:
        log.error("bay %s: %s; this engine stops acting now (the salt-master starts it again, standing by)",
                  role, why)
        logging.shutdown()
        os._exit(3)

    threading.Thread(target=lease.keep, args=(lost,), name=f"bay-{role}-lease", daemon=True).start()
    return lease
