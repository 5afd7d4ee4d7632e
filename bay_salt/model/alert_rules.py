"""Alert rules: what is watched, the defaults every service and the platform
get, and the overrides pillar gives them.

A rule reads one metric under Bay's naming scheme (``bay.CLUSTER.`` + the
rule's ``metric``; docs/metrics.md). ``{name}`` parts of the metric are
captured as the alert's labels (``groups.{service}.{group}.healthy_ratio``:
one alert per group), ``*`` parts are combined (summed: the traffic of a
group on every node). ``source`` says where the numbers come from:

* ``state``: Bay's own state, read fresh every round (KV, Consul, probes;
  :mod:`bay_salt.alerts.sources`), under the same names Graphite has them;
* ``graphite``: Graphite's render API, reduced over ``window`` seconds.

The condition is ``value OP threshold`` (with ``divide_by``: the ratio of the
two metrics' sums over the window, taken only once the divisor reaches
``min_divisor``), plus optional further conditions on the same labels
(``and``); it must hold ``for`` seconds before the alert fires.

Service rules go to the service's owners, platform rules to the platform
team. ``bay:alerts:rules`` changes a default for everyone (or adds a rule);
a service's ``alerts`` changes one for that service only (threshold, ``for``,
severity, ``disabled``) or adds the service's own rules.
"""

from __future__ import annotations

import operator
import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from bay_salt.model.base import Strict
from bay_salt.model.units import seconds

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
       "!=": operator.ne}
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
METRIC_RE = re.compile(r"^(\{[a-z_]+\}|\*|[A-Za-z0-9_:-]+)(\.(\{[a-z_]+\}|\*|[A-Za-z0-9_:-]+))*$")
PART_RE = re.compile(r"\{([a-z_]+)\}")


class _Strict(Strict):
    model_config = ConfigDict(populate_by_name=True)  # fields by their alias (``for``) or name


def _dur(value):
    return seconds(value)


def check_metric(value: str) -> str:
    if not METRIC_RE.match(value or ""):
        raise ValueError(f"{value!r}: expected dotted parts of a metric under bay.CLUSTER. "
                         "({label} captures a part, * combines)")
    return value


class Condition(_Strict):
    """A further condition on the same labels (all must hold)."""

    metric: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    threshold: float

    _metric = field_validator("metric")(classmethod(lambda cls, v: check_metric(v)))

    def holds_value(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)


class Rule(_Strict):
    """One alert rule (its name is the alert's ``alertname``)."""

    name: str = ""
    scope: Literal["service", "platform"]
    source: Literal["state", "graphite"]
    metric: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    threshold: float
    for_: float = Field(0.0, alias="for", ge=0)
    severity: Literal["critical", "warning", "info"] = "warning"
    #: how a graphite series is reduced over ``window`` seconds
    reduce: Literal["last", "avg", "min", "max", "sum"] = "last"
    window: float = Field(60.0, gt=0)
    divide_by: str = ""
    #: how the divisor's series are reduced over the window (default: as ``reduce``)
    divide_reduce: Literal["last", "avg", "min", "max", "sum"] | None = None
    min_divisor: float = 0.0
    and_: list[Condition] = Field(default_factory=list, alias="and")
    labels: dict[str, str] = {}
    #: one line; {labels}, {value} and {threshold} are filled in
    summary: str = ""
    #: what the person alerted should do
    action: str = ""
    disabled: bool = False
    #: a rule a service added: it sees that service's names only (set by :func:`effective`)
    only_service: str = Field("", exclude=True)

    _d = field_validator("for_", "window", mode="before")(classmethod(lambda cls, v: _dur(v)))
    _metric = field_validator("metric")(classmethod(lambda cls, v: check_metric(v)))

    @field_validator("divide_by")
    @classmethod
    def _divisor(cls, value: str) -> str:
        return check_metric(value) if value else value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for k in value:
            if not re.match(r"^[a-z_][a-z0-9_]*$", k) or k in ("alertname", "severity", "scope"):
                raise ValueError(f"{k!r} is not a label a rule may set")
        return value

    @model_validator(mode="after")
    def _scope_labels(self) -> Rule:
        captured = set(self.captures)
        if self.scope == "service" and not {"service", "group"} <= captured:
            raise ValueError(f"metric {self.metric!r}: a service rule captures {{service}} and {{group}}")
        for c in self.and_:
            if set(PART_RE.findall(c.metric)) != captured:
                raise ValueError(f"and: {c.metric!r} must capture the same labels as {self.metric!r}")
        if self.divide_by and set(PART_RE.findall(self.divide_by)) != captured:
            raise ValueError(f"divide_by: {self.divide_by!r} must capture the same labels as {self.metric!r}")
        return self

    @property
    def captures(self) -> list[str]:
        return PART_RE.findall(self.metric)

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)

    def text(self, labels: dict[str, str], value: float) -> str:
        fill = {**{k: "" for k in ("service", "group", "node", "component", "disk")}, **labels,
                "value": _num(value), "threshold": _num(self.threshold)}
        try:
            return self.summary.format(**fill) if self.summary else \
                f"{self.name}: {self.metric} = {fill['value']} ({self.op} {fill['threshold']})"
        except (KeyError, IndexError, ValueError):
            return self.summary


