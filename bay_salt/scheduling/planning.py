"""The count a group should run (:func:`desired`) and the plan of one group's change: which registered instances to keep, which
to remove, how many to start, which outdated ones the new ones replace. Pure:
records and counts in, a :class:`GroupPlan` out."""

from __future__ import annotations

from dataclasses import dataclass

from bay_salt.kv.records import Instance
from bay_salt.model.services import GroupSpec
from bay_salt.scheduling.placement import pick_for_removal


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
    remove = sorted(pick_for_removal({r.instance: r.node for r in current}, [], excess))
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
