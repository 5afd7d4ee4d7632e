"""What people do with logs (the runner's ``bay.logs`` and
``bay.archived_logs``), and the log topic a deploy makes.

``bay.logs SERVICE.GROUP[/INSTANCE]`` finds where the output is: the
group's live instances (from KV) and what every node keeps of removed ones,
each with the URL its node serves it at, and a token (signed on the master)
that lets the caller read that service's output for a while. The ``bay
logs`` command then reads the URLs itself, so ``--follow`` streams from the
node, not through Salt. An owner gets tokens for their own services only;
the platform team for all.
"""

from __future__ import annotations

import re
import time

from bay_salt.logs import kafka, tokens
from bay_salt.logs.archive import MAX_RECORDS
from bay_salt.logs.kept import parse_since
from bay_salt.model import names
from bay_salt.model.access import NotOwner, may_operate
from bay_salt.model.services import NAME_RE
from bay_salt.scheduling.backend import DeployError

#: where the master keeps the private key it signs log tokens with (root only); master config ``bay_logs_key_file``
KEY_FILE = "/etc/bay/logs-token.key"
#: seconds the nodes have to say what output they keep (a node that does not answer in time is left out)
KEPT_TIMEOUT = 3
#: the longest string an archive search looks for
MAX_GREP = 200
_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def parse_target(target: str) -> tuple[str, str, str | None]:
    """``SERVICE.GROUP[/INSTANCE]`` -> its parts (ValueError naming what is wrong)."""
    head, _, instance = str(target).partition("/")
    service, _, group = head.partition(".")
    if not (NAME_RE.match(service or "") and NAME_RE.match(group or "")) or (instance and not
                                                                            _INSTANCE_RE.match(instance)):
        raise ValueError(f"{target!r}: expected SERVICE.GROUP or SERVICE.GROUP/INSTANCE")
    return service, group, instance or None


def owners_of(backend, store, service: str) -> list[str]:
    """The service's owners as deployed (else as declared); ValueError when there is no such service."""
    deployed = [a.spec.owners for (svc, _), a in store.accepted_all().items() if svc == service]
    if deployed:
        return list(deployed[0])
    declared = (backend.services().get(service) or {}).get("owners")
    if declared:
        return list(declared)
    raise ValueError(f"no service {service!r} (neither deployed nor in bay:services)")


def authorize(backend, store, service: str, user: str | None) -> None:
    admins, teams = backend.access()
    owners = owners_of(backend, store, service)
    if not may_operate(user, owners, admins, teams):
        raise NotOwner(f"{user} may not read the logs of service {service}: its owners are {', '.join(owners)}")


def locate(backend, target: str, previous: bool = False, user: str | None = None,
           signing_key: str | None = None, now: float | None = None) -> dict:
    """Where ``target``'s output is, newest first, and a token to read it."""
    service, group, instance = parse_target(target)
    store = backend.store()
    authorize(backend, store, service, user)
    report = backend.logs_report()
    if not report.get("enabled", True):
        raise ValueError("bay:logs:enabled is false: nodes do not serve containers' output")
    port = int(report.get("port") or 8095)
    addresses = backend.node_addresses()
    entries = []
    for i in store.instances(service, group):
        if i.is_container and (instance is None or i.instance == instance):
            entries.append({"instance": i.instance, "node": i.node, "state": "live", "health": str(i.health),
                            "url": names.log_url(addresses.get(i.node) or i.address, port, service, group,
                                                 i.instance)})
    kept = []
    # the nodes are asked for kept output only when it is wanted: reading live output needs KV
    # alone, so it answers in seconds with a node cut off or a minion away
    wanted = previous or (instance is not None and not entries)
    for node, metas in (backend.kept_all(service, group, timeout=KEPT_TIMEOUT) if wanted else {}).items():
        for m in metas:
            if instance is None or m["instance"] == instance:
                kept.append({"instance": m["instance"], "node": node, "state": "kept", "exit_code": m["exit_code"],
                             "oom_killed": m["oom_killed"], "finished_at": m["finished_at"], "kept_at": m["kept_at"],
                             "url": names.log_url(addresses.get(node, ""), port, service, group, m["instance"])})
    kept.sort(key=lambda e: e["kept_at"], reverse=True)
    if previous:
        entries = kept[:1]
    elif instance is not None:
        entries = entries or kept[:1]
    if not entries:
        what = f"{service}.{group}" + (f"/{instance}" if instance else "")
        raise ValueError(f"{what}: no {'kept' if previous else 'live or kept'} output on any node"
                         + ("" if previous else " (is it deployed? --previous for removed containers)"))
    ttl = float(report.get("token_ttl") or 600)
    now = time.time() if now is None else now
    if not signing_key:
        raise ValueError(f"the master has no key to sign log tokens with ({KEY_FILE})")
    token = tokens.issue(signing_key, user or "root", [service], ttl, now)
    return {"service": service, "group": group, "token": token, "expires": now + ttl, "entries": entries}


