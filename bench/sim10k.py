"""The 10,000-container control plane, simulated: 500 nodes, 10,000 instances.

What is real: the decision code and the code that carries it out (the
Deployer, the ControlLoop with its recovery decisions and executor, the
Autoscaler, the controller's platform metrics), the KV store (a real Consul,
Debian's 1.8.7 as ``consul agent -dev``), the node side's HAProxy renderer
(one node's lbsync reading all of ``bay/`` and planning and rendering its
configuration), and carbon-cache receiving the metrics (Graphite from the
venv, as the integration tests run it).

What is simulated: the nodes. ``SimNodes`` answers a start at once with
healthy containers and keeps a table of what each node runs, as Salt would
report it; nothing is started, so the figures are the control plane's own
cost (a real start is the node's, measured by bench/density.py).

The fleet: 100 services x 5 groups x 20 instances on 500 nodes (20 each,
8 cores and 32 GiB per node), every group autoscaled (min 10, max 60, target
60 % CPU). Steps, each timed (wall) with the controller's CPU (this
process's) and Consul's CPU beside:

1. deploy a new 1,000-instance group (placement, 500 start answers, one
   batched registration); then one node's lbsync: read KV, plan, render;
2. a node lost with its 20 instances (deregistered, 20 started elsewhere);
3. an autoscale round over all 501 groups, 10 % of them hot (they scale up);
4. a reconciliation pass, converged (nothing to do);
5. a metrics round: the platform snapshot, shipped to carbon-cache.

The anchor, in the same run: the same steps on a fleet ten times smaller
(50 nodes, 1,000 instances; the same 1,000-instance deploy and 20-instance
node loss), so the ratio is what the fleet's size costs each step. Each
scale is built afresh ``--rounds`` times; figures are medians.

    .venv/bin/python bench/sim10k.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import start_consul
from rich.console import Console
from rich.table import Table

from bay_salt.cluster.processes import Graphite
from bay_salt.control.autoscale_round import Autoscaler
from bay_salt.control.loop import ControlLoop
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Accepted, Health, Instance
from bay_salt.kv.store import ConsulStore
from bay_salt.metrics import carbon, platform
from bay_salt.model import names, settings
from bay_salt.model.services import GroupSpec, parse
from bay_salt.node import routing as lb
from bay_salt.scheduling.backend import NodeState
from bay_salt.scheduling.deployer import Deployer, route_of

logging.getLogger("bay").setLevel(logging.ERROR)  # a line per replacement and decision otherwise

CHECKOUT = Path(__file__).resolve().parents[1]
PER_GROUP = 20
NODE_CPUS, NODE_MEMORY = 8.0, 32768


class SimNodes:
    """The Backend the control plane talks to, for simulated nodes: starts
    answer at once, healthy; what runs where is kept in a table."""

    def __init__(self, nodes: int):
        self.ids = [f"node{n:03d}" for n in range(nodes)]
        self.address = {n: f"10.1.{k // 250}.{k % 250 + 1}" for k, n in enumerate(self.ids)}
        self.running: dict[str, dict[str, dict]] = {n: {} for n in self.ids}
        self.lost: set[str] = set()
        self.starts = 0
        self.cpu: dict[str, float] = {}  # container -> CPU used (the measure)

    def add(self, node: str, g: GroupSpec, instance: str, container: str) -> None:
        self.running[node][container] = {
            "container": container, "status": "running", "age": 900.0, "service": g.service, "group": g.group,
            "instance": instance, "spec": g.spec_hash(), "cpu": g.cpu, "memory_mb": g.memory_mb}

    def nodes(self) -> list[NodeState]:
        return [NodeState(n, self.address[n], NODE_CPUS, NODE_MEMORY, list(self.running[n].values()))
                for n in self.ids if n not in self.lost]

    def start(self, node: str, group: GroupSpec, instances: list[str]) -> list[dict]:
        out = []
        for k, i in enumerate(instances):
            c = names.service_container(group.service, group.group, i)
            self.add(node, group, i, c)
            self.starts += 1
            out.append({"instance": i, "container": c, "host_port": 30000 + len(self.running[node]) + k,
                        "address": self.address[node], "healthy": True})
        return out

    def start_all(self, starts):
        return [self.start(n, g, ids) for n, g, ids in starts]

    def stop(self, node: str, containers: list[str]) -> None:
        for c in containers:
            self.running.get(node, {}).pop(c, None)

    def stop_all(self, stops: dict[str, list[str]]) -> None:
        for n, cs in stops.items():
            self.stop(n, cs)

    def containers(self, node: str) -> list[dict]:
        return list(self.running.get(node, {}).values())

    def containers_all(self, nodes):
        return {n: self.containers(n) for n in nodes if n not in self.lost}

    def busy(self, node: str) -> bool:
        return False

    def output(self, node: str, container: str, lines: int) -> str:
        return ""

    def measure(self, nodes: dict[str, str]) -> tuple[dict, dict]:
        """What each node's cAdvisor would say: each container's CPU (at the
        groups' target, 60 % of 0.1 core, unless set hotter)."""
        return ({n: {c: {"cpu": self.cpu.get(c, 0.06), "memory_mb": 20} for c in self.running[n]}
                 for n in nodes if n not in self.lost}, {})


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


@dataclass
class Step:
    wall: float
    cpu: float
    consul: float
    what: str


class Timer:
    def __init__(self, consul_pid: int):
        self.pid = consul_pid

    def __call__(self, fn) -> tuple[Step, object]:
        c0, w0, k0 = time.process_time(), time.perf_counter(), cpu_of(self.pid)
        out = fn()
        return Step(time.perf_counter() - w0, time.process_time() - c0, cpu_of(self.pid) - k0, ""), out


def fleet(nodes: SimNodes, store: ConsulStore, services: int) -> list[GroupSpec]:
    """``services`` x 5 autoscaled groups of 20, spread 20 to a node."""
    specs = []
    for s in range(services):
        raw = {"image": f"r/svc{s}:1", "owners": ["t"], "groups": {
            f"g{k}": {"instances": PER_GROUP, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 20000 + s * 5 + k,
                      "autoscale": {"min": 10, "max": 60, "target_cpu": 0.6}} for k in range(5)}}
        specs += list(parse({f"svc{s}": raw})[f"svc{s}"].groups().values())
    instances = []
    for gi, g in enumerate(specs):
        for k in range(PER_GROUP):
            iid = f"{gi:03d}{k:05d}"
            node = nodes.ids[(gi * PER_GROUP + k) % len(nodes.ids)]
            c = names.service_container(g.service, g.group, iid)
            nodes.add(node, g, iid, c)
            instances.append(Instance(g.service, g.group, iid, node, nodes.address[node], 30000 + k, Health.PASSING,
                                      g.image, c, g.spec_hash()))
    store.apply(kvstore.register_ops(instances) + [kvstore.op_put(Accepted(g, 1.0)) for g in specs]
                + [kvstore.op_set(names.kv_route(g.service, g.group), route_of(g).to_json()) for g in specs])
    return specs


def one_scale(n_nodes: int, services: int, consul_config: dict, graphite: Graphite, tmp: Path) -> dict[str, Step]:
    daemon, port = start_consul(tmp, consul_config, dev=True)
    steps: dict[str, Step] = {}
    try:
        store = ConsulStore(kvstore.client("127.0.0.1", port, timeout=60))
        timer = Timer(daemon.pid)
        sim = SimNodes(n_nodes)
        specs = fleet(sim, store, services)
        cfg = settings.load(settings.formula_defaults(CHECKOUT), {})
        ctl = settings.Controller.model_validate(cfg["controller"])

        # 1. a 1,000-instance group deployed
        big = parse({"big": {"image": "r/big:1", "owners": ["t"], "groups": {"web": {
            "instances": 1000, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 19000}}}})["big"].groups()["web"]
        store.apply([kvstore.op_put(Accepted(big, 1.0))])
        deployer = Deployer(sim, store, drain_seconds=0)
        s, report = timer(lambda: deployer.reconcile(big))
        assert len(report.started) == 1000, report.summary()
        s.what = report.summary()
        steps["deploy a 1,000-instance group"] = s

        def node_view():
            routes, instances = store.routing()
            plan = lb.plan(routes, instances, {})
            return lb.render(routes, plan.slots), len(instances)
        s, (text, seen) = timer(node_view)
        s.what = f"{seen} instances read, {len(text) // 1024} KiB of configuration"
        steps["one node's lbsync: read KV, plan, render"] = s

        # 2. a node lost with its 20 instances
        victim = sim.ids[len(sim.ids) // 2]
        held = [i for i in store.instances() if i.node == victim]
        loop = ControlLoop(store, sim, lambda t, d: None, None, lambda: ctl, sleep=lambda s: None)
        sim.lost.add(victim)
        before = sim.starts
        s, restored = timer(lambda: loop.node_lost(victim))
        moved = sim.starts - before
        assert moved == len(held), (moved, len(held))
        s.what = f"{len(held)} instances deregistered and started elsewhere ({len(restored)} groups)"
        steps["a node lost with its 20 instances"] = s

        # 3. an autoscale round, 10 % of the groups hot
        hot = specs[::10]
        for g in hot:
            for i in store.instances(g.service, g.group):
                sim.cpu[i.container] = 0.095
        alive = {n: sim.address[n] for n in sim.ids if n not in sim.lost}
        scaler = Autoscaler(sim, store, lambda t, d: None, sim.measure, drain_seconds=0)
        groups = [a.spec for a in store.accepted_all().values()]
        before = sim.starts
        s, decided = timer(lambda: scaler.tick(time.time(), groups, alive))
        up = [d for d in decided if d["desired"] > d["current"]]
        s.what = f"{len(decided)} groups decided, {len(up)} scaled up, {sim.starts - before} started"
        steps["an autoscale round"] = s

        # 4. a reconciliation pass
        s, out = timer(lambda: loop.reconcile(set(alive)))
        s.what = f"{len(store.instances())} instances, {len(out['found'])} found"
        steps["a reconciliation pass (converged)"] = s

        # 5. a metrics round to carbon-cache
        shipper = carbon.Shipper(carbon.Target("127.0.0.1", graphite.pickle_port)).start()

        def metrics_round():
            points = platform.snapshot("sim", time.time(), store.accepted_all(), store.autoscaled_all(),
                                       store.instances(), store.failed_groups(), set(sim.ids), set(alive),
                                       store.drained(), platform.Recorder(), None,
                                       platform.autoscale_records(store.items(names.kv_scale_prefix()),
                                                                  names.kv_scale_prefix()))
            shipper.put(points)
            deadline = time.monotonic() + 60
            while shipper.pending() and time.monotonic() < deadline:
                time.sleep(0.005)
            return len(points)
        try:
            s, count = timer(metrics_round)
            s.what = f"{count} points shipped, {shipper.dropped} dropped"
        finally:
            shipper.stop(flush=1)
        steps["a metrics round to carbon-cache"] = s
    finally:
        daemon.stop()
    return steps


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally blocks stop the daemons started here
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    console = Console(width=200)
    scales = {"500 nodes, 10,000 instances": (500, 100), "anchor: 50 nodes, 1,000 instances": (50, 10)}
    runs: dict[str, list[dict[str, Step]]] = {k: [] for k in scales}
    with tempfile.TemporaryDirectory(prefix="bay-sim10k-") as tmp:
        graphite = Graphite(Path(tmp) / "graphite")
        graphite.start_carbon()
        try:
            for r in range(args.rounds):
                for label, (n, svc) in scales.items():
                    with console.status(f"round {r + 1} of {args.rounds}: {label}"):
                        runs[label].append(one_scale(n, svc, {"node_name": "sim", "bind_addr": "127.0.0.1",
                                                              "client_addr": "127.0.0.1"}, graphite,
                                                     Path(tmp) / f"consul-{r}-{n}"))
        finally:
            graphite.stop_carbon()
    big, small = scales
    t = Table(title=f"the control plane at 500 nodes and 10,000 instances vs 50 and 1,000 (median of {args.rounds})")
    for col in ("step", "wall", "controller CPU", "Consul CPU", "anchor wall", "anchor CPU", "wall ratio", "what"):
        t.add_column(col)
    for step in runs[big][0]:
        def med(label, attr, step=step):
            return statistics.median(getattr(run[step], attr) for run in runs[label])
        t.add_row(step, f"{med(big, 'wall'):.3f} s", f"{med(big, 'cpu'):.3f} s", f"{med(big, 'consul'):.2f} s",
                  f"{med(small, 'wall'):.3f} s", f"{med(small, 'cpu'):.3f} s",
                  f"{med(big, 'wall') / max(med(small, 'wall'), 1e-6):.1f}x", runs[big][-1][step].what)
    console.print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
