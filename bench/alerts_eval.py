"""What one evaluation round of 1,000 alert rules costs over the names of a
10,000-container cluster, next to the round's interval.

The cluster's numbers are generated (nothing of this size runs here): 500
services of 4 groups of 5 instances (10,000 containers) on 100 nodes. Bay's
state has every group's desired, passing, healthy ratio, failed and
autoscale points and every node's liveness and the platform's (what
:func:`bay_salt.alerts.sources.state` reads from KV); Graphite's series are
what the rules' targets return over their windows (10 s points): every
group's restarts and desired, every node's 8 components, 2 disks and memory,
every group's traffic on 3 nodes, and each container's CPU for the services'
own rules. The rules: Bay's 15 defaults, every service overriding one of
them, and 985 rules of the services' own (each service about two, on its
containers' CPU and memory). A fifth of the groups are unhealthy, so alerts
are pending, firing and told, with the notification log in an in-memory KV.

It measures the CPU time (process time) of evaluate + plan + the KV record
per round, after warm-up rounds, and prints it next to the round's interval
(``bay:alerts:interval``). Fetching the numbers (KV reads, the render API)
is not in it: graphite-web's own cost is graphite-web's.

    .venv/bin/python bench/alerts_eval.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import common  # noqa: F401 - the checkout on sys.path
from rich.console import Console
from rich.table import Table

from bay_salt.alerts import engine
from bay_salt.model import alert_rules as rules
from tests.support.fakes import MemoryStore

C = "big"
SERVICES, GROUPS, INSTANCES, NODES = 500, 4, 5, 100
COMPONENTS = ("docker", "consul", "haproxy", "salt-minion", "bay-lb-sync", "bay-events", "cadvisor", "bay-statsd")
INTERVAL = 5.0
RULES = 1000


def generate(now: float, rng: random.Random) -> tuple[dict, dict, dict]:
    """(state, series, services pillar) of the generated cluster."""
    state: dict[str, float] = {f"bay.{C}.platform.consul.leader": 1.0, f"bay.{C}.platform.reconcile.age_seconds": 2.0,
                               f"bay.{C}.platform.graphite.age_seconds": 5.0,
                               f"bay.{C}.platform.registry.answering": 1.0,
                               f"bay.{C}.platform.registry.storage_answering": 1.0,
                               f"bay.{C}.platform.alerts.failed_sends": 0.0}
    series: dict[str, list] = {}
    slots = [now - 600 + 10 * k for k in range(60)]

    def put(path, values):
        series[f"bay.{C}.{path}"] = list(zip(slots[-len(values):], values, strict=True))

    services = {}
    for s in range(SERVICES):
        svc = f"svc{s:03d}"
        own = {}
        for k in range(2 if s < RULES - 15 - SERVICES else 1):
            metric = ("cpu_cores", "memory_bytes")[k % 2]
            own[f"Own{k}"] = {"source": "graphite", "metric": f"containers.{{service}}.{{group}}.*.{metric}",
                              "reduce": "avg", "window": "5m", "op": ">", "threshold": 0.9 if k % 2 == 0 else 2e9,
                              "for": "5m"}
        own["GroupUnhealthy"] = {"for": "20s"}
        services[svc] = {"owners": [f"team{s % 40}"], "alerts": own}
        for g in range(GROUPS):
            grp = f"g{g}"
            ratio = 0.0 if rng.random() < 0.2 else 1.0
            for what, v in (("desired", INSTANCES), ("passing", INSTANCES * ratio), ("healthy_ratio", ratio),
                            ("failed", 0.0), ("autoscale.utilisation", 0.5), ("autoscale.at_max", 0.0)):
                state[f"bay.{C}.groups.{svc}.{grp}.{what}"] = v
            put(f"groups.{svc}.{grp}.restarts", [0.0] * 60)
            put(f"groups.{svc}.{grp}.desired", [float(INSTANCES)] * 60)
            for n in range(3):
                put(f"traffic.{svc}.{grp}.node{(s + n) % NODES}.requests", [50.0] * 30)
                put(f"traffic.{svc}.{grp}.node{(s + n) % NODES}.errors_5xx", [0.0] * 30)
            for i in range(INSTANCES):
                put(f"containers.{svc}.{grp}.i{i}.cpu_cores", [0.05] * 30)
                put(f"containers.{svc}.{grp}.i{i}.memory_bytes", [1e8] * 30)
    for n in range(NODES):
        state[f"bay.{C}.nodes.node{n}.alive"] = 1.0
        for c in COMPONENTS:
            put(f"nodes.node{n}.components.{c}", [1.0] * 6)
        for d in ("root", "var_lib_docker"):
            put(f"nodes.node{n}.disk.{d}.percent", [40.0] * 30)
        put(f"nodes.node{n}.memory_percent", [60.0] * 30)
    return state, series, services


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    console = Console()
    rng = random.Random(7)
    now = time.time()
    with console.status("generating the cluster's numbers"):
        state, series, services = generate(now, rng)
    settings = {"group_wait": 5, "group_interval": 60, "repeat_interval": 14400, "platform_team": ["ops"],
                "contacts": {"ops": {"email": ["ops@x"]}, **{f"team{t}": {"email": [f"t{t}@x"]} for t in range(40)}}}
    cfg = engine.Config.from_settings(C, settings, services, {}, "https://graphite")
    own = sum(1 for r in cfg.rules if r.only_service)
    overridden = sum(len(v) for v in cfg.per_service.values())
    store = MemoryStore()
    ev = engine.Evaluator()
    cpu, wall, told = [], [], 0
    for k in range(args.warmup + args.rounds):
        t = now + k * INTERVAL
        c0, w0 = time.process_time(), time.perf_counter()
        ev.evaluate(cfg, engine.Inputs(state, series, {}), t)
        notes, _out, ops, changes = ev.notify(cfg, [], {}, t, lambda a: {})
        store.apply(ops)
        ev.saved_ok(changes)
        c1, w1 = time.process_time(), time.perf_counter()
        told += len(notes)
        if k >= args.warmup:
            cpu.append(c1 - c0)
            wall.append(w1 - w0)
    firing = sum(1 for a in ev.alerts.values() if a.state == "firing")
    table = Table(title=f"alert evaluation: {len(cfg.rules)} rules ({len(rules.DEFAULTS)} defaults, {own} services' "
                        f"own; {overridden} service overrides) over {SERVICES * GROUPS * INSTANCES:,} containers' names")
    for col in ("figure", "value", "reference", "ratio"):
        table.add_column(col)
    med = statistics.median(cpu)
    table.add_row("CPU per round (median)", f"{med:.3f} s", f"interval {INTERVAL:.0f} s", f"{med / INTERVAL:.3f}x")
    table.add_row("CPU per round (max)", f"{max(cpu):.3f} s", f"interval {INTERVAL:.0f} s", f"{max(cpu) / INTERVAL:.3f}x")
    table.add_row("wall per round (median)", f"{statistics.median(wall):.3f} s", "", "")
    table.add_row("series / state points read", f"{len(series):,} / {len(state):,}", "", "")
    table.add_row("alerts firing; notifications", f"{firing}; {told}", "", "")
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
