"""What one reconciliation pass costs at the seed's scale, beside its target.

500 nodes and 10,000 instances (100 services x 5 groups x 20 instances, 20
per node), their records and the 500 accepted specs written into a real
Consul (1.8.7, `consul agent -dev`); the nodes' reports (what each runs) are
generated for the bench, as Salt would return them. One pass is the
controller's whole `ControlLoop.reconcile`: the KV reads, the decision
(`bay_salt.control.recovery.reconcile`) and acting on what it finds. Measured
on a converged cluster (nothing to do) and with 1 % of the containers dead
(100 replacements dispatched: counted, not run). CPU is this process's
(`time.process_time`), the controller's share; Consul's own is reported beside.

With ``--cluster NAME`` (a running `bay up` cluster, e.g. the benches'
``bench``), the passes its controller made over ``--sample`` seconds are read
as each records itself in KV (``bay/controller/reconcile``: its CPU, its
wall time): the cost per pass on a real 3-node cluster, beside the above.

    .venv/bin/python bench/reconcile.py [--nodes 500] [--instances 10000] [--rounds 5] [--cluster bench]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from common import start_consul
from rich.console import Console
from rich.table import Table

from bay_salt.control.loop import ControlLoop
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Accepted, Instance
from bay_salt.kv.store import ConsulStore
from bay_salt.model import names, settings
from bay_salt.model.services import parse

logging.getLogger("bay").setLevel(logging.ERROR)  # the 1 % dead pass logs a line per finding

CHECKOUT = Path(__file__).resolve().parents[1]


class Reports:
    """The nodes' reports, generated: every registered container running, but ``dead``."""

    def __init__(self, instances: list[Instance], dead: set[str]):
        self.by_node: dict[str, list[dict]] = {}
        for i in instances:
            self.by_node.setdefault(i.node, []).append(
                {"container": i.container, "status": "exited" if i.container in dead else "running", "age": 900.0,
                 "service": i.service, "group": i.group, "instance": i.instance, "cpu": 0.1, "memory_mb": 32})

    def containers_all(self, nodes):
        return {n: self.by_node.get(n, []) for n in nodes}

    def busy(self, node):
        return False

    def output(self, node, container, lines):
        return ""


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cluster", help="also sample the passes of this running `bay up` cluster's controller")
    p.add_argument("--sample", type=float, default=60.0, help="seconds to sample --cluster for")
    args = p.parse_args()
    per_group = 20
    groups = args.instances // per_group
    cfg = settings.load(settings.formula_defaults(CHECKOUT), {})
    ctl = settings.Controller.model_validate(cfg["controller"])
    with tempfile.TemporaryDirectory() as tmp:
        daemon, port = start_consul(Path(tmp), {"node_name": "bench", "bind_addr": "127.0.0.1",
                                                "client_addr": "127.0.0.1"}, dev=True)
        try:
            store = ConsulStore(kvstore.client("127.0.0.1", port, timeout=30))
            specs, instances = [], []
            for s in range(groups // 5):
                raw = {"image": f"r/svc{s}:1", "owners": ["t"], "groups": {
                    f"g{k}": {"instances": per_group, "cpu": 0.1, "memory": 32, "port": 8000,
                              "listen": 20000 + s * 5 + k} for k in range(5)}}
                specs += list(parse({f"svc{s}": raw})[f"svc{s}"].groups().values())
            for gi, g in enumerate(specs):
                for k in range(per_group):
                    iid = f"{gi:03d}{k:05d}"
                    node = f"node{(gi * per_group + k) % args.nodes:03d}"
                    instances.append(Instance(g.service, g.group, iid, node, "10.0.0.1", 30000 + k, "passing",
                                              g.image, names.service_container(g.service, g.group, iid),
                                              g.spec_hash()))
            store.apply(kvstore.register_ops(instances) + [kvstore.op_put(Accepted(g, 1.0)) for g in specs])
            alive = {f"node{n:03d}" for n in range(args.nodes)}
            rows = []
            for label, dead in (("converged (nothing to do)", set()),
                                ("1 % of the containers dead", {i.container for i in instances[::100]})):
                replaced: list[str] = []
                loop = ControlLoop(store, Reports(instances, dead), lambda t, d: None, None, lambda: ctl,
                                   dispatch=lambda inst, why, replaced=replaced: replaced.append(inst.instance))
                cpus, walls, consul_cpus = [], [], []
                for _ in range(args.rounds):
                    replaced.clear()
                    c0, w0, k0 = time.process_time(), time.perf_counter(), cpu_of(daemon.pid)
                    out = loop.reconcile(alive)
                    cpus.append(time.process_time() - c0)
                    walls.append(time.perf_counter() - w0)
                    consul_cpus.append(cpu_of(daemon.pid) - k0)
                rows.append((label, statistics.median(cpus), statistics.median(walls), statistics.median(consul_cpus),
                             len(out["found"]), len(replaced)))
        finally:
            daemon.stop()
    t = Table(title=f"one reconciliation pass: {args.nodes} nodes, {len(instances)} instances, {len(specs)} groups "
                    f"(median of {args.rounds})")
    for col in ("cluster", "controller CPU", "target", "wall", "Consul CPU", "found", "replacements dispatched"):
        t.add_column(col)
    for label, cpu, wall, kcpu, found, rep in rows:
        t.add_row(label, f"{cpu * 1000:.0f} ms", "< 200 ms", f"{wall * 1000:.0f} ms", f"{kcpu * 1000:.0f} ms",
                  str(found), str(rep))
    Console().print(t)
    if args.cluster:
        Console().print(live_passes(args.cluster, args.sample))
    return 0


def live_passes(name: str, seconds: float) -> Table:
    """The controller's own record of each pass in a running cluster, sampled."""
    from bay_salt.cluster.local import LocalCluster

    cluster = LocalCluster(name)
    nodes = cluster.nodes()
    if not nodes:
        raise SystemExit(f"reconcile.py: no cluster {name!r} runs (bay --cluster {name} up)")
    client = cluster.consul_client(nodes[0].address)
    seen: dict[int, dict] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _, item = client.kv.get(names.KV_RECONCILE)
        if item:
            rec = json.loads(item["Value"])
            seen.setdefault(rec["passes"], rec)
        time.sleep(0.5)
    recs = list(seen.values())
    t = Table(title=f"cluster {name!r}: {len(recs)} reconciliation passes over {seconds:g} s, "
                    f"{len(nodes)} nodes, as each pass recorded itself")
    for col in ("figure", "median", "max"):
        t.add_column(col)
    if recs:
        for label, key in (("controller CPU per pass (its thread)", "cpu"), ("wall time per pass", "took")):
            vals = [r[key] * 1000 for r in recs]
            t.add_row(label, f"{statistics.median(vals):.1f} ms", f"{max(vals):.1f} ms")
        t.add_row("nodes reported per pass", str(statistics.median(len(r["nodes"]) for r in recs)), "")
    return t


if __name__ == "__main__":
    raise SystemExit(main())
