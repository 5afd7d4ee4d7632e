"""The reactive controller in a 3-node `bay up` cluster, beside the anchors:

1. Container killed (``docker kill`` inside its node) -> no node's HAProxy
   sends it traffic any more (its server leaves the ready set in the Runtime
   API of all 3 nodes): target < 1 s.
2. Container killed -> its replacement healthy and ready in all 3 HAProxies:
   target < 3 s.
3. Failed requests at a node's HAProxy frontend (hey inside node1, constant
   200 requests/s) over all those kills: target 0.
4. Node stopped (its container killed) -> all its instances running and ready
   in the HAProxies of the 2 nodes left: target < 15 s.

Times run from the kill as the node's Docker engine stamps it (the die event)
or, for a node, from just before the kill; ends are read by watchers inside
each node polling their HAProxy Runtime API every 5 ms (1 ms polling by three
watchers took most of a core on a 2-core machine, inflating what it measured).
The controller's ``bay/container/replaced`` events, read from the master's
bus, split the replacement's time into its steps (detected, critical in KV,
healthy, registered; routed is the watchers' figure).

Reference measured in the same run: HAProxy alone (health checks with the
common ``inter 2s fall 3``) marking a killed server down, on this machine's
loopback. The Kubernetes and Marathon anchors are their documented defaults
(not runnable here) and are printed as such.

The crash-loop back-off follows each instance's line; the kills here are
independent failures, so the bench sets ``bay:controller:backoff_reset`` to
2 s and waits that long between kills: every kill is a first restart (the
case the Kubernetes anchor's 10 s first back-off describes).

    .venv/bin/python bench/controller.py [--kills 100] [--node-trials 20] [--keep] [--cluster bench]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

from common import bench_cluster, first_restarts, free_port, hey_counts, pct
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bay_salt.cluster.local import LocalCluster
from bay_salt.model import names

# inside a node: poll the Runtime API of backends argv[1] (comma list) and print
#   "out <t>" when server addr:port argv[2] is no longer ready (if given), and
#   "ready <t>" when each backend has exactly its count (argv[3], comma list) of
#   ready servers, none at address argv[4] and none of the addr:port in argv[5]
WATCH = r"""
import sys, time
from bay_salt.host.haproxy_runtime import RuntimeAPI
backends, victim, counts, bad_addr, old = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
counts = [int(c) for c in counts.split(",")]
old = set(old.split(",")) if old else set()
api = RuntimeAPI("/run/haproxy/admin.sock")
out_seen = not victim
deadline = time.time() + 60
def ready(b):
    rows = [l.split() for l in api.execute(f"show servers state {b}").splitlines()[2:] if l.strip()]
    return {f"{r[4]}:{r[18]}" for r in rows if int(r[5]) == 2 and not int(r[6]) & 3}
while time.time() < deadline:
    sets = [ready(b) for b in backends]
    now = time.time()
    if not out_seen and victim not in sets[0]:
        print("out", now, flush=True); out_seen = True
    if out_seen and all(len(s) == c and not any(a.split(":")[0] == bad_addr or a in old for a in s)
                        for s, c in zip(sets, counts)):
        print("ready", now, flush=True); break
    time.sleep(0.005)
