"""HAProxy configuration for 100 services x 100 instances: render time, config
size, and applying a change through the Runtime API vs a config reload, on a
real HAProxy (master-worker) on this machine.

    .venv/bin/python bench/lb_scale.py [--services 100] [--instances 100]

Instances point at 127.0.0.1 ports where nothing listens (their health checks
fail; only configuration and Runtime API work is measured). HAProxy runs with
maxconn 1000 and ulimit-n 19999: for 10,000 servers it asks for about 27,700
file descriptors (41,700 at the formula's maxconn 8000), over this host's hard
limit of 20,000 (nodes run HAProxy under systemd, whose limit is far higher).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from common import Daemon, free_port, wait_for
from rich.console import Console
from rich.table import Table

from bay_salt.host.haproxy_runtime import RuntimeAPI
from bay_salt.kv.records import Instance, Route
from bay_salt.model import settings
from bay_salt.node import nodefiles as nodeconf
from bay_salt.node import routing as lb
from bay_salt.node.lbsync import LBSync

CHECKOUT = Path(__file__).resolve().parents[1]


def fleet(services: int, instances: int, base_port: int) -> tuple[list[Route], list[Instance]]:
    routes = [Route(f"svc{s:03d}", "main", base_port + s, None) for s in range(services)]
    insts = [Instance(r.service, "main", f"i{k:03d}", "node1", "127.0.0.1", 40000 + k, "passing")
             for r in routes for k in range(instances)]
    return routes, insts


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--services", type=int, default=100)
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--live-instances", type=int, default=40,
                   help="instances per service in the live HAProxy part (slots must fit the FD limit)")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(os.environ.get('BENCH_KEEP', tmpdir))
        tmp.mkdir(exist_ok=True)
        sock = tmp / "admin.sock"
        cfg = settings.load(settings.formula_defaults(CHECKOUT),
                            {"nodes": {"h": {"address": "127.0.0.1"}},
                             "haproxy": {"socket": str(sock), "stats_port": free_port(), "maxconn": 1000}}, "h")
        base = tmp / "haproxy.cfg"
        text = nodeconf.haproxy_config(cfg)
        for line in ("chroot /var/lib/haproxy", "user haproxy", "group haproxy", "log /dev/log local0",
                     "log /dev/log local1 notice"):
            text = text.replace(f"    {line}\n", "")
        # stay under the host's hard FD limit (HAProxy warns instead of failing)
        base.write_text(text.replace("    maxconn 1000\n", "    maxconn 1000\n    ulimit-n 19999\n"))
        services = tmp / "bay-services.cfg"
        services.write_text("# empty\n")
        routes, insts = fleet(args.services, args.instances, 20000)

        t0 = time.perf_counter()
        plan = lb.plan(routes, insts, {})
        t1 = time.perf_counter()
        rendered = lb.render(routes, plan.slots)
        t2 = time.perf_counter()
        rows.append((f"plan, from nothing ({len(insts)} servers)", f"{(t1 - t0) * 1000:.0f} ms", ""))
        rows.append(("render the services config", f"{(t2 - t1) * 1000:.0f} ms", f"{len(rendered) / 1024:.0f} KiB"))

        routes, insts = fleet(args.services, args.live_instances, 20000)
        rendered = lb.render(routes, lb.plan(routes, insts, {}).slots)
        slots = sum(lb.slot_count(args.live_instances) for _ in routes)
        proc = Daemon(["haproxy", "-W", "-db", "-f", str(base), "-f", str(services)], tmp / "haproxy.log")
        try:
            wait_for(lambda: proc.alive() and sock.exists(), 30, "haproxy")
            api = RuntimeAPI(str(sock), timeout=30)
            sync = LBSync(None, api, base, services, lambda: os.kill(proc.pid, signal.SIGUSR2))
            t3 = time.perf_counter()
            sync.apply(routes, insts)  # first load: a reload with 100 new backends
            t4 = time.perf_counter()
            rows.append((f"live, {args.services} x {args.live_instances} ({slots} slots): first apply = haproxy -c"
                         " + reload until the new worker has all backends",
                         f"{(t4 - t3) * 1000:.0f} ms", f"{sync.stats['reloads']} reload"))
            # a scale change of one group: 100 -> 110 instances, through the Runtime API
            grown = insts + [Instance("svc000", "main", f"x{k}", "node1", "127.0.0.1", 41000 + k, "passing") for k in range(10)]
            runtime_ms = []
            for k in range(10):
                cur = grown if k % 2 == 0 else insts
                t5 = time.perf_counter()
                plan = sync.apply(routes, cur)
                runtime_ms.append((time.perf_counter() - t5) * 1000)
                assert not plan.reload
            rows.append((f"scale one group +-10 through the Runtime API (median of 10; incl. show servers state"
                         f" of {slots} slots, plan, commands, file rewrite)",
                         f"{statistics.median(runtime_ms):.0f} ms", f"{len(plan.commands)} commands, 0 reloads"))
            t6 = time.perf_counter()
            sync._reload_with(lb.render(routes, lb.plan(routes, insts, sync.current()).slots), routes)
            t7 = time.perf_counter()
            rows.append(("the same change as a config reload (reference)", f"{(t7 - t6) * 1000:.0f} ms",
                         f"{len(rendered) / 1024:.0f} KiB re-parsed"))
        finally:
            proc.stop()
    table = Table(title=f"{args.services} services x {args.instances} instances (live part: x {args.live_instances}),"
                        " one HAProxy 2.6")
    for col in ("step", "time", "size of the change"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