def _num(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Override(_Strict):
    """What a service (or ``bay:alerts:rules``) may change in a rule it did not define."""

    threshold: float | None = None
    for_: float | None = Field(None, alias="for", ge=0)
    severity: Literal["critical", "warning", "info"] | None = None
    window: float | None = Field(None, gt=0)
    min_divisor: float | None = None
    labels: dict[str, str] | None = None
    summary: str | None = None
    action: str | None = None
    disabled: bool | None = None

    _d = field_validator("for_", "window", mode="before")(classmethod(lambda cls, v: None if v is None else _dur(v)))

    def apply(self, rule: Rule) -> Rule:
        changes = {k: v for k, v in self.model_dump().items() if v is not None}
        return rule.model_copy(update=changes)


# --- the defaults ---------------------------------------------------------------------
def _rule(name: str, **kw) -> Rule:
    return Rule.model_validate({"name": name, **kw})


DEFAULTS: dict[str, Rule] = {r.name: r for r in (
    # --- services: to the owners ---
    _rule("GroupUnhealthy", scope="service", source="state", metric="groups.{service}.{group}.healthy_ratio",
          op="<", threshold=0.5, **{"for": 60}, severity="critical",
          summary="{service}.{group}: {value} of its instances pass their health check (alert below {threshold})",
          action="bay services {service}; the group's instances are not coming back by themselves: "
                 "look at the dead containers' output (below) and at the last deploy"),
    _rule("GroupFailed", scope="service", source="state", metric="groups.{service}.{group}.failed",
          op=">=", threshold=1, severity="critical",
          summary="{service}.{group} is failed: its instances crashed in a loop and are no longer restarted",
          action="fix the image or its configuration (the dead container's last lines are below), then "
                 "salt-run bay.deploy {service} starts the group again"),
    _rule("ErrorRate", scope="service", source="graphite", metric="traffic.{service}.{group}.*.errors_5xx",
          divide_by="traffic.{service}.{group}.*.requests", min_divisor=100, reduce="sum", window=300,
          op=">", threshold=0.05, **{"for": 300}, severity="warning",
          summary="{service}.{group} answers {value} of its requests with 5xx (alert above {threshold})",
          action="the service's own errors: its logs, its dependencies, the last deploy"),
    _rule("CpuSaturatedAtMax", scope="service", source="state",
          metric="groups.{service}.{group}.autoscale.utilisation", op=">", threshold=0.9,
          **{"and": [{"metric": "groups.{service}.{group}.autoscale.at_max", "op": ">=", "threshold": 1}],
             "for": 300}, severity="warning",
          summary="{service}.{group} uses {value} of its CPU at its autoscale maximum",
          action="raise autoscale:max of {service}.{group} (the cluster has room?) or make it cheaper"),
    # per instance: single containers dying here and there are the controller's business, not people's
    _rule("RestartsHigh", scope="service", source="graphite", metric="groups.{service}.{group}.restarts",
          reduce="sum", window=600, divide_by="groups.{service}.{group}.desired", divide_reduce="last",
          min_divisor=1, op=">", threshold=5, severity="warning",
          summary="{service}.{group}: {value} restarts per instance in 10 minutes",
          action="its containers keep dying: their output and their memory limit (OOM?)"),
    # --- the platform: to the platform team ---
    _rule("NodeLost", scope="platform", source="state", metric="nodes.{node}.alive", op="<", threshold=1,
          severity="critical", summary="node {node} is lost (Consul: not alive); its instances run elsewhere",
          action="bring the server back or take it out of bay:nodes"),
    _rule("ComponentDown", scope="platform", source="graphite", metric="nodes.{node}.components.{component}",
          reduce="last", window=60, op="<", threshold=1, **{"for": 30}, severity="critical",
          summary="{component} is down on {node}",
          action="systemctl status {component} on {node}; salt {node} state.apply bay"),
    _rule("DiskFull", scope="platform", source="graphite", metric="nodes.{node}.disk.{disk}.percent",
          reduce="avg", window=300, op=">", threshold=90, **{"for": 300}, severity="warning",
          summary="{disk} on {node} is {value}% full", action="free space on {node} (docker system prune?)"),
    _rule("MemoryFull", scope="platform", source="graphite", metric="nodes.{node}.memory_percent",
          reduce="avg", window=300, op=">", threshold=95, **{"for": 300}, severity="warning",
          summary="{node} uses {value}% of its memory", action="move groups away from {node} or add memory"),
    _rule("RegistryDown", scope="platform", source="state", metric="platform.registry.answering",
          op="<", threshold=1, **{"for": 60}, severity="critical",
          summary="no registry instance answers", action="systemctl status bay-registry on the registry nodes"),
    _rule("RegistryStorageDown", scope="platform", source="state", metric="platform.registry.storage_answering",
          op="<", threshold=1, **{"for": 60}, severity="critical",
          summary="the registry's HDFS does not answer", action="the HDFS namenode (bay:registry:storage)"),
    _rule("ConsulNoLeader", scope="platform", source="state", metric="platform.consul.leader", op="<",
          threshold=1, **{"for": 30}, severity="critical",
          summary="Consul has no leader: KV and routing changes stop",
          action="consul members on a server; bring back a quorum of bay:consul:servers"),
    _rule("ControllerNotReconciling", scope="platform", source="state", metric="platform.reconcile.age_seconds",
          op=">", threshold=60, **{"for": 60}, severity="critical",
          summary="the controller's last reconciliation pass was {value} s ago",
          action="the salt-master's log (bay controller); restart the salt-master"),
    _rule("GraphiteNotReceiving", scope="platform", source="state", metric="platform.graphite.age_seconds",
          op=">", threshold=60, **{"for": 60}, severity="warning",
          summary="Graphite's newest agent point is {value} s old",
          action="systemctl status bay-carbon bay-graphite-web on the monitoring node"),
    _rule("NotificationsFailing", scope="platform", source="state", metric="platform.alerts.failed_sends",
          op=">=", threshold=1, severity="warning",
          summary="{value} alert notifications could not be delivered", action="bay alerts; bay:alerts:smtp"),
)}


class RuleError(ValueError):
    """A rule in pillar that cannot be used (names where: pillar key, rule, field)."""


def _error(where: str, err: Exception) -> RuleError:
    if hasattr(err, "errors"):
        parts = []
        for e in err.errors():
            loc = ":".join(str(p) for p in e["loc"])
            parts.append(f"{where}{':' + loc if loc else ''}: {e['msg'].removeprefix('Value error, ')}")
        return RuleError("; ".join(parts))
    return RuleError(f"{where}: {err}")


def effective(site: dict | None, services: dict[str, dict]) -> tuple[list[Rule], dict[str, dict[str, Rule]]]:
    """The rules in force: ``(rules, per_service)``.

    ``site``: ``bay:alerts:rules`` (name -> an override of a default, or a whole
    new rule). ``services``: service -> its ``alerts`` (the same, for that
    service only). ``per_service[service][rule]`` is a rule as that service
    has it (only where it differs); rules a service adds are in ``rules``
    already bound to it. Raises :class:`RuleError` naming the key."""
    rules = dict(DEFAULTS)
    for name, body in (site or {}).items():
        where = f"bay:alerts:rules:{name}"
        if not NAME_RE.match(name):
            raise RuleError(f"{where}: a rule name is letters, digits and _ (the alert's alertname)")
        try:
            rules[name] = Override.model_validate(body or {}).apply(rules[name]) if name in rules else \
                Rule.model_validate({**(body or {}), "name": name})
        except ValueError as err:
            raise _error(where, err) from None
    per_service: dict[str, dict[str, Rule]] = {}
    own: list[Rule] = []
    for svc, spec in sorted(services.items()):
        for name, body in sorted((spec or {}).items()):
            where = f"bay:services:{svc}:alerts:{name}"
            if not NAME_RE.match(name):
                raise RuleError(f"{where}: a rule name is letters, digits and _ (the alert's alertname)")
            try:
                if name in rules:
                    if rules[name].scope != "service":
                        raise ValueError(f"{name} is a platform rule; a service changes only service rules")
                    per_service.setdefault(svc, {})[name] = Override.model_validate(body or {}).apply(rules[name])
                else:
                    r = Rule.model_validate({**(body or {}), "name": name, "scope": "service"})
                    own.append(r.model_copy(update={"only_service": svc}))
            except ValueError as err:
                raise _error(where, err) from None
    return [r for r in rules.values() if not r.disabled] + own, per_service
