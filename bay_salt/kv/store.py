"""Reading and writing Bay's records in Consul KV, in transactions.

Consul 1.8 takes at most 64 operations per ``/v1/txn`` (65 -> HTTP 413), so
writes are chunked; a logical change of up to 64 operations is one
transaction and so atomic, and a larger one is applied chunk by chunk in
order. :class:`Store` is the interface the control loop and the deployer use;
:class:`ConsulStore` is it over a real Consul agent (tests also run the same
code over an in-memory store).
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

import consul
import requests

from bay_salt.kv.records import Instance, Placement, Route
from bay_salt.model import names

TXN_LIMIT = 64
#: seconds a Consul request may take before the caller hears that Consul is not answering
TIMEOUT = 5.0


class TxnError(RuntimeError):
    """A transaction was rolled back; nothing of that chunk was applied."""


class Unavailable(RuntimeError):
    """Consul does not answer (no leader, not reachable); the message says which."""


def op_set(key: str, value: str | bytes, cas: int | None = None) -> dict:
    raw = value.encode() if isinstance(value, str) else value
    kv = {"Verb": "set" if cas is None else "cas", "Key": key, "Value": base64.b64encode(raw).decode()}
    if cas is not None:
        kv["Index"] = cas
    return {"KV": kv}


def op_delete(key: str) -> dict:
    return {"KV": {"Verb": "delete", "Key": key}}


def op_put(record: Instance | Route | Placement) -> dict:
    return op_set(record.key, record.to_json())


def register_ops(instances: Iterable[Instance]) -> list[dict]:
    return [op_put(i) for i in instances]


def deregister_ops(instances: Iterable[Instance]) -> list[dict]:
    return [op_delete(i.key) for i in instances]


def chunks(ops: list[dict], size: int = TXN_LIMIT) -> Iterator[list[dict]]:
    if size < 1 or size > TXN_LIMIT:
        raise ValueError(f"chunk size must be 1..{TXN_LIMIT}")
    for start in range(0, len(ops), size):
        yield ops[start : start + size]


class Store(ABC):
    """Bay's records in a KV store: three primitives, and the reads built on them."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The value at ``key``, or None."""

    @abstractmethod
    def items(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` with its value."""

    @abstractmethod
    def txn(self, ops: list[dict]) -> None:
        """Apply at most 64 operations atomically; :class:`TxnError` if rolled back."""

    def apply(self, ops: list[dict]) -> int:
        """Apply ``ops`` in transactions of at most 64; returns how many were
        sent. A rolled-back chunk raises :class:`TxnError` (earlier chunks stay)."""
        sent = 0
        for chunk in chunks(ops):
            self.txn(chunk)
            sent += 1
        return sent

    # --- reads -----------------------------------------------------------------------
    def instances(self, service: str | None = None, group: str | None = None) -> list[Instance]:
        """Instance records (all, one service's, or one group's)."""
        return [Instance.from_json(v) for v in self.items(names.kv_instances_prefix(service, group)).values() if v]

    def instance(self, service: str, group: str, instance: str) -> Instance | None:
        value = self.get(names.kv_instance(service, group, instance))
        return Instance.from_json(value) if value else None

    def routes(self) -> list[Route]:
        return [Route.from_json(v) for v in self.items(names.kv_routes_prefix()).values() if v]

    def placements(self) -> list[Placement]:
        return [Placement.from_kv(k, v) for k, v in self.items(names.kv_placements_prefix()).items()]

    def failed(self, service: str, group: str) -> str | None:
        """Why the controller gave up on a group (crash loop), or None."""
        value = self.get(names.kv_failed(service, group))
        return value.decode() if value else None

    def ensure(self, key: str, value: str) -> bool:
        """Write ``value`` at ``key`` unless it is there already; True if written."""
        if self.get(key) == value.encode():
            return False
        self.apply([op_set(key, value)])
        return True


def _consul_error(err: Exception, where: str) -> Exception:
    text = str(err) or type(err).__name__
    if "No cluster leader" in text:
        return Unavailable(f"Consul at {where} has no leader (the servers lost their quorum)")
    if isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, OSError)):
        return Unavailable(f"Consul at {where} does not answer ({text.splitlines()[0][:120]})")
    return Unavailable(f"Consul at {where}: {text[:200]}")


class ConsulStore(Store):
    """The store over a Consul agent's HTTP API (``client``: a py-consul client)."""

    def __init__(self, client: consul.Consul):
        self.client = client

    @property
    def where(self) -> str:
        return f"{self.client.http.host}:{self.client.http.port}"

    def get(self, key: str) -> bytes | None:
        try:
            _, item = self.client.kv.get(key)
        except (consul.ConsulException, requests.exceptions.RequestException, OSError) as err:
            raise _consul_error(err, self.where) from None
        return item["Value"] if item and item.get("Value") is not None else None

    def items(self, prefix: str) -> dict[str, bytes]:
        try:
            _, items = self.client.kv.get(prefix, recurse=True)
        except (consul.ConsulException, requests.exceptions.RequestException, OSError) as err:
            raise _consul_error(err, self.where) from None
        return {i["Key"]: i["Value"] or b"" for i in items or []}

    def txn(self, ops: list[dict]) -> None:
        try:
            result = self.client.txn.put(ops)
        except consul.ConsulException as err:
            if "No cluster leader" in str(err):
                raise _consul_error(err, self.where) from None
            raise TxnError(f"transaction of {len(ops)} operations rolled back: {err}") from None
        except (requests.exceptions.RequestException, OSError) as err:
            raise _consul_error(err, self.where) from None
        if result and result.get("Errors"):
            raise TxnError(f"transaction of {len(ops)} operations rolled back: {result['Errors']}")


def client(host: str, port: int, timeout: float = TIMEOUT, token: str | None = None) -> consul.Consul:
    """A py-consul client whose requests give up after ``timeout`` seconds."""
    return consul.Consul(host=host, port=port, token=token, connections_timeout=timeout)


def first_answering(servers: list[str], port: int, timeout: float = TIMEOUT) -> ConsulStore:
    """A store on the first Consul server in ``servers`` that has a leader;
    :class:`Unavailable` says how many answered and whether any had a leader."""
    problems = []
    for addr in servers:
        c = client(addr, port, timeout)
        try:
            if c.status.leader():
                return ConsulStore(c)
            problems.append(f"{addr}: no leader")
        except (consul.ConsulException, requests.exceptions.RequestException, OSError) as err:
            problems.append(f"{addr}: {str(err).splitlines()[0][:80] if str(err) else type(err).__name__}")
    answered = sum(1 for p in problems if p.endswith("no leader"))
    raise Unavailable(f"Consul has no leader: {answered} of {len(servers)} servers reachable ({'; '.join(problems)})"
                      if answered else f"no Consul server answered ({'; '.join(problems)})")
