"""Service specs: what service developers declare under ``bay:services``.

A service is split by interface into process groups; each group runs its own
instances with their own CPU and memory, so one slow interface cannot take the
others down. Specs are validated here before anything happens; an error names
the service, the group and the field. :class:`GroupSpec` is one group's
effective settings (group values over service values), the typed object every
other part of Bay works with.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from bay_salt.model.base import Secret, Strict
from bay_salt.model.units import memory_mb, seconds

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
#: a repository name of the distribution spec (lower-case components joined by /; no globs)
REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
_HOST_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]{1,5})?$")
_TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def check_image(value: str | None) -> str | None:
    """An image reference ``[HOST[:PORT]/]REPOSITORY[:TAG][@DIGEST]`` as
    Docker reads it (the first part is a host when it has a dot or a port, or
    is ``localhost``); ValueError otherwise. The registry's grants are made
    from these names: a glob in one would grant other teams' repositories."""
    if value is None:
        return None
    name, _, digest = str(value).partition("@")
    first, slash, rest = name.partition("/")
    host = first if slash and ("." in first or ":" in first or first == "localhost") else None
    path = rest if host is not None else name
    last = path.rsplit("/", 1)[-1]
    repo, tag = (path[: len(path) - len(last) + last.index(":")], last.split(":", 1)[1]) if ":" in last else (path, None)
    ok = (len(str(value)) <= 512 and REPOSITORY_RE.match(repo) and (host is None or _HOST_RE.match(host))
          and (tag is None or _TAG_RE.match(tag)) and (not digest or _DIGEST_RE.match(digest)))
    if not ok:
        raise ValueError(f"{value!r} is not an image reference ([HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST], "
                         "lower-case names, no wildcards)")
    return value
#: ports every node already uses (Consul, Salt, HAProxy stats, cAdvisor, Docker)
RESERVED_PORTS = frozenset({4505, 4506, 8080, 8300, 8301, 8302, 8404, 8500, 8600, 2375, 2376})
#: what a running container must match (:meth:`GroupSpec.spec_hash`); anything else is a roll
SPEC_FIELDS = ("image", "command", "args", "env", "cpu", "memory_mb", "port")


#: capabilities Bay takes from every service container (raw sockets: ARP or ICMP spoofing on the
#: bridge; device nodes); the only ones a spec may give back (``security: {cap_add: [...]}``)
DROPPED_CAPABILITIES = ("NET_RAW", "MKNOD")
#: the most processes a service container may run unless its spec says otherwise
PIDS_LIMIT = 1024


class SpecError(ValueError):
    """An invalid service spec; the message names service, group and field."""




def _duration(value):
    return seconds(value)


class Health(Strict):
    """An HTTP path (any 2xx/3xx is healthy) or a plain TCP connect."""

    http: str | None = None
    tcp: bool = False
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = Field(2, ge=1)
    fall: int = Field(3, ge=1)
    start_period: float = 30.0

    _dur = field_validator("interval", "timeout", "start_period", mode="before")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("http")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or any(c.isspace() for c in value)):
            raise ValueError(f"{value!r} is not an absolute URL path without spaces")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Health:
        if bool(self.http) == bool(self.tcp):
            raise ValueError("give exactly one of http: /path or tcp: true")
        if self.timeout > self.interval:
            raise ValueError("timeout must not be longer than interval")
        return self


class Liveness(Strict):
    """Whether the process still works (not only whether it may take traffic):
    run on the instance's node by Bay's node agent; ``failure_threshold``
    failures in a row, past ``initial_delay`` after the start, replace the
    instance. Exactly one of an HTTP path (2xx/3xx is alive), a TCP connect, or
    a command run inside the container (exit 0 is alive). Defaults are
    Kubernetes' (period 10 s, timeout 1 s, 3 failures)."""

    http: str | None = None
    tcp: bool = False
    exec: list[str] | None = None
    interval: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = Field(3, ge=1)
    initial_delay: float = 0.0

    _dur = field_validator("interval", "timeout", "initial_delay", mode="before")(
        classmethod(lambda cls, v: _duration(v)))
    _path = field_validator("http")(classmethod(lambda cls, v: Health._path(v)))

    @model_validator(mode="after")
    def _one_kind(self) -> Liveness:
        if sum((bool(self.http), self.tcp, bool(self.exec))) != 1:
            raise ValueError("give exactly one of http: /path, tcp: true or exec: [command, ...]")
        if self.timeout > self.interval:
            raise ValueError("timeout must not be longer than interval")
        return self


class Autoscale(Strict):
    min: int = Field(ge=1)
    max: int = Field(ge=1)
    target_cpu: float = Field(gt=0, le=1, description="target CPU utilisation of the group's limit, 0-1")
    tolerance: float = Field(0.1, ge=0, lt=1)
    scale_down_window: float = Field(300.0, ge=0, description="seconds (or 30s, 5m)")
    scale_down_step: float = Field(0.5, gt=0, le=1, description="largest share removed per step")

    _dur = field_validator("scale_down_window", mode="before")(classmethod(lambda cls, v: _duration(v)))

    @model_validator(mode="after")
    def _range(self) -> Autoscale:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        return self


