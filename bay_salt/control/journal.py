"""The platform's journal (``bay events``): what the controller decided and
what the runner's operations did, one KV key per event under
:data:`~bay_salt.model.names.KV_EVENTS`, named by time so they list in
order; the controller's reconciliation pass prunes all but the newest
:data:`KEEP`. Writing is best effort: an event that cannot be journalled
(Consul not answering) is logged, and the decision it tells of stands."""

from __future__ import annotations

import json
import logging
import secrets
import time

from bay_salt.kv import store as kvstore
from bay_salt.kv.store import Store
from bay_salt.model import names

log = logging.getLogger("bay.journal")

#: events kept
KEEP = 1000
#: the most one read returns
READ_LIMIT = 500


def event_key(at: float) -> str:
    """Time-ordered (microseconds, fixed width), unique (a random tail)."""
    return f"{names.KV_EVENTS}{int(at * 1_000_000):017d}-{secrets.token_hex(3)}"


def service_of(data: dict) -> str | None:
    """The service an event is about (``group`` is ``SERVICE.GROUP``), None for the platform's own."""
    if isinstance(data.get("service"), str):
        return data["service"]
    group = data.get("group")
    return group.partition(".")[0] if isinstance(group, str) and "." in group else None


def put(store: Store, tag: str, data: dict, now: float | None = None) -> str | None:
    """Journal one event; its key, or None when Consul did not take it (logged)."""
    at = time.time() if now is None else now
    key = event_key(at)
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}  # Salt's own (_stamp)
    try:
        store.apply([kvstore.op_set(key, json.dumps({"at": at, "tag": tag, "data": data}, default=str))])
    except (kvstore.Unavailable, kvstore.TxnError) as err:
        log.warning("bay journal: %s not journalled: %s", tag, err)
        return None
    return key


def read(store: Store, after: str | None = None, service: str | None = None, group: str | None = None,
         visible=lambda service: True, limit: int = 100) -> list[dict]:
    """Events after key ``after`` (None: the newest ``limit``), oldest first,
    about ``service`` (and ``group``) if named, of the services ``visible``
    accepts (the platform's own events: when ``visible(None)``). Each has
    its ``key``, to follow on from."""
    limit = max(1, min(int(limit), READ_LIMIT))
    out = []
    for key, raw in sorted(store.items(names.KV_EVENTS).items()):
        if after is not None and key <= after:
            continue
        try:
            ev = json.loads(raw)
            data = ev.get("data") or {}
        except (ValueError, AttributeError):
            continue
        svc = service_of(data)
        if service is not None and svc != service:
            continue
        if group is not None and data.get("group") not in (None, group):  # a service's own events: each group's
            continue
        if not visible(svc):
            continue
        out.append({"key": key, "at": ev.get("at"), "tag": ev.get("tag"), "data": data})
    return out[:limit] if after is not None else out[-limit:]


def prune(store: Store, keep: int = KEEP) -> int:
    """Delete all but the newest ``keep`` events; how many went."""
    keys = sorted(store.items(names.KV_EVENTS))
    old = keys[:max(0, len(keys) - keep)]
    if old:
        store.apply([kvstore.op_delete(k) for k in old])
    return len(old)