"""



def ready_servers(cluster: LocalCluster, node, backend: str) -> set[str]:
    c = cluster.client.containers.get(node.container)
    script = ("from bay_salt.host.haproxy_runtime import RuntimeAPI as R; a=R('/run/haproxy/admin.sock');"
              f"rows=[l.split() for l in a.execute('show servers state {backend}').splitlines()[2:] if l.strip()];"
              "print(' '.join(f'{r[4]}:{r[18]}' for r in rows if int(r[5])==2 and not int(r[6])&3))")
    return set(c.exec_run(["/opt/bay/venv/bin/python", "-c", script]).output.decode().split())


def watchers(nodes, backends, victim, counts, bad_addr, old):
    return [subprocess.Popen(["docker", "exec", n.container, "/opt/bay/venv/bin/python", "-c", WATCH,
                              ",".join(backends), victim, ",".join(map(str, counts)), bad_addr, ",".join(old)],
                             stdout=subprocess.PIPE, text=True) for n in nodes]


def collect(procs) -> tuple[list[float], list[float]]:
    outs, readies = [], []
    for p in procs:
        text = p.communicate(timeout=90)[0]
        for what, t in re.findall(r"(out|ready) ([\d.]+)", text):
            (outs if what == "out" else readies).append(float(t))
    return outs, readies


class Bus(threading.Thread):
    """The master's event bus (``salt-run state.event``): the controller's
    replaced events, by the instance they replaced, and when it saw each
    node lost."""

    def __init__(self, master: str):
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(["docker", "exec", master, "salt-run", "state.event", "tagmatch=bay/*"],
                                     stdout=subprocess.PIPE, text=True)
        self.replaced: dict[str, dict] = {}
        self.lost: list[tuple[str, float]] = []  # (node, time the controller decided it was lost)

    def run(self) -> None:
        for line in self.proc.stdout:
            tag, _, body = line.partition("\t")
            try:
                data = json.loads(body)
            except ValueError:
                continue
            if tag.strip() == names.TAG_CONTAINER_REPLACED and data.get("old") and data.get("seconds_after_death"):
                self.replaced[data["old"]] = data["seconds_after_death"]
            elif tag.strip() == names.TAG_NODE_LOST and data.get("_stamp"):
                stamp = datetime.datetime.fromisoformat(data["_stamp"])
                self.lost.append((data.get("node"), stamp.replace(tzinfo=stamp.tzinfo or datetime.UTC).timestamp()))

    def lost_since(self, node: str, t0: float) -> float | None:
        return next((t - t0 for n, t in self.lost if n == node and t >= t0), None)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def web_instances(cluster) -> dict[str, tuple[str, str]]:
    """instance -> (node id, host port) from bay.status."""
    st = cluster.runner("bay.status", "demo")["demo.web"]
    out = {}
    for line in st["instances"]:
        inst, rest = line.split("@")
        node, port = rest.split()[0].split(":")
        out[inst] = (node, port)
    return out


class Load(threading.Thread):
    """hey inside a node against its own frontend, 200 requests/s (8 workers x
    25/s; the demo backends have 0.1 CPU each), in 20 s runs until stopped."""

    def __init__(self, container: str):
        super().__init__(daemon=True)
        self.container, self.requests, self.failed, self.done = container, 0, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            text = subprocess.run(["docker", "exec", self.container, "hey", "-z", "20s", "-c", "8", "-q", "25",
                                   "http://127.0.0.1:10080/"], capture_output=True, text=True).stdout
            requests, failed = hey_counts(text)
            self.requests += requests
            self.failed += failed

    def stop(self) -> None:
        self.done.set()
        self.join(60)


def kills(cluster: LocalCluster, count: int, progress: Progress) -> dict:
    nodes = cluster.nodes()
    addr = {n.id: n.address for n in nodes}
    n1 = cluster.client.containers.get(nodes[0].container)
    load = Load(n1.name)
    load.start()
    bus = Bus(cluster.leading_master().name)
    bus.start()
    time.sleep(2)
    out_ms, routed_ms, victims = [], [], []
    task = progress.add_task("container kills under load", total=count)
    try:
        for k in range(count):
            before = web_instances(cluster)
            victim, (node_id, port) = sorted(before.items())[k % len(before)]
            target = f"{addr[node_id]}:{port}"
            procs = watchers(nodes, ["demo.web"], target, [len(before)], "-", old=[target])
            time.sleep(0.4)
            t_start = time.time()
            node = cluster.client.containers.get(next(n.container for n in nodes if n.id == node_id))
            name = f"bay-demo-web-{victim}"
            node.exec_run(["docker", "kill", name])
            outs, readies = collect(procs)
            ev = node.exec_run(["docker", "events", "--since", f"{t_start - 1:.3f}", "--until", f"{time.time():.3f}",
                                "--filter", f"container={name}", "--filter", "event=die",
                                "--format", "{{.TimeNano}}"]).output.decode().split()
            t0 = int(ev[0]) / 1e9 if ev else t_start
            if len(outs) == len(nodes):
                out_ms.append((max(outs) - t0) * 1000)
            if len(readies) == len(nodes):
                routed_ms.append((max(readies) - t0) * 1000)
                victims.append(victim)
            progress.advance(task)
            time.sleep(2.2)  # > backoff_reset: the next kill of this line is a first restart again
    finally:
        load.stop()
        bus.stop()
    steps = {step: [bus.replaced[v][step] * 1000 for v in victims if step in bus.replaced.get(v, {})]
             for step in ("detected", "critical", "healthy", "registered")}
    return {"out": out_ms, "routed": routed_ms, "kills": count, "requests": load.requests, "failed": load.failed,
            "steps": steps}


def node_losses(cluster: LocalCluster, trials: int, progress: Progress) -> dict:
    times, moved, seen = [], [], []
    task = progress.add_task("node losses", total=trials)
    bus = Bus(cluster.leading_master().name)
    bus.start()
    for k in range(trials):
        nodes = cluster.nodes()
        st = cluster.runner("bay.status", "demo")
        where = [line.split("@")[1].split(":")[0] for g in st.values() for line in g["instances"]]
        # the busiest node but node1 (it holds the registry the replacements pull from)
        victim = max((n for n in nodes if n.id != "node1"), key=lambda n: (where.count(n.id), n.id))
        others = [n for n in nodes if n.id != victim.id]
        procs = watchers(others, ["demo.web", "demo.api"], "", [st["demo.web"]["desired"], st["demo.api"]["desired"]],
                         victim.address, old=[])
        time.sleep(0.4)
        t0 = time.time()
        box = cluster.client.containers.get(victim.container)
        box.kill()
        _, readies = collect(procs)
        if len(readies) == len(others):
            times.append(max(readies) - t0)
            moved.append(where.count(victim.id))
            lost = bus.lost_since(victim.id, t0)
            if lost is not None:
                seen.append(lost)
            progress.console.log(f"node loss {k + 1}: {victim.id}, {where.count(victim.id)} instances, "
                                 f"seen lost after {lost if lost is None else round(lost, 1)} s, "
                                 f"routed elsewhere after {times[-1]:.1f} s")
        box.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # back: minion answers, services up, stale containers gone
            left = box.exec_run(["sh", "-c", "docker ps -aq --filter label=io.bay.service 2>/dev/null | wc -l"])
            up = box.exec_run(["systemctl", "is-active", "salt-minion", "bay-lb-sync", "haproxy", "consul"]).exit_code
            if up == 0 and left.output.decode().strip() == "0" and \
                    cluster.salt(victim.id, "test.ping", timeout=10).get(victim.id) is True:
                break
            time.sleep(2)
        progress.advance(task)
    bus.stop()
    return {"s": times, "moved": moved, "seen": seen}


HAPROXY_ALONE = """
global
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
backend b
    option httpchk GET /
    server s1 127.0.0.1:{port} check inter 2s fall 3 rise 1
