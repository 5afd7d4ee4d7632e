"""The records Bay keeps in Consul KV, as typed objects with their JSON form.

* :class:`Instance` under ``bay/instances/SERVICE/GROUP/ID``: one running (or
  starting) instance, where it runs and whether it may take traffic;
* :class:`Route` under ``bay/routes/SERVICE/GROUP``: how every node's HAProxy
  reaches the group (frontend port, health check);
* :class:`Placement` under ``bay/placements/SERVICE/GROUP/ID``: a replacement
  decided but not yet registered (a restarted controller resumes it);
* :class:`Leader` under ``bay/leader/ROLE``: which master acts for a role.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from dataclasses import asdict, dataclass
from enum import StrEnum

from bay_salt.model import envelope, names
from bay_salt.model.services import NAME_RE, GroupSpec

#: an instance id (a container's short id, or a host service's node)
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CONTAINER_ID = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,127})?$")  # an id or a name, or none


class Health(StrEnum):
    """What is known of an instance; only ``passing`` takes traffic.

    ``critical``: running, but its readiness check fails (the node agent says
    so); ``replacing``: dead or hung, the control loop is replacing it."""

    STARTING = "starting"
    PASSING = "passing"
    CRITICAL = "critical"
    REPLACING = "replacing"


def _known(cls, data: dict) -> dict:
    # fields this version does not know (a newer writer) are ignored, so
    # nodes and master can be upgraded one at a time
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in known}


def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Instance:
    """One running (or starting) instance of a service group."""

    service: str
    group: str
    instance: str
    node: str
    address: str
    port: int
    health: Health = Health.STARTING
    image: str = ""
    container: str = ""
    spec: str = ""  # GroupSpec.spec_hash of what it runs
    #: times the controller restarted this instance's line (it and the ones it replaced): the crash-loop back-off
    restarts: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "health", Health(self.health))
        object.__setattr__(self, "restarts", tuple(self.restarts))

    @property
    def key(self) -> str:
        return names.kv_instance(self.service, self.group, self.instance)

    @property
    def group_name(self) -> str:
        return f"{self.service}.{self.group}"

    @property
    def is_container(self) -> bool:
        """False for host services registered like a group (the registry)."""
        return bool(self.container)

    def replace(self, **changes) -> Instance:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        # every field is a scalar or a tuple of floats: read directly (asdict
        # deep-copies each one, most of a 1,000-instance registration's CPU)
        d = {k: self.__dict__[k] for k in _INSTANCE_FIELDS}
        d["health"], d["restarts"] = self.health.value, list(self.restarts)
        return _dumps(d)

    @classmethod
    def from_json(cls, data: bytes | str) -> Instance:
        # the control loop reads every instance on every pass: built directly, not through __init__
        d = json.loads(data)
        try:
            vals = {k: d[k] if k in d else _INSTANCE_DEFAULTS[k] for k in _INSTANCE_FIELDS}
        except KeyError as err:
            raise ValueError(f"instance record without {err}") from None
        vals["health"] = Health(vals["health"])
        vals["restarts"] = tuple(vals["restarts"])
        obj = cls.__new__(cls)
        obj.__dict__.update(vals)
        return obj


_INSTANCE_FIELDS = tuple(f.name for f in dataclasses.fields(Instance))
_INSTANCE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Instance)
                      if f.default is not dataclasses.MISSING}


@dataclass(frozen=True)
class Route:
    """How a group is reached: its frontend port on every node and its
    readiness check (HAProxy's too); and its liveness check (the node agents')."""

    service: str
    group: str
    listen: int
    health: dict | None = None
    liveness: dict | None = None

    @property
    def key(self) -> str:
        return names.kv_route(self.service, self.group)

    @property
    def backend(self) -> str:
        return names.haproxy_backend(self.service, self.group)

    @property
    def mode(self) -> str:
        return "http" if self.health and self.health.get("http") else "tcp"

    def to_json(self) -> str:
        d = asdict(self)
        if d["liveness"] is None:
            del d["liveness"]  # the layout earlier versions wrote, when there is nothing to add
        return _dumps(d)

    @classmethod
    def from_json(cls, data: bytes | str) -> Route:
        d = json.loads(data)
        return cls(d["service"], d["group"], int(d["listen"]), d.get("health"), d.get("liveness"))


@dataclass(frozen=True)
class Accepted:
    """A group as ``bay.deploy`` accepted it (validated, then deployed), at the
    count ``bay.scale`` set since. ``adopted``: taken from the pillar the
    nodes held when a controller found a group running with no accepted spec
    (what an older Bay deployed), not by a deploy."""

    spec: GroupSpec
    at: float = 0.0
    adopted: bool = False

    @property
    def key(self) -> str:
        return names.kv_spec(self.spec.service, self.spec.group)

    def to_json(self) -> str:
        return _dumps({"spec": self.spec.to_dict(), "at": self.at, "adopted": self.adopted})

    @classmethod
    def from_json(cls, data: bytes | str) -> Accepted:
        d = json.loads(data)
        return cls(GroupSpec.from_dict(d["spec"]), float(d.get("at", 0.0)), bool(d.get("adopted", False)))


@dataclass(frozen=True)
class Placement:
    """A replacement decided but not yet registered: ``instance`` (the new id)
    on ``node``, replacing ``replaces`` (whose container was ``container``)."""

    service: str
    group: str
    instance: str
    node: str
    replaces: str = ""
    container: str = ""

    @property
    def key(self) -> str:
        return names.kv_placement(self.service, self.group, self.instance)

    @property
    def new_container(self) -> str:
        return names.service_container(self.service, self.group, self.instance)

    def to_json(self) -> str:
        # the value keeps the layout earlier versions wrote (node, replaces, container)
        return _dumps({"node": self.node, "replaces": self.replaces, "container": self.container})

    @classmethod
    def from_kv(cls, key: str, data: bytes | str | None) -> Placement:
        service, group, instance = names.parse_kv_placement(key)
        d = json.loads(data or b"{}")
        return cls(service, group, instance, d.get("node", ""), d.get("replaces", ""), d.get("container", ""))


@dataclass(frozen=True)
class Leader:
    """The value of a leader lock (``bay/leader/ROLE``, :mod:`bay_salt.master.leader`):
    which master leads, where the nodes reach it (its address for Salt),
    since when and its last beat (wall clock, for people)."""

    master: str
    address: str
    since: float
    beat: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Leader | None:
        """The holder in a lock's value, or None if it names none (a value nobody can read is nobody)."""
        try:
            d = json.loads(raw) if raw else None
            return cls(str(d["master"]), str(d["address"]), float(d["since"]), float(d["beat"])) if d else None
        except (ValueError, TypeError, KeyError):
            return None


