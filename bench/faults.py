"""Failures that events alone do not heal, in a 3-node `bay up` cluster under
constant load, beside their targets:

1. lost event: the node's salt-minion killed, then a container on that node
   killed -> its replacement ready in all 3 HAProxies: p95 < 10 s;
2. hung instance (``docker pause``, or SIGSTOP of its process, in turn) ->
   no HAProxy sends it traffic: < 3 s; -> replaced and routed: p95 < 10 s
   (anchor: Kubernetes' default liveness, 10 s x 3 failures, about 30 s plus
   its restart back-off);
3. a whole group killed at once -> all its instances back and routed: the
   outage in seconds, next to a single kill's recovery from the same run;
4. a mixed chaos run (``--chaos N`` faults of every kind: kills, pauses,
   SIGSTOP, lost events, a stopped bay-events, dockerd/Consul/bay-lb-sync
   restarted or killed, whole groups, a node cut off, a node rebooted): the
   time to converge per kind (tests/e2e/helpers.py: KV, containers on every
   node, every HAProxy), and failed requests per kind.

Times 1-3 are read by watchers inside each node polling their HAProxy's
Runtime API every 5 ms (bench/controller.py); the fault's start is taken just
before it is caused (a kill: Docker's die stamp).

    .venv/bin/python bench/faults.py [--lost 20] [--hung 20] [--kills 10] [--groups 5] [--chaos 100] [--cluster bench]
"""

from __future__ import annotations

import argparse
import collections
import copy
import random
import statistics
import sys
import time

from common import CHECKOUT, bench_cluster, pct
from controller import Load, collect, watchers, web_instances
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(CHECKOUT))
from tests.e2e.helpers import convergence  # noqa: E402


def node_box(cluster, node_id):
    return cluster.client.containers.get(next(n.container for n in cluster.nodes() if n.id == node_id))


def die_stamp(box, name, since) -> float:
    ev = box.exec_run(["docker", "events", "--since", f"{since - 1:.3f}", "--until", f"{time.time():.3f}",
                       "--filter", f"container={name}", "--filter", "event=die", "--format", "{{.TimeNano}}"])
    stamps = ev.output.decode().split()
    return int(stamps[0]) / 1e9 if stamps else since


def one_instance_fault(cluster, k, how) -> tuple[float | None, float | None]:
    """Cause ``how`` to a demo.web instance; (seconds until no HAProxy routes
    it, seconds until its replacement is ready in all 3), or None if unseen."""
    nodes = [n for n in cluster.nodes() if n.id in ("node1", "node2", "node3")]
    addr = {n.id: n.address for n in nodes}
    before = web_instances(cluster)
    victim, (node_id, port) = sorted(before.items())[k % len(before)]
    target = f"{addr[node_id]}:{port}"
    procs = watchers(nodes, ["demo.web"], target, [len(before)], "-", old=[target])
    time.sleep(0.4)
    box, name = node_box(cluster, node_id), f"bay-demo-web-{victim}"
    t0 = time.time()
    if how == "lost":
        box.exec_run(["systemctl", "kill", "--signal=KILL", "salt-minion"])
        box.exec_run(["docker", "kill", name])
    elif how == "pause":
        box.exec_run(["docker", "pause", name])
    elif how == "sigstop":
        pid = box.exec_run(["docker", "inspect", "-f", "{{.State.Pid}}", name]).output.decode().strip()
        box.exec_run(["kill", "-STOP", pid])
    else:
        box.exec_run(["docker", "kill", name])
    if how in ("lost", "kill"):
        t0 = die_stamp(box, name, t0)
    outs, readies = collect(procs)
    return ((max(outs) - t0) if len(outs) == len(nodes) else None,
            (max(readies) - t0) if len(readies) == len(nodes) else None)


