"""Who hears of an alert, and when: routing, grouping, de-duplication,
repeats, inhibition and silences (Prometheus Alertmanager's model, which
users know: ``group_wait``, ``group_interval``, ``repeat_interval``).

* An alert about a service goes to the service's ``owners`` (a team in
  ``bay:teams`` reaches its own contact if it has one, else its people);
  platform and server alerts go to ``bay:alerts:platform_team``. An owner
  with no contact: the platform team gets it, and the notification says so.
* Alerts are grouped per receiver by ``alertname`` and the service group
  (platform alerts: by ``alertname``); a group is notified ``group_wait``
  after its first alert fires, again at most every ``group_interval`` when
  what fires in it changed (an alert in or out, or resolved), and every
  ``repeat_interval`` while the same alerts keep firing. The notification
  log (what each receiver was last told of each group) lives in KV, so a
  restarted evaluator does not tell anyone twice.
* Inhibition: a lost node silences the alerts about it (label ``node``) and
  the service alerts whose failing instances were all on lost nodes (the
  controller is already moving them).
* Silences: label matchers (``fnmatch`` patterns), an expiry and a reason.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import time

from bay_salt.alerts.evaluate import EPSILON, FIRING, RESOLVED, Alert

#: the alert that inhibits the others about its node
NODE_LOST = "NodeLost"


@dataclasses.dataclass(frozen=True)
class Timing:
    group_wait: float = 5.0
    group_interval: float = 60.0
    repeat_interval: float = 4 * 3600.0


@dataclasses.dataclass
class Silence:
    id: str
    matchers: dict[str, str]
    ends: float
    reason: str
    by: str = ""
    starts: float = 0.0

    def active(self, now: float) -> bool:
        return self.starts <= now < self.ends

    def matches(self, labels: dict[str, str]) -> bool:
        return all(fnmatch.fnmatchcase(labels.get(k, ""), v) for k, v in self.matchers.items())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Silence:
        return cls(**json.loads(text))


def parse_matchers(items: list[str]) -> dict[str, str]:
    """``["service=demo", "group=web*"]`` -> matchers; ValueError naming a bad one."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{item!r}: a matcher is LABEL=VALUE (VALUE may use * and ?)")
        out[key.strip()] = value.strip()
    if not out:
        raise ValueError("a silence needs at least one matcher (LABEL=VALUE), say service=demo")
    return out


@dataclasses.dataclass
class Directory:
    """Who is who: contacts (name -> ``{"email": [...], "webhook": [...]}``),
    the platform team (contact names), teams (name -> people) and each
    service's owners."""

    contacts: dict[str, dict]
    platform_team: list[str]
    teams: dict[str, list[str]]
    owners: dict[str, list[str]]

    def receivers(self, alert: Alert) -> tuple[list[str], str]:
        """Contact names for ``alert`` and a note when routing had to fall back."""
        if alert.scope != "service":
            return sorted(set(self.platform_team)), ""
        service = alert.labels.get("service", "")
        found, missing = set(), []
        for owner in self.owners.get(service, []):
            if owner in self.contacts:
                found.add(owner)
            elif owner in self.teams and any(p in self.contacts for p in self.teams[owner]):
                found.update(p for p in self.teams[owner] if p in self.contacts)
            else:
                missing.append(owner)
        if found:
            return sorted(found), ""
        why = (f"no contact in bay:alerts:contacts for {service}'s owners ({', '.join(missing)})" if missing
               else f"{service} has no owners")
        return sorted(set(self.platform_team)), why


def inhibited(alert: Alert, alerts: list[Alert], nodes_of: dict[tuple[str, str], set[str]]) -> bool:
    """A lost node holds back the alerts about it and about groups whose
    failing instances were all on lost nodes (``nodes_of``: (service, group)
    -> the nodes of its instances that are not passing)."""
    if alert.name == NODE_LOST:
        return False
    lost = {a.labels.get("node") for a in alerts if a.name == NODE_LOST and a.state == FIRING}
    if not lost:
        return False
    if alert.labels.get("node") in lost:
        return True
    if alert.scope == "service":
        where = nodes_of.get((alert.labels.get("service", ""), alert.labels.get("group", "")), set())
        return bool(where) and where <= lost
    return False


def silenced_by(alert: Alert, silences: list[Silence], now: float) -> Silence | None:
    return next((s for s in silences if s.active(now) and s.matches(alert.labels)), None)


def group_labels(alert: Alert) -> dict[str, str]:
    keys = ("alertname", "service", "group") if alert.scope == "service" else ("alertname",)
    return {k: alert.labels[k] for k in keys if k in alert.labels}


def group_id(receiver: str, labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([receiver, labels], sort_keys=True).encode()).hexdigest()[:20]


@dataclasses.dataclass
class Notification:
    receiver: str
    group: dict[str, str]
    firing: list[Alert]
    resolved: list[Alert]
    note: str = ""

    @property
    def key(self) -> str:
        return group_id(self.receiver, self.group)

    @property
    def status(self) -> str:
        return FIRING if self.firing else RESOLVED


@dataclasses.dataclass
class Sent:
    """What a receiver was last told of a group (the notification log)."""

    firing: list[str]
    at: float
    first: float = 0.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Sent:
        return cls(**json.loads(text))


