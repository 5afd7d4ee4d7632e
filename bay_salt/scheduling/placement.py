"""Placement: which node runs each instance of a group.

Spread first (no two instances of a group on one node while another node has
room), then the node with the most free CPU. A node's free capacity is its
capacity (grains ``bay_capacity``) minus what its placed instances reserve.
Either every requested instance fits or none is placed, and the error says
which group and how much is missing; nothing is over-committed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class PlacementError(RuntimeError):
    pass


@dataclass
class Node:
    id: str
    cpus: float
    memory_mb: int
    #: (service, group) -> instances placed here
    groups: Counter = field(default_factory=Counter)
    used_cpus: float = 0.0
    used_memory_mb: int = 0
    schedulable: bool = True

    @property
    def free_cpus(self) -> float:
        return round(self.cpus - self.used_cpus, 6)

    @property
    def free_memory_mb(self) -> int:
        return self.memory_mb - self.used_memory_mb

    def fits(self, cpu: float, memory_mb: int) -> bool:
        return self.schedulable and self.free_cpus >= cpu - 1e-9 and self.free_memory_mb >= memory_mb

    def take(self, key: tuple[str, str], cpu: float, memory_mb: int) -> None:
        self.groups[key] += 1
        self.used_cpus += cpu
        self.used_memory_mb += memory_mb

    def release(self, key: tuple[str, str], cpu: float, memory_mb: int) -> None:
        self.groups[key] -= 1
        self.used_cpus -= cpu
        self.used_memory_mb -= memory_mb


def place(nodes: list[Node], service: str, group: str, count: int, cpu: float, memory_mb: int) -> list[str]:
    """Node ids for ``count`` new instances of ``service.group`` (each ``cpu``
    CPUs and ``memory_mb`` MiB). ``nodes`` is updated only when all fit."""
    key = (service, group)
    chosen: list[str] = []
    for _ in range(count):
        candidates = [n for n in nodes if n.fits(cpu, memory_mb)]
        if not candidates:
            for nid in chosen:  # all or nothing
                next(n for n in nodes if n.id == nid).release(key, cpu, memory_mb)
            missing = count - len(chosen)
            usable = [n for n in nodes if n.schedulable]
            best = max(usable, key=lambda n: (n.free_cpus, n.free_memory_mb), default=None)
            largest = f"; most free: {best.id} with {best.free_cpus:g} CPU / {best.free_memory_mb} MiB" if best else ""
            raise PlacementError(
                f"{service}.{group}: cannot place {missing} of {count} instances of {cpu:g} CPU / {memory_mb} MiB: "
                f"the cluster lacks {missing * cpu:g} CPU / {missing * memory_mb} MiB of free capacity"
                f" on {len(usable)} schedulable nodes{largest}"
            )
        best = min(candidates, key=lambda n: (n.groups[key], -n.free_cpus, -n.free_memory_mb, n.id))
        best.take(key, cpu, memory_mb)
        chosen.append(best.id)
    return chosen


def room(nodes: list[Node], cpu: float, memory_mb: int) -> int:
    """How many more instances of ``cpu`` CPUs and ``memory_mb`` MiB fit on ``nodes``."""
    return sum(int(min(n.free_cpus / cpu, n.free_memory_mb / memory_mb if memory_mb else float("inf")) + 1e-9)
               for n in nodes if n.schedulable)


def pick_for_removal(placements: dict[str, str], nodes: list[Node], count: int) -> list[str]:
    """Which ``count`` instances (``{instance: node}``) to stop when scaling
    down: always from the node with the most instances of the group (keeps
    the spread), then the most loaded of ``nodes`` (if known), then the
    highest node id; highest instance ids first. Pure: ``nodes`` is only read."""
    by_node = {n.id: n for n in nodes}
    per_node: dict[str, list[str]] = {}
    for inst, nid in sorted(placements.items(), reverse=True):
        per_node.setdefault(nid, []).append(inst)
    out = []
    for _ in range(min(count, len(placements))):
        nid = max(per_node, key=lambda k: (len(per_node[k]), by_node[k].used_cpus if k in by_node else 0, k))
        out.append(per_node[nid].pop(0))
        if not per_node[nid]:
            del per_node[nid]
    return out
