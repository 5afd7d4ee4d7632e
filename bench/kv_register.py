"""Registering 1,000 instances: Bay's batched KV transactions vs one-by-one
agent service registration, against the same real Consul, in the same run.

    .venv/bin/python bench/kv_register.py [--instances 1000] [--rounds 3]

Reference figures (issue: target at least 100x faster than one-by-one
registration; a bare loop of 64-operation transactions does about 145x):
  * agent: PUT /v1/agent/service/register once per instance (py-consul);
  * bare txn: a plain loop of 64-operation /v1/txn PUTs of fixed values;
  * bay: bay_salt.kv.store.register_ops + Store.apply (JSON records, chunked).
Consul (Debian's 1.8.7) runs on loopback ports twice: as a persistent single
server (Raft on disk, as in production) and as `consul agent -dev` (in-memory
Raft, as the issue's anchor was measured).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import consul
from common import start_consul
from rich.console import Console
from rich.table import Table

from bay_salt.kv import store as kv
from bay_salt.kv.records import Instance
from bay_salt.kv.store import ConsulStore
from bay_salt.model import names


def instances(n: int) -> list[Instance]:
    return [Instance("bench", "g", f"i{k:05d}", f"node{k % 3 + 1}", "127.0.0.1", 20000 + k) for k in range(n)]


def agent_one_by_one(c: consul.Consul, batch: list[Instance]) -> None:
    for i in batch:
        c.agent.service.register(f"{i.service}-{i.group}", service_id=i.instance, address=i.address, port=i.port,
                                 tags=[i.node])


def agent_cleanup(c: consul.Consul, batch: list[Instance]) -> None:
    for i in batch:
        c.agent.service.deregister(i.instance)


def bare_txn(c: consul.Consul, batch: list[Instance]) -> None:
    ops = [kv.op_set(f"bare/{i.instance}", "x") for i in batch]
    for chunk in kv.chunks(ops):
        c.txn.put(chunk)


def bay_txn(c: consul.Consul, batch: list[Instance]) -> None:
    ConsulStore(c).apply(kv.register_ops(batch))


def timed(fn, c, batch) -> float:
    start = time.perf_counter()
    fn(c, batch)
    return time.perf_counter() - start


def measure(batch: list[Instance], rounds: int, dev: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        conf = {"node_name": "bench", "bind_addr": "127.0.0.1", "client_addr": "127.0.0.1",
                "datacenter": "bench", "disable_update_check": True}
        if not dev:
            conf.update(server=True, bootstrap_expect=1)
        daemon, http = start_consul(Path(tmp), conf, dev=dev)
        try:
            c = consul.Consul(host="127.0.0.1", port=http)
            times = {"agent": [], "bare": [], "bay": []}
            for _ in range(rounds):
                times["agent"].append(timed(agent_one_by_one, c, batch))
                agent_cleanup(c, batch)
                times["bare"].append(timed(bare_txn, c, batch))
                c.kv.delete("bare/", recurse=True)
                times["bay"].append(timed(bay_txn, c, batch))
                c.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
        finally:
            daemon.stop()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    batch = instances(args.instances)
    table = Table(title=f"registering {args.instances} instances, median of {args.rounds} rounds, Consul 1.8.7")
    for col in ("consul", "method", "seconds", "speed-up vs agent one-by-one", "target"):
        table.add_column(col)
    for dev in (True, False):
        med = measure(batch, args.rounds, dev)
        mode = "-dev (in-memory raft)" if dev else "server, raft on disk"
        table.add_row(mode, "agent service register, one by one", f"{med['agent']:.3f}", "1.0x", "reference")
        table.add_row(mode, "bare loop of 64-op /v1/txn", f"{med['bare']:.3f}", f"{med['agent'] / med['bare']:.0f}x",
                      "anchor (~145x)")
        table.add_row(mode, "bay_salt.kv.store (64-op txns of JSON records)", f"{med['bay']:.3f}",
                      f"{med['agent'] / med['bay']:.0f}x", ">= 100x")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
