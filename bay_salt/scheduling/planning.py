"""The count a group should run (:func:`desired`) and the plan of one group's change: which registered instances to keep, which
to remove, how many to start, which outdated ones the new ones replace. Pure:
records and counts in, a :class:`GroupPlan` out. :func:`fill` places what
short groups miss, all at once (the controller restores them in parallel)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bay_salt.kv.records import Instance
from bay_salt.model.services import GroupSpec
from bay_salt.scheduling import placement


@dataclass
class GroupPlan:
    keep: list[str]
    remove: list[str]  # up to date but beyond the desired count
    start: int  # new instances to start
    replace: list[str]  # outdated instances the new ones replace, in order

    @property
    def changes(self) -> bool:
        return bool(self.remove or self.start or self.replace)


def plan_group(records: list[Instance], desired: int, want: str) -> GroupPlan:
    """What to do with a group whose registered instances are ``records`` so
    that ``desired`` instances run spec ``want``. Instances beyond the count
    are removed from the nodes that hold the most of the group first (the
    spread stays), newest ids first."""
    current = [r for r in records if r.spec == want]
    outdated = sorted(r.instance for r in records if r.spec != want)
    excess = max(0, len(current) - desired)
    remove = sorted(placement.pick_for_removal({r.instance: r.node for r in current}, [], excess))
    keep = sorted(r.instance for r in current if r.instance not in remove)
    return GroupPlan(keep, remove, desired - len(keep), outdated)


def desired(g: GroupSpec, autoscaled: int | None) -> GroupSpec:
    """The group at the count it should run: the autoscaler's last decision
    (within the policy's bounds) for an autoscaled group, else its own; a group
    at 0 stays at 0 (stopped on purpose)."""
    if g.autoscale and g.instances:
        a = g.autoscale
        return g.with_instances(max(a.min, min(a.max, autoscaled or g.instances)))
    return g


def short_by(plan: GroupPlan) -> int:
    """How many instances a group only lacks (0: it has enough, or it needs a
    roll or a scale-down, which a deploy's path carries out)."""
    return 0 if plan.remove or plan.replace else plan.start


@dataclass
class Fill:
    """Starts that bring short groups back to their count: one ``(node,
    group, instance ids)`` per node and group, and the groups that do not
    fit (``{group name: why}``)."""

    starts: list[tuple[str, GroupSpec, list[str]]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def fill(short: list[tuple[GroupSpec, int]], nodes: list[placement.Node], new_id: Callable[[], str]) -> Fill:
    """Place ``missing`` instances of each ``(group, missing)`` on ``nodes``
    (updated as they are taken), each group all or nothing; ``new_id()``
    names each new instance."""
    out = Fill()
    for g, missing in short:
        try:
            where = placement.place(nodes, g.service, g.group, missing, g.cpu, g.memory_mb)
        except placement.PlacementError as err:
            out.refused[g.name] = str(err)
            continue
        per_node: dict[str, list[str]] = {}
        for node in where:
            per_node.setdefault(node, []).append(new_id())
        out.starts += [(node, g, ids) for node, ids in sorted(per_node.items())]
    return out
