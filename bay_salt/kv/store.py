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
import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import consul
import requests
from consul.callback import CB

from bay_salt.kv.records import Accepted, Instance, Placement, Route, instance_at, route_at
from bay_salt.model import names

log = logging.getLogger("bay.kv")

TXN_LIMIT = 64
#: seconds a Consul request may take before the caller hears that Consul is not answering
TIMEOUT = 5.0


class Servers(NamedTuple):
    """Where the Consul servers' API is reached from off the nodes (the
    master): their addresses, the port, and the CA their HTTPS certificates
    are checked against (None: plain HTTP)."""

    addresses: list[str]
    port: int
    ca_file: str | None = None


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


def op_put(record: Instance | Route | Placement | Accepted) -> dict:
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
    """Bay's records in a KV store: three primitives, and the reads built on them.
    ``fence``: operations every transaction starts with (the acting
    controller's check that it still holds its lock, :mod:`bay_salt.master.leader`),
    so that a write made after the lock is lost is rolled back whole."""

    fence: Callable[[], list[dict]] | None = None

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
        fence = self.fence() if self.fence else []
        for chunk in chunks(ops, TXN_LIMIT - len(fence)):
            self.txn(fence + chunk)
            sent += 1
        return sent

    # --- reads -----------------------------------------------------------------------
    def instances(self, service: str | None = None, group: str | None = None) -> list[Instance]:
        """Instance records (all, one service's, or one group's); a record that
        is not what its key says is ignored (and logged once)."""
        out = []
        for k, v in self.items(names.kv_instances_prefix(service, group)).items():
            inst = _valid(instance_at, k, v)
            if inst is not None:
                out.append(inst)
        return out

    def instance(self, service: str, group: str, instance: str) -> Instance | None:
        key = names.kv_instance(service, group, instance)
        return _valid(instance_at, key, self.get(key))

    def routing(self) -> tuple[list[Route], list[Instance]]:
        """Every route and instance, in one read of ``bay/`` (what a node's HAProxy is made of)."""
        return routing(self.items(f"{names.KV_PREFIX}/"))

    def routes(self) -> list[Route]:
        out = []
        for k, v in self.items(names.kv_routes_prefix()).items():
            route = _valid(route_at, k, v)
            if route is not None:
                out.append(route)
        return out

    def placements(self) -> list[Placement]:
        return [Placement.from_kv(k, v) for k, v in self.items(names.kv_placements_prefix()).items()]

    def failed(self, service: str, group: str) -> str | None:
        """Why the controller gave up on a group (crash loop), or None."""
        value = self.get(names.kv_failed(service, group))
        return value.decode() if value else None

    def failed_groups(self) -> dict[tuple[str, str], str]:
        """(service, group) -> why, for every group the controller gave up on."""
        prefix = names.kv_failed_prefix()
        return {tuple(k[len(prefix):].split("/")[:2]): v.decode() for k, v in self.items(prefix).items()}

    def drained(self) -> set[str]:
        """The nodes drained (``bay drain``): nothing is placed there."""
        return {k[len(names.kv_drained_prefix()):] for k in self.items(names.kv_drained_prefix())}

    def accepted(self, service: str, group: str) -> Accepted | None:
        """The group's accepted spec (what was deployed), or None."""
        value = self.get(names.kv_spec(service, group))
        return Accepted.from_json(value) if value else None

    def accepted_all(self) -> dict[tuple[str, str], Accepted]:
        out = {}
        for value in self.items(names.kv_specs_prefix()).values():
            if value:
                a = Accepted.from_json(value)
                out[(a.spec.service, a.spec.group)] = a
        return out

    def deploying(self) -> dict[tuple[str, str], float]:
        """(service, group) -> since when a deploy or scale holds it."""
        prefix = names.kv_deploying_prefix()
        out = {}
        for k, v in self.items(prefix).items():
            try:
                since = float(v.decode())
            except ValueError:
                since = 0.0
            out[tuple(k[len(prefix):].split("/")[:2])] = since
        return out

    def autoscaled(self, service: str, group: str) -> int | None:
        """The count the autoscaler last decided for a group (None: never)."""
        value = self.get(names.kv_scale(service, group))
        return json.loads(value).get("state", {}).get("desired") if value else None

    def autoscaled_all(self) -> dict[tuple[str, str], int]:
        """(service, group) -> the count the autoscaler last decided, for every group it decided for."""
        prefix, out = names.kv_scale_prefix(), {}
        for k, v in self.items(prefix).items():
            n = json.loads(v).get("state", {}).get("desired") if v else None
            if n is not None:
                out[tuple(k[len(prefix):].split("/")[:2])] = n
        return out

    def ensure(self, key: str, value: str) -> bool:
        """Write ``value`` at ``key`` unless it is there already; True if written."""
        if self.get(key) == value.encode():
            return False
        self.apply([op_set(key, value)])
        return True


