"""Node liveness as Consul's ``serfHealth`` checks tell it: which nodes are
alive, which were just lost and which are back. Pure."""

from __future__ import annotations


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


def alive(states: dict[str, str]) -> set[str]:
    """The nodes whose serfHealth passes."""
    return {n for n, st in states.items() if st == "passing"}
