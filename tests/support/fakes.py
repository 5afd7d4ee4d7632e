"""In-memory stand-ins, named as such, behind the interfaces the real code
uses: :class:`MemoryStore` is a :class:`bay_salt.kv.store.Store` over a dict
(Consul's transaction semantics: all or nothing, at most 64 operations);
:class:`Recorder` and :class:`NodeRecorder` are a
:class:`bay_salt.scheduling.backend.Backend` that records what it was asked
to start and stop instead of asking Salt and Docker. Unit tests run the
control loop over them; the integration tier runs it over a real Consul and
the e2e tier over everything real."""

from __future__ import annotations

import base64
import threading

from bay_salt.kv.store import TXN_LIMIT, Store, TxnError
from bay_salt.scheduling.backend import NodeState


class MemoryStore(Store):
    def __init__(self):
        self.data: dict[str, bytes] = {}
        self.txns = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def items(self, prefix: str) -> dict[str, bytes]:
        return {k: v for k, v in sorted(self.data.items()) if k.startswith(prefix)}

    def txn(self, ops: list[dict]) -> None:
        if len(ops) > TXN_LIMIT:
            raise TxnError(f"transaction of {len(ops)} operations rolled back: more than {TXN_LIMIT}")
        with self._lock:
            new = dict(self.data)
            for op in ops:
                kv = op["KV"]
                if kv["Verb"] == "set":
                    new[kv["Key"]] = base64.b64decode(kv["Value"])
                elif kv["Verb"] == "delete":
                    new.pop(kv["Key"], None)
                elif kv["Verb"] == "cas" and kv["Index"] == 0:  # Consul: set only if absent
                    if kv["Key"] in new:
                        raise TxnError(f"transaction rolled back: {kv['Key']} exists (cas 0)")
                    new[kv["Key"]] = base64.b64decode(kv["Value"])
                else:
                    raise TxnError(f"verb {kv['Verb']!r} is not supported by the in-memory store")
            self.data = new
            self.txns += 1

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.data if k.startswith(prefix))


class Recorder:
    """``healthy``: True/False for every start, or a list consumed one start at a time."""

    def __init__(self, healthy=True, address="10.0.0.1"):
        self.healthy = healthy
        self.address = address
        self.started, self.stopped = [], []

    def _healthy(self):
        return self.healthy.pop(0) if isinstance(self.healthy, list) else self.healthy

    def start(self, node, group, ids):
        self.started.append((node, ids))
        return [{"instance": i, "container": f"c-{i}", "host_port": 32000, "address": self.address,
                 "healthy": self._healthy()} for i in ids]

    def start_all(self, starts):
        return [self.start(node, group, ids) for node, group, ids in starts]

    def stop(self, node, containers):
        self.stopped.append((node, list(containers)))

    def stop_all(self, stops):
        for node, containers in stops.items():
            self.stop(node, containers)

    def busy(self, node):
        return False

    def output(self, node, container, lines):
        return f"last words of {container}"

    def logs_report(self):
        return {}  # no Kafka: a deploy makes no log topic


class NodeRecorder(Recorder):
    """Recorder that also answers nodes() and containers(): ``containers`` are
    ``{"container", "status", "age", "node"}`` dicts; what it starts runs
    there too, and what it stops is gone."""

    def __init__(self, containers=(), nodes=("node2",), healthy=True, cpus=4.0, memory_mb=4096):
        super().__init__(healthy)
        self._containers = [dict(c) for c in containers]
        self._nodes = nodes
        self.cpus, self.memory_mb = cpus, memory_mb
        self.silent: set[str] = set()  # nodes that do not answer

    def nodes(self):
        return [NodeState(n, f"10.0.0.{k}", self.cpus, self.memory_mb,
                          [c for c in self._containers if c.get("node") == n and "service" in c])
                for k, n in enumerate(self._nodes, start=1)]

    def start(self, node, group, ids):
        out = super().start(node, group, ids)
        for r in out:
            if r["healthy"]:
                self._containers.append({"container": r["container"], "status": "running", "age": 0.0, "node": node,
                                         "instance": r["instance"],
                                         "service": group.service, "group": group.group, "cpu": group.cpu,
                                         "memory_mb": group.memory_mb})
        return out

    def stop(self, node, containers):
        super().stop(node, containers)
        self._containers = [c for c in self._containers if not (c.get("node", "node1") == node
                                                                and c["container"] in containers)]

    def containers(self, node):
        return [c for c in self._containers if c.get("node", "node1") == node]

    def containers_all(self, nodes):
        return {n: self.containers(n) for n in nodes if n not in self.silent}


def running(name, age=1000.0, node="node1", **extra):
    return {"container": name, "status": "running", "age": age, "node": node, **extra}
