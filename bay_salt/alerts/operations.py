"""What people do with alerts (the runner's ``bay.alerts``, ``bay.silence``,
``bay.silences``, ``bay.unsilence``): look at what fires, silence it for a
while with a reason, lift a silence. An owner sees and silences the alerts
of the services they may operate; the platform team everything."""

from __future__ import annotations

import time
import uuid

from bay_salt.alerts import engine, notify, route
from bay_salt.alerts.evaluate import Alert
from bay_salt.kv import store as kvstore
from bay_salt.model import names
from bay_salt.model.access import NotOwner, is_platform, may_operate
from bay_salt.model.units import seconds

#: the longest a silence may last
LONGEST = 30 * 86400.0


def _owners(backend) -> tuple[dict[str, list[str]], list[str], dict[str, list[str]]]:
    services = backend.services()
    admins, teams = backend.access()
    return {s: list((v or {}).get("owners") or []) for s, v in services.items()}, admins, teams


def _sees(user, labels: dict[str, str], owners, admins, teams) -> bool:
    if is_platform(user, admins):
        return True
    svc = labels.get("service")
    return bool(svc) and svc in owners and may_operate(user, owners[svc], admins, teams)


def alerts(backend, user: str | None = None) -> dict:
    """Alerts (pending, firing, resolved not yet told), silences, and
    deliveries that gave up, as ``user`` may see them."""
    store = backend.store()
    owners, admins, teams = _owners(backend)
    now = time.time()
    out = {"alerts": [], "silences": [], "failed_deliveries": []}
    for value in store.items(names.KV_ALERTS_ACTIVE).values():
        a = Alert.from_json(value)
        if _sees(user, a.labels, owners, admins, teams):
            out["alerts"].append({"alert": a.name, "state": a.state, "labels": a.labels, "summary": a.summary,
                                  "since": a.fired_at or a.since})
    for s in sorted(engine.silences(store, now), key=lambda s: s.ends):
        if _sees(user, s.matchers, owners, admins, teams):
            out["silences"].append({**s.__dict__, "active": s.active(now)})
    if is_platform(user, admins):
        for value in store.items(names.KV_ALERTS_FAILED).values():
            d = notify.Delivery.from_json(value)
            out["failed_deliveries"].append({"receiver": d.receiver, "channel": d.channel, "to": d.where,
                                             "subject": d.subject, "attempts": d.attempts, "error": d.last_error})
    out["alerts"].sort(key=lambda a: (a["state"] != "firing", a["alert"], sorted(a["labels"].items())))
    return out


def silence(backend, matchers: list[str], duration: str, reason: str, user: str | None = None) -> dict:
    """A new silence: alerts whose labels match every matcher are not told
    until it ends. An owner's silence names one of their services."""
    parsed = route.parse_matchers(matchers)
    try:
        length = seconds(duration)
    except ValueError as err:
        raise ValueError(f"--for: {err}") from None
    if not 0 < length <= LONGEST:
        raise ValueError(f"--for: a silence lasts more than 0 s and at most 30 days (got {duration})")
    if not reason or not reason.strip():
        raise ValueError("a silence needs a reason (--reason): whoever sees it must know why")
    owners, admins, teams = _owners(backend)
    if not _sees(user, parsed, owners, admins, teams) or (
            not is_platform(user, admins) and any(c in parsed["service"] for c in "*?[")):
        raise NotOwner(f"{user} may silence only alerts of services they operate: give service=NAME of one of "
                       "them (the platform team may silence anything)")
    now = time.time()
    s = route.Silence(uuid.uuid4().hex[:12], parsed, now + length, reason.strip(), user or "root", now)
    backend.store().apply([kvstore.op_set(names.KV_ALERTS_SILENCES + s.id, s.to_json())])
    return {s.id: {"matchers": parsed, "ends": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(s.ends)),
                   "reason": s.reason, "by": s.by}}


def silences(backend, user: str | None = None) -> dict[str, dict]:
    return {s["id"]: s for s in alerts(backend, user)["silences"]}


def unsilence(backend, silence_id: str, user: str | None = None) -> dict:
    """End a silence now (it stays listed for a day)."""
    store = backend.store()
    raw = store.get(names.KV_ALERTS_SILENCES + silence_id)
    if raw is None:
        raise ValueError(f"no silence {silence_id!r} (bay silence list shows them)")
    s = route.Silence.from_json(raw)
    owners, admins, teams = _owners(backend)
    if not _sees(user, s.matchers, owners, admins, teams):
        raise NotOwner(f"{user} may not lift silence {silence_id}: it is not about a service they operate")
    s.ends = min(s.ends, time.time())
    store.apply([kvstore.op_set(names.KV_ALERTS_SILENCES + s.id, s.to_json())])
    return {s.id: "ended"}
