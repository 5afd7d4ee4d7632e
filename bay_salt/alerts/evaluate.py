"""Rule evaluation: numbers in, alerts (pending -> firing -> resolved) out.

Pure functions over one round's numbers: Bay's state as ``{path: value}``
(paths under ``bay.CLUSTER.``) and Graphite's series as ``{path: [(ts,
value), ...]}``. A source that did not answer this round is ``None``: the
alerts of its rules keep their state (no numbers is not "all is well").
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable

from bay_salt.model.alert_rules import PART_RE, Rule

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"
#: durations are compared with this much slack (rounds fall on multiples of the interval)
EPSILON = 1e-3

Labels = tuple[tuple[str, str], ...]


def _regex(metric: str) -> re.Pattern:
    out = []
    for part in metric.split("."):
        m = PART_RE.fullmatch(part)
        out.append(f"(?P<{m.group(1)}>[^.]+)" if m else "[^.]+" if part == "*" else re.escape(part))
    return re.compile(r"\.".join(out) + "$")


_REGEX: dict[str, re.Pattern] = {}


def regex(metric: str) -> re.Pattern:
    r = _REGEX.get(metric)
    if r is None:
        r = _REGEX[metric] = _regex(metric)
    return r


def target(cluster: str, metric: str) -> str:
    """The Graphite target of a rule's metric: every captured part a wildcard."""
    return f"bay.{cluster}." + PART_RE.sub("*", metric)


def reduce(points: Iterable[tuple[float, float | None]], how: str, since: float) -> float | None:
    vals = [v for ts, v in points if v is not None and ts >= since]
    if not vals:
        return None
    if how == "last":
        return vals[-1]
    if how == "sum":
        return float(sum(vals))
    if how == "min":
        return min(vals)
    if how == "max":
        return max(vals)
    return sum(vals) / len(vals)


class Numbers:
    """One source's numbers (``{path: value}`` or ``{path: [(ts, value), ...]}``)
    by their first one and two parts under ``bay.CLUSTER.``: a rule looks only
    at the names that can match it (a service's own rule at that service's)."""

    def __init__(self, cluster: str, data: dict):
        prefix = f"bay.{cluster}."
        self.one: dict[str, list] = defaultdict(list)
        self.two: dict[tuple[str, str], list] = defaultdict(list)
        for path, v in data.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            a, _, tail = rest.partition(".")
            self.one[a].append((rest, v))
            self.two[(a, tail.partition(".")[0])].append((rest, v))

    def candidates(self, metric: str, only_service: str = "") -> list:
        parts = metric.split(".")
        if PART_RE.fullmatch(parts[0]) or parts[0] == "*":
            return [x for items in self.one.values() for x in items]
        if len(parts) > 1:
            second = parts[1] if not (PART_RE.fullmatch(parts[1]) or parts[1] == "*") else \
                only_service if parts[1] == "{service}" and only_service else None
            if second is not None:
                return self.two.get((parts[0], second), [])
        return self.one.get(parts[0], [])


def numbers(cluster: str, data) -> Numbers | None:
    if data is None or isinstance(data, Numbers):
        return data
    return Numbers(cluster, data)


def values(metric: str, rule: Rule, cluster: str, state, series, now: float,
           how: str | None = None) -> dict[Labels, float] | None:
    """``metric``'s value per captured label set (series sharing labels are
    combined: summed, or min/max/avg as the rule reduces); None when the
    rule's source gave nothing this round. ``state`` and ``series``: dicts
    or :class:`Numbers` of them."""
    pat = regex(metric)
    how = how or rule.reduce
    per: dict[Labels, list[float]] = defaultdict(list)
    if rule.source == "state":
        source = numbers(cluster, state)
        if source is None:
            return None
        items = source.candidates(metric, rule.only_service)
    else:
        source = numbers(cluster, series)
        if source is None:
            return None
        since = now - rule.window
        items = ((p, reduce(pts, how, since)) for p, pts in source.candidates(metric, rule.only_service))
    for path, value in items:
        if value is None:
            continue
        m = pat.match(path)
        if not m:
            continue
        labels = tuple(sorted(m.groupdict().items()))
        if rule.only_service and dict(labels).get("service") != rule.only_service:
            continue
        per[labels].append(float(value))
    combine = {"min": min, "max": max, "avg": lambda v: sum(v) / len(v)}.get(how, sum)
    return {k: combine(v) for k, v in per.items()}


