"""Rule evaluation: numbers in, alerts (pending -> firing -> resolved) out.

Pure functions over one round's numbers: Bay's state as ``{path: value}``
(paths under ``bay.CLUSTER.``) and Graphite's series as ``{path: [(ts,
value), ...]}``. A source that did not answer this round is ``None``: the
alerts of its rules keep their state (no numbers is not "all is well").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable

from bay_salt.alerts.rules import PART_RE, Rule

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"

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


def values(metric: str, rule: Rule, cluster: str, state: dict[str, float] | None,
           series: dict[str, list] | None, now: float) -> dict[Labels, float] | None:
    """``metric``'s value per captured label set (series sharing labels are
    combined: summed, or min/max/avg as the rule reduces); None when the
    rule's source gave nothing this round."""
    prefix = f"bay.{cluster}."
    pat = regex(metric)
    per: dict[Labels, list[float]] = defaultdict(list)
    if rule.source == "state":
        if state is None:
            return None
        items = ((p, v) for p, v in state.items())
    else:
        if series is None:
            return None
        since = now - rule.window
        items = ((p, reduce(pts, rule.reduce, since)) for p, pts in series.items())
    for path, value in items:
        if value is None or not path.startswith(prefix):
            continue
        m = pat.match(path, len(prefix))
        if not m:
            continue
        labels = tuple(sorted(m.groupdict().items()))
        if rule.only_service and dict(labels).get("service") != rule.only_service:
            continue
        per[labels].append(float(value))
    combine = {"min": min, "max": max, "avg": lambda v: sum(v) / len(v)}.get(rule.reduce, sum)
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


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def rule_for(rule: Rule, labels: dict[str, str], per_service: dict[str, dict[str, Rule]]) -> Rule:
    """The rule as the alert's service has it (its overrides), else as it is."""
    return per_service.get(labels.get("service", ""), {}).get(rule.name, rule) if rule.scope == "service" else rule


def observe(rule: Rule, per_service: dict[str, dict[str, Rule]], cluster: str, state: dict[str, float] | None,
            series: dict[str, list] | None, now: float) -> dict[Labels, tuple[float, bool, Rule]] | None:
    """Per label set: ``(value, condition holds, the rule as it applies there)``; None: no numbers."""
    base = values(rule.metric, rule, cluster, state, series, now)
    if base is None:
        return None
    if rule.divide_by:
        divisor = values(rule.divide_by, rule, cluster, state, series, now) or {}
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
            if a.state == PENDING and now - a.since >= r.for_:
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