def whole_group(cluster) -> tuple[float, float | None]:
    """Every demo.web instance killed at once: (seconds until node1's frontend
    answers again, seconds until all are back and ready in all 3 HAProxies)."""
    nodes = [n for n in cluster.nodes() if n.id in ("node1", "node2", "node3")]
    before = web_instances(cluster)
    addr = {n.id: n.address for n in nodes}
    old = [f"{addr[n]}:{p}" for n, p in before.values()]
    procs = watchers(nodes, ["demo.web"], "", [len(before)], "-", old=old)
    time.sleep(0.4)
    t0 = time.time()
    for inst, (node_id, _) in before.items():
        node_box(cluster, node_id).exec_run(["docker", "kill", f"bay-demo-web-{inst}"], detach=True)
    n1 = node_box(cluster, "node1")
    time.sleep(0.3)
    while time.time() - t0 < 60:  # the first answer through node1's HAProxy again
        if n1.exec_run(["curl", "-sf", "-m", "1", "http://127.0.0.1:10080/"]).exit_code == 0:
            break
        time.sleep(0.05)
    outage = time.time() - t0
    _, readies = collect(procs)
    return outage, (max(readies) - t0) if len(readies) == len(nodes) else None


def converge_time(cluster, timeout=240.0) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if not convergence(cluster):
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001 - a runner call while Consul elects: look again
            pass
        time.sleep(0.5)
    return None


def on(cluster, node_id, *cmd):
    return node_box(cluster, node_id).exec_run(list(cmd))


def chaos_fault(cluster, kind: str, rnd: random.Random) -> None:
    node_id = rnd.choice(["node2", "node3"]) if kind in ("cut", "reboot") else rnd.choice(["node1", "node2", "node3"])
    if kind in ("kill", "pause", "sigstop", "lost"):
        inst = rnd.choice(sorted(web_instances(cluster)))
        one_instance_fault(cluster, sorted(web_instances(cluster)).index(inst), kind)
    elif kind == "silent":  # bay-events stopped, then a death nobody reports
        inst, (n, _) = rnd.choice(sorted(web_instances(cluster).items()))
        on(cluster, n, "systemctl", "stop", "bay-events")
        on(cluster, n, "docker", "kill", f"bay-demo-web-{inst}")
        converge_time(cluster, 60)
        on(cluster, n, "systemctl", "start", "bay-events")
    elif kind == "dockerd":
        on(cluster, node_id, "systemctl", "restart", "docker")
    elif kind == "consul":
        on(cluster, node_id, "systemctl", "restart", "consul")
    elif kind == "lb-sync":
        on(cluster, node_id, "systemctl", "kill", "--signal=KILL", "bay-lb-sync")
    elif kind == "group":
        whole_group(cluster)
    elif kind == "cut":
        on(cluster, node_id, "sh", "-c", "iptables -I INPUT -i eth0 -j DROP && iptables -I OUTPUT -o eth0 -j DROP")
        time.sleep(25)  # past Consul's failure detection: the node is lost, what it ran moves
        on(cluster, node_id, "sh", "-c", "iptables -D INPUT -i eth0 -j DROP; iptables -D OUTPUT -o eth0 -j DROP")
    elif kind == "reboot":
        node_box(cluster, node_id).restart(timeout=10)


KINDS = {"kill": 20, "pause": 12, "sigstop": 12, "lost": 12, "silent": 8, "dockerd": 6, "consul": 6, "lb-sync": 8,
         "group": 6, "cut": 5, "reboot": 5}