def read_leader(store, role: str) -> Leader | None:
    """Who leads ``role`` (one of :data:`bay_salt.model.names.LEADER_ROLES`) as its lock says; None: nobody yet."""
    return Leader.from_json(store.get(names.kv_leader(role)))


# --- records read from KV are data: checked against their key and their types -------------
def _port(value: object, what: str) -> int:
    if type(value) is not int or not 0 < value < 65536:
        raise ValueError(f"{what} {value!r} is not a TCP port")
    return value


def _names(service: object, group: object) -> None:
    for what, value in (("service", service), ("group", group)):
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise ValueError(f"{what} {value!r} is not a service or group name")


def instance_at(key: str, raw: bytes | str) -> Instance:
    """The instance record stored at ``key``: ValueError (naming what is wrong)
    unless its service, group and id are those of the key, its node a minion
    id, its address an IP address, its port a port and its container an id.
    Every reader acts on these records (HAProxy servers, checks, the
    controller), and a token that may write some keys must not speak for others."""
    inst = Instance.from_json(raw)
    _names(inst.service, inst.group)
    if not isinstance(inst.instance, str) or not _INSTANCE_ID.match(inst.instance):
        raise ValueError(f"instance id {inst.instance!r} is not an instance id")
    if inst.key != key:
        raise ValueError(f"record for {inst.key} stored at {key}")
    if not envelope.valid_id(inst.node):
        raise ValueError(f"node {inst.node!r} is not a minion id")
    try:
        ipaddress.ip_address(inst.address)
    except (ValueError, TypeError):
        raise ValueError(f"address {inst.address!r} is not an IP address") from None
    _port(inst.port, "port")
    if not isinstance(inst.container, str) or not _CONTAINER_ID.match(inst.container):
        raise ValueError(f"container {inst.container!r} is not a container id")
    return inst


def route_at(key: str, raw: bytes | str) -> Route:
    """The route stored at ``key``: ValueError unless its service and group
    are those of the key and its frontend port a port."""
    route = Route.from_json(raw)
    _names(route.service, route.group)
    if route.key != key:
        raise ValueError(f"route for {route.key} stored at {key}")
    _port(route.listen, "frontend port")
    for what, check in (("health", route.health), ("liveness", route.liveness)):
        if check is not None and not isinstance(check, dict):
            raise ValueError(f"{what} check {check!r} is not a mapping")
    return route
