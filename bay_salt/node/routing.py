"""HAProxy routing of service groups on every node.

Every group gets a frontend on its ``listen`` port and a backend of server
*slots*. The load-balancer sync fills slots through the Runtime API (set
address and port, set state ready / maint) without a reload; only a new or
removed group, or a backend whose slots run out, needs a re-rendered config
and a hitless reload. The rendered file always states what the Runtime API
holds, so an HAProxy restart loses nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bay_salt.kv.records import Health, Instance, Route
from bay_salt.model import names
from bay_salt.node import templating

MIN_SLOTS = 8
FREE_ADDR = "0.0.0.0"


@dataclass
class Slot:
    name: str
    addr: str = FREE_ADDR
    port: int = 0
    maint: bool = True

    @property
    def free(self) -> bool:
        return self.addr == FREE_ADDR


@dataclass
class Plan:
    commands: list[str] = field(default_factory=list)
    #: backend -> slots after the plan (what the config must state)
    slots: dict[str, list[Slot]] = field(default_factory=dict)
    reload: bool = False
    reasons: list[str] = field(default_factory=list)


def slot_count(servers: int) -> int:
    """Slots for a backend of ``servers``: room to double without a reload."""
    return max(MIN_SLOTS, 2 ** math.ceil(math.log2(max(1, servers) * 2)))


def desired_servers(routes: list[Route], instances: list[Instance]) -> dict[str, set[tuple[str, int]]]:
    """backend -> {(address, port)} of every instance that may take traffic
    (registered and passing)."""
    out: dict[str, set[tuple[str, int]]] = {r.backend: set() for r in routes}
    for i in instances:
        backend = names.haproxy_backend(i.service, i.group)
        if backend in out and i.health == Health.PASSING:
            out[backend].add((i.address, i.port))
    return out


def parse_servers_state(text: str) -> dict[str, list[Slot]]:
    """``show servers state`` (format 1) -> backend -> slots in order."""
    out: dict[str, list[Slot]] = {}
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("# be_id"):
            header = line[2:].split()
            continue
        if not line.strip() or line.startswith("#") or line.strip() == "1":
            continue
        row = dict(zip(header, line.split()))
        admin, op = int(row["srv_admin_state"]), int(row["srv_op_state"])
        # FMAINT/IMAINT: set by us (or inherited); CMAINT (the config's "disabled")
        # stays set after "state ready" on a serving slot, so it counts only while stopped
        maint = bool(admin & 0x03) or (bool(admin & 0x04) and op == 0)
        out.setdefault(row["be_name"], []).append(Slot(row["srv_name"], row["srv_addr"], int(row["srv_port"]), maint))
    return out


def plan(routes: list[Route], instances: list[Instance], current: dict[str, list[Slot]]) -> Plan:
    """Runtime API commands that turn ``current`` into the desired routing, or
    a reload when the running config cannot express it."""
    p = Plan()
    desired = desired_servers(routes, instances)
    for backend in sorted(set(current) - set(desired)):
        if names.is_group_backend(backend):  # a Bay group that is gone
            p.reload = True
            p.reasons.append(f"{backend}: group removed")
    for backend, servers in sorted(desired.items()):
        slots = [Slot(s.name, s.addr, s.port, s.maint) for s in current.get(backend, [])]
        if backend not in current:
            p.reload = True
            p.reasons.append(f"{backend}: new group")
            slots = [Slot(names.haproxy_slot(n)) for n in range(1, slot_count(len(servers)) + 1)]
        wanted = set(servers)
        for s in slots:
            if not s.free and (s.addr, s.port) not in wanted:
                p.commands += [f"set server {backend}/{s.name} state maint",
                               f"set server {backend}/{s.name} addr {FREE_ADDR} port 0"]
                s.addr, s.port, s.maint = FREE_ADDR, 0, True
        placed = {(s.addr, s.port) for s in slots if not s.free}
        free = [s for s in slots if s.free]
        missing = sorted(wanted - placed)
        if len(missing) > len(free):
            p.reload = True
            p.reasons.append(f"{backend}: {len(missing)} new servers, {len(free)} free slots")
            slots += [Slot(names.haproxy_slot(n)) for n in range(len(slots) + 1, slot_count(len(wanted)) + 1)]
            free = [s for s in slots if s.free]
        for (addr, port), s in zip(missing, free):
            p.commands += [f"set server {backend}/{s.name} addr {addr} port {port}",
                           f"set server {backend}/{s.name} state ready"]
            s.addr, s.port, s.maint = addr, port, False
        for s in slots:
            if not s.free and s.maint:  # placed but left in maintenance (e.g. marked down, then back)
                p.commands.append(f"set server {backend}/{s.name} state ready")
                s.maint = False
        p.slots[backend] = slots
    return p


def render(routes: list[Route], slots: dict[str, list[Slot]]) -> str:
    """The services part of the HAProxy config (loaded after the base config)."""
    rows = []
    for r in sorted(routes, key=lambda r: r.backend):
        h = r.health or {}
        rows.append({
            "route": r,
            "inter": int(h.get("interval", 2) * 1000),
            "timeout": int(h.get("timeout", 1) * 1000),
            "rise": h.get("rise", 2),
            "fall": h.get("fall", 3),
            "slots": slots.get(r.backend) or [Slot(names.haproxy_slot(n)) for n in range(1, MIN_SLOTS + 1)],
        })
    return templating.render("haproxy-services.cfg.j2", rows=rows, free=FREE_ADDR)