_ignored: set[tuple[str, int]] = set()


def routing(items: dict[str, bytes]) -> tuple[list[Route], list[Instance]]:
    """The routes and instances among ``items`` (a read of ``bay/``); a record
    that is not what its key says is ignored (a registry node's token writes
    only its own keys, and they must hold only its own record)."""
    routes, instances = [], []
    route_prefix, inst_prefix = names.kv_routes_prefix(), names.kv_instances_prefix()
    for key, value in items.items():
        if key.startswith(route_prefix):
            record = _valid(route_at, key, value)
            if record is not None:
                routes.append(record)
        elif key.startswith(inst_prefix):
            record = _valid(instance_at, key, value)
            if record is not None:
                instances.append(record)
    return routes, instances


def _valid(parse, key: str, value: bytes | None):
    """``parse(key, value)``, or None (no value, or a record that is not
    what its key says: logged once per key and value, then ignored)."""
    if not value:
        return None
    try:
        return parse(key, value)
    except (ValueError, KeyError, TypeError) as err:
        mark = (key, hash(value))
        if mark not in _ignored:
            if len(_ignored) > 10_000:
                _ignored.clear()
            _ignored.add(mark)
            log.warning("ignoring the record at %s: %s", key, err)
        return None


def _consul_error(err: Exception, where: str) -> Exception:
    text = str(err) or type(err).__name__
    if "No cluster leader" in text:
        return Unavailable(f"Consul at {where} has no leader (the servers lost their quorum)")
    if isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, OSError)):
        return Unavailable(f"Consul at {where} does not answer ({text.splitlines()[0][:120]})")
    return Unavailable(f"Consul at {where}: {text[:200]}")


class ConsulStore(Store):
    """The store over a Consul agent's HTTP API (``client``: a py-consul client).
    Given the other ``servers`` (addresses, same port), a request the server
    does not answer (gone, or without a leader) is made once more on the
    first other server that has a leader. Instance records are read with their
    ModifyIndex and parsed only when it changed: the control loop reads every
    instance on every pass."""

    _ERRORS = (consul.ConsulException, requests.exceptions.RequestException, OSError)

    def __init__(self, client: consul.Consul, servers: list[str] | None = None,
                 fence: Callable[[], list[dict]] | None = None):
        self.client = client
        self.servers = list(servers or [])
        self.fence = fence
        self._parsed: dict[str, tuple[int, Instance]] = {}
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"{self.client.http.host}:{self.client.http.port}"

    def _call(self, fn):
        """``fn(client)``, failing over once to another server with a leader;
        Unavailable if none answers. A rolled-back transaction is not retried."""
        for attempt in (1, 2):
            try:
                return fn(self.client)
            except self._ERRORS as err:
                unavailable = not isinstance(err, consul.ConsulException) or "No cluster leader" in str(err)
                if not unavailable:
                    raise
                others = [a for a in self.servers if a != self.client.http.host]
                if attempt == 2 or not others:
                    raise _consul_error(err, self.where) from None
                try:
                    moved = first_answering(others, self.client.http.port, token=self.client.token,
                                            ca_file=ca_of(self.client))
                except Unavailable:
                    raise _consul_error(err, self.where) from None
                self.client = moved.client

    def instances(self, service: str | None = None, group: str | None = None) -> list[Instance]:
        prefix = names.kv_instances_prefix(service, group)
        _, items = self._call(lambda c: c.http.get(CB.json(index=True), f"/v1/kv/{prefix}",
                                                   params=[("recurse", "1")], headers=c.prepare_headers(None)))
        out, seen = [], {}
        with self._lock:
            cache = self._parsed
        for item in items or []:
            if not item.get("Value"):
                continue
            key, index = item["Key"], item["ModifyIndex"]
            hit = cache.get(key)
            inst = hit[1] if hit and hit[0] == index else _valid(instance_at, key, base64.b64decode(item["Value"]))
            if inst is None:
                continue
            seen[key] = (index, inst)
            out.append(inst)
        with self._lock:
            if prefix == names.kv_instances_prefix():
                self._parsed = seen  # a whole read: what is gone is forgotten too
            else:
                self._parsed = {**self._parsed, **seen}
        return out

    def consul_health(self) -> dict:
        """Autopilot's view of the servers (``/v1/operator/autopilot/health``):
        Healthy, FailureTolerance, and each server's Name, Healthy, Voter."""
        return self._call(lambda c: c.http.get(CB.json(), "/v1/operator/autopilot/health",
                                               headers=c.prepare_headers(None)))

    def members_alive(self) -> set[str]:
        """The nodes Consul's gossip sees alive."""
        # py-consul's agent.members() and txn.put() send no token: with ACLs on they would see
        # nothing and write nothing, so both go through http with the client's token
        members = self._call(lambda c: c.http.get(CB.json(), "/v1/agent/members", headers=c.prepare_headers(None)))
        return {m["Name"] for m in members if m.get("Status") == 1}

    def get(self, key: str) -> bytes | None:
        _, item = self._call(lambda c: c.kv.get(key))
        return item["Value"] if item and item.get("Value") is not None else None

    def items(self, prefix: str) -> dict[str, bytes]:
        _, items = self._call(lambda c: c.kv.get(prefix, recurse=True))
        return {i["Key"]: i["Value"] or b"" for i in items or []}

    def watch(self, prefix: str, index: str | None = None, wait: str = "30s") -> tuple[str, dict[str, bytes]]:
        """A blocking read of every key under ``prefix``: it answers once
        something there changed after ``index`` (at once without one), or
        after ``wait``. Returns the new index and the items."""
        new_index, items = self._call(lambda c: c.kv.get(prefix, recurse=True, index=index, wait=wait))
        return new_index, {i["Key"]: i["Value"] or b"" for i in items or []}

    def txn(self, ops: list[dict]) -> None:
        try:
            result = self._call(lambda c: c.http.put(CB.json(), "/v1/txn", data=json.dumps(ops),
                                                     headers=c.prepare_headers(None)))
        except consul.ConsulException as err:
            raise TxnError(f"transaction of {len(ops)} operations rolled back: {err}") from None
        if result and result.get("Errors"):
            raise TxnError(f"transaction of {len(ops)} operations rolled back: {result['Errors']}")


