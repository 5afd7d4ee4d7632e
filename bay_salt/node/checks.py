"""The node agent's checks of the instances on its node, separate from
HAProxy's and from Docker's (which do not run in a paused container):

* readiness (the group's ``health``): ``fall`` failures in a row make a
  ready instance not ready, ``rise`` successes a not-ready one ready again;
  each change is reported (the controller marks it in KV: every HAProxy follows);
* liveness (the group's ``liveness``, if any): ``failure_threshold`` failures
  in a row, past ``initial_delay``, report the instance hung (it is replaced).

:func:`readiness` and :func:`liveness` are the state machine (pure);
:func:`probe` is one check over the network or inside the container.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from bay_salt.kv.records import Health, Instance

READY, UNREADY, HUNG = "ready", "unready", "hung"


@dataclass
class Track:
    """What the agent knows of one instance between checks."""

    instance: Instance
    since: float  # when the agent first saw it registered
    ready: bool = True
    ok_streak: int = 0
    fail_streak: int = 0
    live_failures: int = 0
    hung_reported: bool = False
    next_ready: float = 0.0
    next_live: float = 0.0
    last: dict = field(default_factory=dict)  # the last probe results, for the log

    @classmethod
    def of(cls, instance: Instance, now: float) -> Track:
        return cls(instance, now, ready=instance.health != Health.CRITICAL)


def readiness(t: Track, ok: bool, rise: int, fall: int) -> str | None:
    """One readiness result; READY or UNREADY when the instance's state changes."""
    if ok:
        t.ok_streak, t.fail_streak = t.ok_streak + 1, 0
        if not t.ready and t.ok_streak >= rise:
            t.ready = True
            return READY
    else:
        t.ok_streak, t.fail_streak = 0, t.fail_streak + 1
        if t.ready and t.fail_streak >= fall:
            t.ready = False
            return UNREADY
    return None


def liveness(t: Track, ok: bool, now: float, threshold: int, initial_delay: float) -> str | None:
    """One liveness result; HUNG once, when the failures in a row reach ``threshold``."""
    if now - t.since < initial_delay:
        return None
    if ok:
        t.live_failures = 0
        return None
    t.live_failures += 1
    if t.live_failures >= threshold and not t.hung_reported:
        t.hung_reported = True
        return HUNG
    return None


def probe(check: dict, address: str, port: int, container=None) -> bool:
    """One check (``health`` or ``liveness`` as a dict): an HTTP GET of its path
    (2xx/3xx), a TCP connect, or its command run in ``container`` (a docker
    SDK container; exit 0) within its timeout."""
    timeout = float(check.get("timeout", 1.0))
    if check.get("http"):
        try:
            with urllib.request.urlopen(f"http://{address}:{port}{check['http']}", timeout=timeout) as r:
                return 200 <= r.status < 400
        except (urllib.error.URLError, OSError, ValueError):
            return False
    if check.get("exec"):
        if container is None:
            return False
        import concurrent.futures

        import docker.errors

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        try:
            return pool.submit(container.exec_run, check["exec"]).result(timeout=timeout).exit_code == 0
        except (concurrent.futures.TimeoutError, docker.errors.DockerException):
            return False
        finally:
            pool.shutdown(wait=False)
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