def plan(alerts: list[Alert], log: dict[str, Sent], directory: Directory, silences: list[Silence],
         nodes_of: dict[tuple[str, str], set[str]], timing: Timing, now: float) -> tuple[list[Notification],
                                                                                       dict[str, Sent | None]]:
    """The notifications due now, and the log entries they change (None: the
    group is over and its entry goes). Alerts held back (silenced,
    inhibited) are not told, neither as firing nor as resolved."""
    groups: dict[str, dict] = {}
    for a in alerts:
        if a.state not in (FIRING, RESOLVED):
            continue
        quiet = a.state == FIRING and bool(silenced_by(a, silences, now) or inhibited(a, alerts, nodes_of))
        receivers, note = directory.receivers(a)
        for r in receivers:
            labels = group_labels(a)
            g = groups.setdefault(group_id(r, labels), {"receiver": r, "labels": labels, "firing": [],
                                                        "quiet": set(), "resolved": [], "note": note})
            if quiet:
                g["quiet"].add(a.fingerprint)
            elif a.state == FIRING:
                g["firing"].append(a)
            else:
                g["resolved"].append(a)
    out: list[Notification] = []
    changes: dict[str, Sent | None] = {}
    for key, g in groups.items():
        sent = log.get(key)
        told = set(sent.firing) if sent else set()
        firing = sorted(g["firing"], key=lambda a: a.fingerprint)
        fps = [a.fingerprint for a in firing]
        resolved = sorted((a for a in g["resolved"] if a.fingerprint in told), key=lambda a: a.fingerprint)
        # held back: neither told again nor told it stopped (it has not)
        kept = sorted(told & g["quiet"])
        if not firing and not resolved:
            continue
        n = Notification(g["receiver"], g["labels"], firing, resolved, g["note"])
        if sent is None:
            oldest = min(a.fired_at or now for a in firing)
            due = now - oldest >= timing.group_wait - EPSILON
        elif set(fps) != told - g["quiet"] or resolved:
            due = now - sent.at >= timing.group_interval - EPSILON
        else:
            due = now - sent.at >= timing.repeat_interval - EPSILON
        if due:
            out.append(n)
            changes[key] = Sent(sorted(fps + kept), now, sent.first if sent else now) if fps or kept else None
    # entries of groups with nothing left at all (their alerts were forgotten)
    for key in log:
        if key not in groups:
            changes[key] = None
    return out, changes


# --- what a notification says -------------------------------------------------------------
def _iso(ts: float | None) -> str:
    if not ts:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    keys = set(dicts[0]).intersection(*dicts[1:])
    return {k: dicts[0][k] for k in sorted(keys) if all(d[k] == dicts[0][k] for d in dicts)}


def annotations(a: Alert, extra: dict[str, str]) -> dict[str, str]:
    out = {"summary": a.summary, "value": f"{a.value:.4g}", "action": a.action}
    out.update({k: v for k, v in extra.items() if v})
    return out


def webhook_payload(n: Notification, cluster: str, external_url: str,
                    extra: dict[str, dict[str, str]] | None = None) -> dict:
    """Alertmanager's webhook payload (version 4): what existing receivers read."""
    extra = extra or {}
    items = []
    for a in n.firing + n.resolved:
        firing = a in n.firing
        items.append({
            "status": FIRING if firing else RESOLVED,
            "labels": {**a.labels, "cluster": cluster},
            "annotations": annotations(a, extra.get(a.fingerprint, {})),
            "startsAt": _iso(a.fired_at or a.since),
            "endsAt": _iso(None if firing else (a.resolved_at or time.time())),
            "generatorURL": extra.get(a.fingerprint, {}).get("dashboard", external_url),
            "fingerprint": a.fingerprint,
        })
    return {
        "version": "4",
        "groupKey": f"{{}}:{json.dumps(n.group, sort_keys=True)}",
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group,
        "commonLabels": _common([i["labels"] for i in items]),
        "commonAnnotations": _common([i["annotations"] for i in items]),
        "externalURL": external_url,
        "alerts": items,
    }


def subject(n: Notification, cluster: str) -> str:
    what = " ".join(v for k, v in n.group.items() if k != "alertname")
    state = f"FIRING:{len(n.firing)}" if n.firing else "RESOLVED"
    return f"[{state}] {n.group.get('alertname', '')}{' ' + what if what else ''} ({cluster})"


def text(n: Notification, cluster: str, extra: dict[str, dict[str, str]] | None = None) -> str:
    """The e-mail body: each alert, its numbers, what to do, where to look."""
    extra = extra or {}
    lines = [subject(n, cluster), ""]
    if n.note:
        lines += [f"Note: {n.note}; you get it as the platform team.", ""]
    for title, part in (("Firing", n.firing), ("Resolved", n.resolved)):
        if not part:
            continue
        lines.append(f"{title}:")
        for a in part:
            ex = extra.get(a.fingerprint, {})
            lines.append(f"- {a.summary}")
            lines.append(f"  value: {a.value:.4g}; since {_iso(a.fired_at or a.since)}"
                         + (f"; resolved {_iso(a.resolved_at)}" if a.state == RESOLVED else ""))
            labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
            lines.append(f"  labels: {labels}")
            if a in n.firing and a.action:
                lines.append(f"  what to do: {a.action}")
            if ex.get("dashboard"):
                lines.append(f"  dashboard: {ex['dashboard']}")
            if ex.get("output") and a in n.firing:
                lines.append("  last output of the dead container:")
                lines += [f"    {ln}" for ln in ex["output"].splitlines()]
        lines.append("")
    return "\n".join(lines)