def client(host: str, port: int, timeout: float = TIMEOUT, token: str | None = None,
           ca_file: str | None = None) -> consul.Consul:
    """A py-consul client whose requests give up after ``timeout`` seconds;
    with ``ca_file``, over HTTPS, the server's certificate checked against that CA."""
    if ca_file:
        return consul.Consul(host=host, port=port, token=token, scheme="https", verify=ca_file,
                             connections_timeout=timeout)
    return consul.Consul(host=host, port=port, token=token, connections_timeout=timeout)


def ca_of(c: consul.Consul) -> str | None:
    """The CA file a client made by :func:`client` checks its server against (None: plain HTTP)."""
    return c.http.verify if c.http.scheme == "https" and isinstance(c.http.verify, str) else None


def first_answering(servers: list[str], port: int, timeout: float = 2.0, token: str | None = None,
                    fence: Callable[[], list[dict]] | None = None, ca_file: str | None = None) -> ConsulStore:
    """A store on the first Consul server in ``servers`` that has a leader
    (the others kept to fail over to; ``fence``: see :class:`Store`;
    ``ca_file``: HTTPS, see :func:`client`); :class:`Unavailable` says how
    many answered and whether any had a leader."""
    problems = []
    for addr in servers:
        c = client(addr, port, timeout, token, ca_file)
        try:
            if c.status.leader():
                return ConsulStore(client(addr, port, TIMEOUT, token, ca_file), servers, fence)
            problems.append(f"{addr}: no leader")
        except requests.exceptions.Timeout:
            problems.append(f"{addr}: no answer in {timeout:g} s")
        except requests.exceptions.SSLError:
            problems.append(f"{addr}: its certificate is not from the CA in {ca_file} (or names another address)")
        except requests.exceptions.ConnectionError:
            problems.append(f"{addr}: connection refused or unreachable")
        except (consul.ConsulException, requests.exceptions.RequestException, OSError) as err:
            problems.append(f"{addr}: {str(err).splitlines()[0][:80] if str(err) else type(err).__name__}")
    answered = sum(1 for p in problems if p.endswith("no leader"))
    raise Unavailable(f"Consul has no leader: {answered} of {len(servers)} servers reachable ({'; '.join(problems)})"
                      if answered else f"no Consul server answered ({'; '.join(problems)})")