@dataclasses.dataclass
class Alert:
    name: str
    labels: dict[str, str]
    state: str
    since: float
    value: float = 0.0
    fired_at: float | None = None
    resolved_at: float | None = None
    summary: str = ""
    action: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def scope(self) -> str:
        return self.labels.get("scope", "")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Alert:
        return cls(**json.loads(text))


@functools.lru_cache(maxsize=65536)
def _fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    return hashlib.sha256(json.dumps(dict(items), sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(labels: dict[str, str]) -> str:
    """The alert's identity: a hash of its labels (the same on every evaluator, across restarts)."""
    return _fingerprint(tuple(sorted(labels.items())))


def rule_for(rule: Rule, labels: dict[str, str], per_service: dict[str, dict[str, Rule]]) -> Rule:
    """The rule as the alert's service has it (its overrides), else as it is."""
    return per_service.get(labels.get("service", ""), {}).get(rule.name, rule) if rule.scope == "service" else rule


def observe(rule: Rule, per_service: dict[str, dict[str, Rule]], cluster: str, state, series,
            now: float) -> dict[Labels, tuple[float, bool, Rule]] | None:
    """Per label set: ``(value, condition holds, the rule as it applies there)``; None: no numbers."""
    state, series = numbers(cluster, state), numbers(cluster, series)
    base = values(rule.metric, rule, cluster, state, series, now)
    if base is None:
        return None
    if rule.divide_by:
        divisor = values(rule.divide_by, rule, cluster, state, series, now, rule.divide_reduce) or {}
    extra = [values(c.metric, rule, cluster, state, series, now) or {} for c in rule.and_]
    out = {}
    for labels, value in base.items():
        r = rule_for(rule, dict(labels), per_service)
        if r.disabled:
            continue
        if rule.divide_by:
            d = divisor.get(labels)
            if d is None or d <= 0 or d < r.min_divisor:
                out[labels] = (0.0, False, r)
                continue
            value = value / d
        ok = r.holds(value) and all(
            labels in e and c.holds_value(e[labels]) for c, e in zip(rule.and_, extra, strict=True))
        out[labels] = (value, ok, r)
    return out


def step(alerts: dict[str, Alert], rule: Rule, observed: dict[Labels, tuple[float, bool, Rule]] | None,
         now: float) -> list[Alert]:
    """Move ``rule``'s alerts in ``alerts`` (fingerprint -> alert, changed in
    place) one round on; returns the alerts whose state changed (a pending
    alert that clears is removed and not returned: nobody heard of it)."""
    if observed is None:
        return []
    changed = []
    seen = set()
    for labels, (value, holds, r) in observed.items():
        full = {**dict(labels), **r.labels, "alertname": rule.name, "severity": r.severity, "scope": rule.scope}
        fp = fingerprint(full)
        seen.add(fp)
        a = alerts.get(fp)
        if holds:
            if a is None or a.state == RESOLVED:
                a = alerts[fp] = Alert(rule.name, full, PENDING, now)
                changed.append(a)
            a.value, a.summary, a.action = value, r.text(full, value), r.action.format_map(_Fill(full))
            if a.state == PENDING and now - a.since >= r.for_ - EPSILON:
                a.state, a.fired_at = FIRING, now
                if a not in changed:
                    changed.append(a)
        elif a is not None:  # (a resolved alert keeps the numbers it fired with)
            if a.state == PENDING:
                del alerts[fp]
            elif a.state == FIRING:
                a.state, a.resolved_at = RESOLVED, now
                changed.append(a)
    for fp, a in list(alerts.items()):
        if rule.only_service and a.labels.get("service") != rule.only_service:
            continue  # another service's rule of that name
        if a.name == rule.name and fp not in seen and a.state in (PENDING, FIRING):
            # its labels are gone (the group or node no longer exists): it is over
            if a.state == PENDING:
                del alerts[fp]
            else:
                a.state, a.resolved_at = RESOLVED, now
                changed.append(a)
    return changed


class _Fill(dict):
    def __missing__(self, key):
        return "{" + key + "}"