class Security(Strict):
    """What a service's containers may do beyond Bay's hardened default (every
    container: ``NET_RAW`` and ``MKNOD`` dropped, ``no-new-privileges``, at
    most :data:`PIDS_LIMIT` processes). ``read_only``: the root filesystem is
    read-only, with a small tmpfs at ``/tmp`` and ``/run``."""

    cap_add: list[str] = []
    read_only: bool = False
    pids_limit: int = Field(PIDS_LIMIT, ge=16, le=65536)

    @field_validator("cap_add")
    @classmethod
    def _only_what_bay_drops(cls, value: list[str]) -> list[str]:
        given = {c.upper().removeprefix("CAP_") for c in value}
        other = sorted(given - set(DROPPED_CAPABILITIES))
        if other:
            raise ValueError(f"{', '.join(other)}: only what Bay drops may be added back "
                             f"({', '.join(DROPPED_CAPABILITIES)}); service containers get no other capability")
        return sorted(given)


class Egress(Strict):
    """One destination a service's containers may reach beyond Bay's sandbox
    (every service container reaches its node's frontends, relay and statsd,
    and its peers' instances; nothing else unless declared). ``to``: an IPv4
    address or network; ``ports``: its ports; nothing of the platform
    (nodes' own ports, masters, HDFS, Kafka, Consul) opens, whatever is declared."""

    to: str
    ports: list[int] = Field(min_length=1, max_length=15)
    protocol: Literal["tcp", "udp"] = "tcp"

    @field_validator("to")
    @classmethod
    def _network(cls, value: str) -> str:
        try:
            return str(ipaddress.IPv4Network(value, strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 address or network (A.B.C.D or A.B.C.D/N)") from None

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        bad = [p for p in value if not 1 <= p <= 65535]
        if bad:
            raise ValueError(f"port {bad[0]} is not in 1..65535")
        return sorted(set(value))


class Group(Strict):
    instances: int = Field(ge=0)
    cpu: float = Field(gt=0, le=64)
    memory: int
    port: int = Field(ge=1, le=65535, description="the port the process listens on in its container")
    listen: int = Field(ge=1, le=65535, description="HAProxy frontend port on every node")
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] = {}
    secret_env: dict[str, Secret] = Field(default_factory=dict)
    health: Health | None = None
    liveness: Liveness | None = None
    autoscale: Autoscale | None = None
    #: the service's ``security`` replaced as a whole for this group
    security: Security | None = None
    #: the service's ``egress`` replaced as a whole for this group
    egress: list[Egress] | None = None

    _mem = field_validator("memory", mode="before")(classmethod(lambda cls, v: memory_mb(v)))
    _image = field_validator("image")(classmethod(lambda cls, v: check_image(v)))

    @field_validator("listen")
    @classmethod
    def _not_reserved(cls, value: int) -> int:
        if value in RESERVED_PORTS:
            raise ValueError(f"port {value} is used by the node itself (reserved: {sorted(RESERVED_PORTS)})")
        return value

    @model_validator(mode="after")
    def _autoscale_bounds(self) -> Group:
        a = self.autoscale
        if a and not a.min <= self.instances <= a.max:
            raise ValueError(f"instances ({self.instances}) is outside autoscale min..max ({a.min}..{a.max})")
        return self


class ServiceLogs(Strict):
    """The service's log topic in Kafka (unset: ``bay:kafka:partitions`` and ``retention``)."""

    partitions: int | None = Field(None, ge=1, le=1024)
    retention: float | None = None

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value):
        if value is None:
            return None
        out = _duration(value)
        if out < 60:
            raise ValueError(f"{value!r}: at least 1m")
        return out


class Service(Strict):
    image: str | None = None
    command: list[str] | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    #: environment whose values are secrets: they reach the container from the node's own
    #: pillar, never through the master's jobs, KV, events or logs (only the names do)
    secret_env: dict[str, Secret] = Field(default_factory=dict)
    health: Health | None = None
    liveness: Liveness | None = None
    owners: list[str] = Field(min_length=1, description="people or teams alerted for this service")
    max_surge: int = Field(1, ge=1, description="instances replaced at a time during a roll")
    security: Security | None = None
    #: what its containers may reach beyond the sandbox (README: "Service containers are sandboxed")
    egress: list[Egress] = []
    groups: dict[str, Group] = Field(min_length=1)
    _image = field_validator("image")(classmethod(lambda cls, v: check_image(v)))
    #: alert rule name -> this service's changes to a default rule, or a rule of its own (docs/alerts.md)
    alerts: dict[str, dict] = {}
    #: its log topic: partitions and retention (docs/logs.md)
    logs: ServiceLogs = Field(default_factory=ServiceLogs)

    @field_validator("alerts")
    @classmethod
    def _alerts(cls, value: dict[str, dict]) -> dict[str, dict]:
        from bay_salt.model.alert_rules import effective

        try:
            effective(None, {"_": value})
        except ValueError as err:
            raise ValueError(str(err).replace("bay:services:_:alerts:", "")) from None
        return value

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: dict[str, Group]) -> dict[str, Group]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(f"group name {name!r} must match {NAME_RE.pattern}")
        return value

    @model_validator(mode="after")
    def _images(self) -> Service:
        for name, g in self.groups.items():
            if not (g.image or self.image):
                raise ValueError(f"groups:{name}:image: no image here nor at the service level")
            both = sorted((set(self.env) | set(g.env)) & (set(self.secret_env) | set(g.secret_env)))
            if both:
                raise ValueError(f"groups:{name}:secret_env: {', '.join(both)} also in env (one or the other)")
        return self


