"""A service's accepted revisions (``bay history``, ``bay rollback``).

Every deploy that changes what a service runs, every rollback and every
removal is a revision in KV: a number counting up per service, when, who,
what (``deploy``, ``rollback``, ``remove``) and the groups' specs as
deployed (:class:`~bay_salt.model.services.GroupSpec`: secret values are
never in them, only the names). A deploy that changes nothing but counts
makes no revision (counts are operations: ``bay scale``, the autoscaler).
The newest :data:`KEEP` revisions of a service are kept."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from bay_salt.kv import store as kvstore
from bay_salt.kv.store import Store
from bay_salt.model import names
from bay_salt.model.services import GroupSpec

#: revisions kept per service
KEEP = 20

ACTIONS = ("deploy", "rollback", "remove")


@dataclass(frozen=True)
class Revision:
    service: str
    revision: int
    at: float
    by: str
    action: str
    #: group -> its spec as this revision deployed it ({} for a removal of the whole service)
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    #: a rollback: the revision it went back to; a removal of some groups: which
    source: int | None = None
    removed: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"service": self.service, "revision": self.revision, "at": self.at, "by": self.by,
                           "action": self.action, "source": self.source, "removed": list(self.removed),
                           "groups": {g: s.to_dict() for g, s in self.groups.items()}}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Revision:
        d = json.loads(raw)
        return cls(d["service"], int(d["revision"]), float(d["at"]), str(d["by"]), d["action"],
                   {g: GroupSpec.from_dict(s) for g, s in (d.get("groups") or {}).items()}, d.get("source"),
                   tuple(d.get("removed") or ()))

    def summary(self) -> dict:
        """What ``bay history`` shows of it: one row, no spec."""
        return {"revision": self.revision, "at": self.at, "by": self.by, "action": self.action,
                "source": self.source, "removed": list(self.removed),
                "groups": {g: {"image": s.image, "instances": s.instances, "spec": s.spec_hash()}
                           for g, s in sorted(self.groups.items())}}


def revisions(store: Store, service: str) -> list[Revision]:
    """The service's kept revisions, oldest first (unreadable records skipped)."""
    out = []
    for _, raw in sorted(store.items(names.kv_history_prefix(service)).items()):
        try:
            out.append(Revision.from_json(raw))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def find(store: Store, service: str, revision: int) -> Revision:
    """Revision ``revision`` of ``service``; ValueError naming the kept ones if it is not kept."""
    raw = store.get(names.kv_history(service, revision))
    if raw is None:
        kept = [r.revision for r in revisions(store, service)]
        have = f"kept: {', '.join(map(str, kept))}" if kept else "it has no revisions (never deployed)"
        raise ValueError(f"{service}: no revision {revision} ({have}; bay history {service})")
    return Revision.from_json(raw)


def same_specs(a: dict[str, GroupSpec], b: dict[str, GroupSpec]) -> bool:
    """The same groups running the same specs (counts aside)."""
    return set(a) == set(b) and all(a[g].spec_hash() == b[g].spec_hash() for g in a)


def record(store: Store, service: str, action: str, by: str | None, groups: dict[str, GroupSpec],
           source: int | None = None, removed: tuple[str, ...] = (), now: float | None = None) -> Revision | None:
    """Add the next revision of ``service`` (None: a deploy that changed no
    spec, so no revision). Two writers at once: the second's transaction is
    refused (``TxnError``) rather than overwriting the first's revision."""
    if action not in ACTIONS:
        raise ValueError(f"revision action {action!r} (one of {', '.join(ACTIONS)})")
    kept = revisions(store, service)
    last = kept[-1] if kept else None
    if action == "deploy" and last is not None and last.action != "remove" and same_specs(last.groups, groups):
        return None
    rev = Revision(service, (last.revision + 1) if last else 1, time.time() if now is None else now,
                   by or "?", action, dict(groups), source, tuple(removed))
    ops = [kvstore.op_set(names.kv_history(service, rev.revision), rev.to_json(), cas=0)]
    ops += [kvstore.op_delete(names.kv_history(service, old.revision)) for old in kept[:max(0, len(kept) + 1 - KEEP)]]
    store.apply(ops)
    return rev


def running(store: Store, service: str) -> Revision | None:
    """The newest revision that left something running (a removal of every group leaves nothing)."""
    return next((r for r in reversed(revisions(store, service)) if r.groups), None)


def spec_changes(old: GroupSpec | None, new: GroupSpec) -> list[str]:
    """What ``new`` changes of ``old``, a line per field (``bay plan``,
    ``bay history --diff``); environment by name only."""
    if old is None:
        return ["new group"]
    a, b = old.to_dict(), new.to_dict()
    out = []
    for k in sorted(set(a) | set(b)):
        if k in ("service", "group") or a.get(k) == b.get(k):
            continue
        if k == "env":
            ea, eb = a.get(k) or {}, b.get(k) or {}
            out.append("env: " + ", ".join(sorted(n for n in set(ea) | set(eb) if ea.get(n) != eb.get(n))))
        elif isinstance(a.get(k), dict | list) or isinstance(b.get(k), dict | list):
            out.append(f"{k}: changed")
        else:
            out.append(f"{k}: {a.get(k)} -> {b.get(k)}")
    return out