def chaos(cluster, count: int, progress, seed: int = 1) -> dict:
    rnd = random.Random(seed)
    kinds = [k for k, w in KINDS.items() for _ in range(w)]
    n1 = node_box(cluster, "node1")
    times, fails, requests = collections.defaultdict(list), collections.defaultdict(int), collections.defaultdict(int)
    unconverged = collections.Counter()
    task = progress.add_task("chaos", total=count)
    for k in range(count):
        kind = rnd.choice(kinds)
        load = Load(n1.name)
        load.start()
        chaos_fault(cluster, kind, rnd)
        took = converge_time(cluster)
        load.stop()
        if took is None:
            unconverged[kind] += 1
        else:
            times[kind].append(took)
        fails[kind] += load.failed
        requests[kind] += load.requests
        progress.console.log(f"{k + 1}: {kind} converged in {took if took is None else round(took, 1)} s, "
                             f"{load.failed} of {load.requests} requests failed")
        progress.advance(task)
        time.sleep(2.2)  # > backoff_reset: every fault a first restart
    return {"times": times, "fails": fails, "requests": requests, "unconverged": unconverged}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lost", type=int, default=20)
    p.add_argument("--hung", type=int, default=20)
    p.add_argument("--kills", type=int, default=10, help="single kills, the reference for the whole group")
    p.add_argument("--groups", type=int, default=5)
    p.add_argument("--chaos", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--cluster", default="bench")
    args = p.parse_args()
    cluster = bench_cluster(args.cluster)
    original = cluster.site.services_pillar()
    res = {}
    try:
        spec = copy.deepcopy(original)
        spec["bay"]["controller"] = {"backoff_reset": 2.0}
        cluster.set_services(spec)
        cluster.runner("bay.deploy", "demo")
        time.sleep(12)  # the controller rereads its settings from the nodes every 10 s
        n1 = node_box(cluster, "node1")
        with Progress() as progress:
            load = Load(n1.name)
            load.start()
            for what, n in (("lost", args.lost), ("kill", args.kills)):
                t = progress.add_task(what, total=n)
                res[what] = []
                for k in range(n):
                    res[what].append(one_instance_fault(cluster, k, what))
                    progress.advance(t)
                    time.sleep(2.2)
            t = progress.add_task("hung", total=args.hung)
            res["hung"] = []
            for k in range(args.hung):
                res["hung"].append((("pause", "sigstop")[k % 2],) + one_instance_fault(cluster, k,
                                                                                     ("pause", "sigstop")[k % 2]))
                progress.advance(t)
                time.sleep(2.2)
            t = progress.add_task("whole group", total=args.groups)
            res["group"] = []
            for _ in range(args.groups):
                res["group"].append(whole_group(cluster))
                progress.advance(t)
                time.sleep(2.2)
            load.stop()
            res["load"] = (load.requests, load.failed)
            res["chaos"] = chaos(cluster, args.chaos, progress, args.seed) if args.chaos else None
    finally:
        cluster.set_services(original)
        if not args.keep:
            cluster.down()
    report(res, args)


def row(t, label, vals, target, note=""):
    vals = [v for v in vals if v is not None]
    if vals:
        t.add_row(label, str(len(vals)), f"{statistics.median(vals):.2f} s", f"{pct(vals, 0.95):.2f} s", target, note)


def report(res, args) -> None:
    con = Console(width=160)
    t = Table(title="Faults events alone do not heal, 3-node cluster under load (hey in node1, 200 req/s)")
    for col in ("figure", "trials", "median", "p95", "target", "anchor / note"):
        t.add_column(col)
    row(t, "lost event (minion killed, then the container) -> replacement routed", [r for _, r in res["lost"]],
        "p95 < 10 s")
    row(t, "single kill -> replacement routed (same run)", [r for _, r in res["kill"]], "-")
    for how in ("pause", "sigstop"):
        hung = [h for h in res["hung"] if h[0] == how]
        row(t, f"hung ({how}) -> no traffic to it", [o for _, o, _ in hung], "< 3 s",
            "Kubernetes: readiness 10 s x 3")
        row(t, f"hung ({how}) -> replaced and routed", [r for _, _, r in hung], "p95 < 10 s",
            "Kubernetes: liveness 10 s x 3 + restart back-off, ~30 s")
    row(t, "whole group killed -> frontend answers again (outage)", [o for o, _ in res["group"]], "-",
        "next to the single kill above")
    row(t, "whole group killed -> all back and routed", [r for _, r in res["group"]], "-")
    t.add_row("failed requests during all of the above", f"{res['load'][0]} requests", str(res["load"][1]), "",
              "0 outside whole-group outages", "")
    con.print(t)
    c = res.get("chaos")
    if c:
        t = Table(title=f"chaos: {sum(len(v) for v in c['times'].values()) + sum(c['unconverged'].values())} "
                        f"faults (seed {args.seed}); time to converge everywhere (KV, containers, every HAProxy)")
        for col in ("fault", "faults", "median", "p95", "not converged in 240 s", "failed requests"):
            t.add_column(col)
        for kind in KINDS:
            vals = c["times"].get(kind, [])
            if vals or c["unconverged"].get(kind):
                t.add_row(kind, str(len(vals) + c["unconverged"].get(kind, 0)),
                          f"{statistics.median(vals):.1f} s" if vals else "-",
                          f"{pct(vals, 0.95):.1f} s" if vals else "-", str(c["unconverged"].get(kind, 0)),
                          f"{c['fails'][kind]} of {c['requests'][kind]}")
        con.print(t)


if __name__ == "__main__":
    main()