"""


def haproxy_alone(rounds: int) -> list[float]:
    """HAProxy's own health checks (inter 2s fall 3) marking a killed server
    down: the time from the kill to the server leaving the ready set."""
    from bay_salt.host.haproxy_runtime import RuntimeAPI, RuntimeAPIError

    out = []
    d = tempfile.mkdtemp(prefix="bay-bench-haproxy-")
    try:
        www = os.path.join(d, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "w") as fh:
            fh.write("ok\n")
        for _ in range(rounds):
            port = free_port()
            sock = os.path.join(d, "admin.sock")
            with open(os.path.join(d, "h.cfg"), "w") as fh:
                fh.write(HAPROXY_ALONE.format(sock=sock, port=port))
            httpd = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", www])
            hap = subprocess.Popen(["haproxy", "-f", os.path.join(d, "h.cfg")], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            try:
                api = RuntimeAPI(sock)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        rows = [r.split() for r in api.execute("show servers state b").splitlines()[2:] if r.strip()]
                        if rows and int(rows[0][5]) == 2:
                            break
                    except (OSError, RuntimeAPIError):  # not listening yet
                        pass
                    time.sleep(0.05)
                time.sleep(2 * (len(out) % 4) / 4 + 0.1)  # kill at different phases of the check interval
                t0 = time.time()
                httpd.kill()
                while time.time() - t0 < 30:
                    rows = [r.split() for r in api.execute("show servers state b").splitlines()[2:] if r.strip()]
                    if int(rows[0][5]) != 2:
                        out.append(time.time() - t0)
                        break
                    time.sleep(0.005)
            finally:
                hap.terminate()
                hap.wait(10)
                httpd.kill()
                httpd.wait(10)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--node-trials", type=int, default=20)
    p.add_argument("--reference-rounds", type=int, default=8)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--cluster", default="bench")
    args = p.parse_args()
    cluster = bench_cluster(args.cluster)
    try:
        with first_restarts(cluster), Progress() as progress:
            time.sleep(12)  # the controller reads the nodes' settings again every 10 s (REPORTS_TTL)
            ref = haproxy_alone(args.reference_rounds)
            k = kills(cluster, args.kills, progress)
            nl = node_losses(cluster, args.node_trials, progress)
    finally:
        if not args.keep:
            cluster.down()
    con = Console(width=150)
    t = Table(title=f"Bay controller, 3-node cluster: {args.kills} container kills under load, "
                    f"{len(nl['s'])} node losses")
    for col in ("figure", "trials", "median", "p95", "target", "anchors (same run / documented defaults)"):
        t.add_column(col)
    t.add_row("container killed -> no traffic to it (all 3 HAProxies)", str(len(k["out"])),
              f"{statistics.median(k['out']):.0f} ms", f"{pct(k['out'], 0.95):.0f} ms", "< 1 s",
              f"HAProxy alone, inter 2s fall 3 (this run, {len(ref)} kills): median {statistics.median(ref):.1f} s, "
              f"p95 {pct(ref, 0.95):.1f} s; Kubernetes readiness removal ~30 s")
    t.add_row("container killed -> replacement healthy and routed (all 3)", str(len(k["routed"])),
              f"{statistics.median(k['routed']):.0f} ms", f"{pct(k['routed'], 0.95):.0f} ms", "p95 < 2 s",
              "Kubernetes: first restart back-off 10 s")
    if nl["s"]:  # --node-trials 0: container kills only
        t.add_row("node stopped -> all its instances running and routed elsewhere", str(len(nl["s"])),
                  f"{statistics.median(nl['s']):.1f} s", f"{pct(nl['s'], 0.95):.1f} s", "p95 < 8 s",
                  f"(moved {statistics.median(nl['moved']):.0f} instances per loss, median) "
                  "Kubernetes ~6 min (40 s + 5 min eviction); Marathon 75 s + 300 s")
    t.add_row("failed requests at node1's frontend during the kills", f"{k['requests']} requests",
              str(k["failed"]), "", "0", "hey inside node1, 200 requests/s")
    con.print(t)
    s = Table(title="where the replacement's time goes (ms after the die event, same kills)")
    for col in ("step", "trials", "median", "p95", "target"):
        s.add_column(col)
    for step, label in (("detected", "event reached the controller"), ("critical", "critical in KV (out of HAProxy)"),
                        ("healthy", "replacement started and healthy"), ("registered", "registered in KV"),
                        ("routed", "ready in all 3 HAProxies")):
        vals = k["routed"] if step == "routed" else k["steps"][step]
        if vals:
            s.add_row(label, str(len(vals)), f"{statistics.median(vals):.0f}", f"{pct(vals, 0.95):.0f}",
                      "median < 100" if step == "detected" else "")
    con.print(s)
    if nl["seen"]:
        con.print(f"node losses: the controller saw the node lost (Consul serfHealth critical) after median "
                  f"{statistics.median(nl['seen']):.1f} s, p95 {pct(nl['seen'], 0.95):.1f} s "
                  f"({len(nl['seen'])} trials); the rest is placing and starting its instances elsewhere")


if __name__ == "__main__":
    main()
