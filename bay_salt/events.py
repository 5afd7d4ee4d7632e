"""Bay events: Docker's container events turned into Salt event payloads on
the node, and the rule for trusting them on the master."""

from __future__ import annotations

from bay_salt import names

#: Docker actions the node watcher forwards
ACTIONS = ("die", "oom", "kill", "health_status", "start")


def from_docker(event: dict, node: str) -> tuple[str, dict] | None:
    """``(tag, data)`` for a Docker event about a Bay container, else None."""
    if event.get("Type") != "container":
        return None
    attrs = (event.get("Actor") or {}).get("Attributes") or {}
    if names.LABEL_SERVICE not in attrs:
        return None
    action = event.get("Action", "")
    data = {
        "node": node,
        "service": attrs.get(names.LABEL_SERVICE),
        "group": attrs.get(names.LABEL_GROUP),
        "instance": attrs.get(names.LABEL_INSTANCE),
        "container": attrs.get("name"),
        "time_ns": event.get("timeNano"),
    }
    if action == "die":
        return names.TAG_CONTAINER_DIED, dict(data, exit_code=int(attrs.get("exitCode", -1)))
    if action == "oom":
        return names.TAG_CONTAINER_OOM, data
    if action.startswith("health_status") and action.endswith("unhealthy"):
        return names.TAG_CONTAINER_UNHEALTHY, data
    if action == "start":
        return names.TAG_CONTAINER_STARTED, data
    return None


def trusted(source: str | None, payload: dict, record_node: str | None) -> tuple[bool, str]:
    """An event is trusted only from the minion it speaks about: the
    authenticated sender, the node the payload names and the node the
    instance is registered on must all be the same."""
    if not source:
        return False, "event has no authenticated sender"
    if payload.get("node") != source:
        return False, f"event from {source} names node {payload.get('node')!r}"
    if record_node is None:
        return False, f"instance {payload.get('instance')!r} is not registered"
    if record_node != source:
        return False, f"event from {source} about an instance on {record_node}"
    return True, ""


def backoff(restarts: list[float], now: float, base: float = 1.0, cap: float = 60.0, reset_after: float = 300.0,
            fail_after: int = 8) -> tuple[float, bool]:
    """Crash-loop policy: ``(delay before the next restart, group failed)``.

    ``restarts`` are the times of earlier restarts of the group. Restarts
    older than ``reset_after`` (a run of that long) no longer count; the n-th
    restart in a row waits ``base * 2**(n-1)`` seconds, at most ``cap``; after
    ``fail_after`` restarts in a row the group is failed instead of restarted.
    The first restart is immediate.
    """
    recent = [t for t in restarts if now - t < reset_after]
    n = len(recent)
    if n >= fail_after:
        return 0.0, True
    return (0.0 if n == 0 else min(cap, base * 2 ** (n - 1))), False


def node_changes(previous: dict[str, str] | None, checks: list[dict]) -> tuple[dict[str, str], list[str], list[str]]:
    """From Consul's ``serfHealth`` checks (``/v1/health/state/any``): the new
    ``{node: status}``, the nodes lost (passing -> critical or gone from the
    list) and the nodes back (critical or unlisted -> passing). On the first look
    (``previous`` None, e.g. a restarted controller) every critical node
    counts as lost, so what it ran is placed elsewhere (a no-op if done)."""
    now = {c["Node"]: c["Status"] for c in checks if c.get("CheckID") == "serfHealth"}
    if previous is None:
        return now, sorted(n for n, st in now.items() if st == "critical"), []
    lost = sorted(n for n, st in previous.items() if st == "passing" and now.get(n, "critical") == "critical")
    # back: critical before, or not listed at all (Consul reaps failed servers); a new node
    # counts too, which only means its stray containers are looked for
    back = sorted(n for n, st in now.items() if st == "passing" and previous.get(n, "critical") == "critical")
    for n in lost:
        now.setdefault(n, "critical")
    return now, lost, back