def archived(backend, service: str, since: str, grep: str | None = None, limit: int = 1000,
             until: str | None = None, user: str | None = None) -> dict:
    """Archived records of ``service`` (from HDFS, through a node with role ``kafka``)."""
    if not NAME_RE.match(service or ""):
        raise ValueError(f"{service!r} is not a service name")
    store = backend.store()
    authorize(backend, store, service, user)
    report = backend.logs_report()
    if not report.get("archive"):
        raise ValueError("bay:logs:archive:hdfs is not set: there is no archive")
    nodes = report.get("kafka_nodes") or []
    if not nodes:
        raise ValueError("no node with role kafka reads the archive")
    start = parse_since(since or "1h")
    end = parse_since(until) if until else None
    if not 0 < int(limit) <= MAX_RECORDS:
        raise ValueError(f"limit={limit}: from 1 to {MAX_RECORDS} records")
    if grep and len(grep) > MAX_GREP:
        raise ValueError(f"grep: at most {MAX_GREP} characters (a fixed string, not a pattern)")
    records = backend.archived(nodes, service, start, end, grep, int(limit))
    return {"service": service, "since": start, "records": records}


def searched(backend, service: str, query: str | None, since: str, limit: int = 1000, until: str | None = None,
             user: str | None = None) -> dict:
    """Records of ``service`` in the search store matching ``query`` (through a
    node with role ``kafka``: Bay's OpenSearch is on its loopback); an owner
    searches their own services only, and only that service's indices are asked."""
    from bay_salt.logs.search import MAX_HITS, MAX_QUERY

    if not NAME_RE.match(service or ""):
        raise ValueError(f"{service!r} is not a service name")
    store = backend.store()
    authorize(backend, store, service, user)
    report = backend.logs_report()
    if not report.get("search", False):
        raise ValueError("bay:logs:search:enabled is false: logs are not indexed (bay logs SERVICE --archive reads "
                         "the archive)")
    nodes = report.get("kafka_nodes") or []
    if not nodes:
        raise ValueError("no node with role kafka reaches the search store")
    if query and len(query) > MAX_QUERY:
        raise ValueError(f"search: at most {MAX_QUERY} characters")
    if not 0 < int(limit) <= MAX_HITS:
        raise ValueError(f"limit={limit}: from 1 to {MAX_HITS} records")
    start = parse_since(since or "1h")
    end = parse_since(until) if until else None
    return {"service": service, "since": start,
            "records": backend.search_logs(nodes, service, start, end, query or None, int(limit))}


def ensure_topic(backend, spec) -> dict | None:
    """The service's log topic, made or brought to its spec before a deploy
    starts anything (None when there is no Kafka); DeployError when Kafka does not answer."""
    report = backend.logs_report()
    if not (report.get("enabled", True) and report.get("kafka")):
        return None
    partitions, retention = kafka.topic_settings(spec.model.logs.model_dump(), report)
    try:
        return backend.ensure_log_topic(report.get("kafka_nodes") or [], spec.name, partitions, retention)
    except DeployError:
        raise
    except Exception as err:  # noqa: BLE001 - Salt's errors, one line
        raise DeployError(f"{spec.name}: its log topic: {err}") from None
