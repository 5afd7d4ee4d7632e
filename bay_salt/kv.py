"""Bay's runtime state in Consul KV, written in batches with /v1/txn.

Keys live under :data:`bay_salt.names.KV_PREFIX` (see names.kv_*). Consul
1.8 takes at most 64 operations per transaction (65 -> HTTP 413), so writes
are chunked; a logical change of up to 64 operations is one transaction and
so atomic, and a larger one is applied chunk by chunk in order.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
import dataclasses
from dataclasses import asdict, dataclass

import consul

from bay_salt import names

TXN_LIMIT = 64


class TxnError(RuntimeError):
    """A transaction was rolled back; nothing of that chunk was applied."""


@dataclass(frozen=True)
class Instance:
    """One running (or starting) instance of a service group."""

    service: str
    group: str
    instance: str
    node: str
    address: str
    port: int
    health: str = "starting"  # starting | passing | critical
    image: str = ""
    container: str = ""
    spec: str = ""  # bay_salt.containers.spec_hash of what it runs
    #: times the controller restarted this instance's line (it and the ones it replaced): the crash-loop back-off
    restarts: tuple[float, ...] = ()

    @property
    def key(self) -> str:
        return names.kv_instance(self.service, self.group, self.instance)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: bytes | str) -> "Instance":
        # fields this version does not know (a newer writer) are ignored, so
        # nodes and master can be upgraded one at a time
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in json.loads(data).items() if k in known}
        fields["restarts"] = tuple(fields.get("restarts", ()))
        return cls(**fields)


def op_set(key: str, value: str | bytes, cas: int | None = None) -> dict:
    raw = value.encode() if isinstance(value, str) else value
    kv = {"Verb": "set" if cas is None else "cas", "Key": key, "Value": base64.b64encode(raw).decode()}
    if cas is not None:
        kv["Index"] = cas
    return {"KV": kv}


def op_delete(key: str) -> dict:
    return {"KV": {"Verb": "delete", "Key": key}}


def register_ops(instances: Iterable[Instance]) -> list[dict]:
    return [op_set(i.key, i.to_json()) for i in instances]


def deregister_ops(instances: Iterable[Instance]) -> list[dict]:
    return [op_delete(i.key) for i in instances]


def chunks(ops: list[dict], size: int = TXN_LIMIT) -> Iterator[list[dict]]:
    if size < 1 or size > TXN_LIMIT:
        raise ValueError(f"chunk size must be 1..{TXN_LIMIT}")
    for start in range(0, len(ops), size):
        yield ops[start : start + size]


def apply(client: consul.Consul, ops: list[dict]) -> int:
    """Apply ``ops`` in transactions of at most 64; returns how many were sent.
    A rolled-back chunk raises :class:`TxnError` (earlier chunks stay)."""
    sent = 0
    for chunk in chunks(ops):
        try:
            result = client.txn.put(chunk)
        except consul.ConsulException as err:
            raise TxnError(f"transaction of {len(chunk)} operations rolled back: {err}") from None
        if result and result.get("Errors"):
            raise TxnError(f"transaction of {len(chunk)} operations rolled back: {result['Errors']}")
        sent += 1
    return sent


def route_op(group: dict) -> dict:
    """The routing record of a group (``ServiceSpec.groups()`` entry) for every node's HAProxy."""
    rec = {k: group[k] for k in ("service", "group", "listen", "health")}
    return op_set(names.kv_route(group["service"], group["group"]), json.dumps(rec, sort_keys=True))


def read_instances(client: consul.Consul, service: str | None = None, group: str | None = None) -> tuple[int, list[Instance]]:
    """``(index, instances)`` under the prefix (all, one service, or one group)."""
    prefix = f"{names.KV_PREFIX}/instances/"
    if service:
        prefix += f"{service}/"
        if group:
            prefix = names.kv_group_prefix(service, group)
    index, items = client.kv.get(prefix, recurse=True)
    return index, [Instance.from_json(item["Value"]) for item in items or [] if item.get("Value")]