class GroupSpec(Strict):
    """One group's effective settings: what it runs and how many. Immutable;
    :meth:`with_instances` gives a copy at another count. Crosses process
    boundaries (Salt, KV) as :meth:`to_dict` / :meth:`from_dict`."""

    model_config = ConfigDict(frozen=True)  # and unknown fields refused, as every Strict model

    service: str
    group: str
    instances: int
    cpu: float
    memory_mb: int
    port: int
    listen: int
    image: str
    command: list[str] | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    #: the names of its secret environment (the values stay in the nodes' pillar)
    secret_env: list[str] = []
    health: Health | None = None
    liveness: Liveness | None = None
    autoscale: Autoscale | None = None
    owners: list[str] = []
    max_surge: int = 1
    security: Security | None = None
    egress: list[Egress] = []

    @property
    def name(self) -> str:
        """``SERVICE.GROUP``, as users name a group."""
        return f"{self.service}.{self.group}"

    def with_instances(self, count: int) -> GroupSpec:
        return self.model_copy(update={"instances": count})

    def spec_hash(self) -> str:
        """What a running container must match; anything else is a roll."""
        data = self.to_dict()
        hashed = {k: data[k] for k in SPEC_FIELDS}
        if self.secret_env:  # its names (only when there are: the hash of groups without stays as it was)
            hashed["secret_env"] = sorted(self.secret_env)
        if self.security:  # likewise: a group without one keeps its hash
            hashed["security"] = data["security"]
        if self.egress:  # likewise
            hashed["egress"] = data["egress"]
        return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict) -> GroupSpec:
        return cls.model_validate(data)


def _loc(loc: tuple) -> str:
    return ":".join(str(p) for p in loc if not str(p).startswith("function-"))


def _problems(name: str, err: ValidationError) -> list[str]:
    """One line per problem, naming ``service.group: field``."""
    out = []
    for e in err.errors():
        loc = list(e["loc"])
        where = name
        if len(loc) >= 2 and loc[0] == "groups":
            where, loc = f"{name}.{loc[1]}", loc[2:]
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        field = _loc(tuple(loc))
        if not field and msg.startswith("groups:"):  # model-level message that names its group
            grp, _, rest = msg.removeprefix("groups:").partition(":")
            where, msg = f"{name}.{grp}", rest.strip()
        out.append(f"{where}: {field + ': ' if field else ''}{msg}")
    return out


def parse(services: dict[str, Any] | None) -> dict[str, ServiceSpec]:
    """Validate every service; raise :class:`SpecError` listing every problem."""
    problems = []
    out: dict[str, ServiceSpec] = {}
    for name, raw in (services or {}).items():
        if not NAME_RE.match(str(name)):
            problems.append(f"{name}: service name must match {NAME_RE.pattern}")
            continue
        try:
            svc = Service.model_validate(raw if raw is not None else {})
        except ValidationError as err:
            problems += _problems(name, err)
            continue
        out[name] = ServiceSpec(name, svc)
    listens: dict[int, str] = {}
    for spec in out.values():
        for g in spec.groups().values():
            other = listens.setdefault(g.listen, g.name)
            if other != g.name:
                problems.append(f"{g.name}: listen: port {g.listen} is already the frontend of {other}")
    if problems:
        raise SpecError("invalid service spec: " + "; ".join(problems))
    return out


def secret_values(raw: dict, group: str) -> dict[str, str]:
    """A group's secret environment, values included, from the service's raw
    pillar (on the node that starts it: the only place the values go)."""
    return {**(raw.get("secret_env") or {}), **((raw.get("groups") or {}).get(group, {}).get("secret_env") or {})}


class ServiceSpec:
    """A validated service, with each group's effective settings resolved."""

    def __init__(self, name: str, model: Service):
        self.name = name
        self.model = model

    def groups(self) -> dict[str, GroupSpec]:
        """``{group: effective settings}`` (group values over service values)."""
        s = self.model
        out = {}
        for gname, g in s.groups.items():
            out[gname] = GroupSpec(
                service=self.name, group=gname, instances=g.instances, cpu=g.cpu, memory_mb=g.memory, port=g.port,
                listen=g.listen, image=g.image or s.image, command=g.command if g.command is not None else s.command,
                args=g.args if g.args is not None else s.args, env={**s.env, **g.env},
                secret_env=sorted({**s.secret_env, **g.secret_env}), health=g.health or s.health,
                liveness=g.liveness or s.liveness, autoscale=g.autoscale, owners=list(s.owners), max_surge=s.max_surge,
                security=g.security or s.security, egress=g.egress if g.egress is not None else s.egress)
        return out
