"""Container metrics from each node's cAdvisor, per Bay service group.

cAdvisor's ``/api/v1.3/docker/`` lists the node's Docker containers with
their recent samples (one per housekeeping interval). :func:`container_usage`
turns that into CPU (cores, averaged over the last few samples) and memory
(working set) per container name; :func:`bay_salt.control.autoscale_round.group_sample` adds up a group's ready
instances from it.
"""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request

#: samples (housekeeping intervals) the CPU rate is averaged over
WINDOW = 5


def _stamp(text: str) -> float:
    """cAdvisor's RFC 3339 timestamps (nanoseconds, Z) as epoch seconds."""
    main, _, frac = text.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(main + "+00:00").timestamp()
    return whole + (float("0." + frac[:9]) if frac else 0.0)


def container_usage(payload: dict, window: int = WINDOW) -> dict[str, dict]:
    """``{container name: {"cpu": cores, "memory": bytes}}`` from a
    ``/api/v1.3/docker/`` answer. A container with fewer than two samples has
    no CPU figure yet (None)."""
    out = {}
    for info in payload.values():
        aliases = info.get("aliases") or []
        stats = info.get("stats") or []
        if not aliases or not stats:
            continue
        recent = stats[-window:]
        cpu = None
        if len(recent) >= 2:
            dt = _stamp(recent[-1]["timestamp"]) - _stamp(recent[0]["timestamp"])
            used = recent[-1]["cpu"]["usage"]["total"] - recent[0]["cpu"]["usage"]["total"]
            cpu = max(0.0, used / 1e9 / dt) if dt > 0 else None
        mem = recent[-1].get("memory") or {}
        out[aliases[0]] = {"cpu": cpu, "memory": int(mem.get("working_set") or mem.get("usage") or 0)}
    return out


def fetch(address: str, port: int, timeout: float = 2.0) -> dict[str, dict]:
    """One node's containers (:func:`container_usage`); raises OSError if cAdvisor does not answer."""
    url = f"http://{address}:{port}/api/v1.3/docker/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return container_usage(json.load(resp))
    except (urllib.error.URLError, ValueError) as err:
        raise OSError(f"cAdvisor at {address}:{port}: {err}") from None

