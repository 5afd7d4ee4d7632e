"""Losing the leading master of a 3-node, 2-master `bay up` cluster (#23).

Per trial: the master whose controller leads is killed (``docker kill`` of
its container, every process at once); 2 s later a demo.web container is
killed on its node. Measured from that container's kill:

* **routed**: its replacement registered and the group back at its count in
  every node's HAProxy (the same check as the e2e tests);
* **leader**: when the other master's lock shows it leads (from the master kill);
* **services**: `salt-run bay.status` through the live master while the old
  one is down (the operators' command), wall time.

Then the old master is started again and the trial waits until it stands by.
The anchors, in the same run: a container killed with both masters up (the
leader handles its event), and the takeover rule itself (TAKEOVER = 4 s of
silence, plus Consul's lock delay).

    .venv/bin/python bench/masters.py [--trials 5] [--cluster bench]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from common import bench_cluster, first_restarts, pct  # noqa: I001 - bench/ is on the path when run as a script

from bay_salt.kv.records import read_leader
from bay_salt.kv.store import ConsulStore
from bay_salt.master import leader
from tests.e2e.helpers import WEB, eventually, wait_routed, web_instances


def leader_id(cluster) -> str | None:
    try:
        held = read_leader(ConsulStore(cluster.consul_client(cluster.nodes()[0].address)),
                           "controller")
    except Exception:  # noqa: BLE001 - Consul busy: not known this time
        return None
    return held.master if held else None


def registered(cluster) -> set[str] | None:
    """demo.web's registered instances, from KV over HTTP (cheap: polling with
    `salt-run` would load this 2-core machine and slow what it measures)."""
    try:
        items = ConsulStore(cluster.consul_client(cluster.nodes()[0].address))
        return {i.instance for i in items.instances("demo", "web")}
    except Exception:  # noqa: BLE001 - Consul busy: not known this time
        return None


def kill_and_heal(cluster, timeout: float = 90) -> float:
    before = web_instances(cluster)
    victim, node_id = sorted(before.items())[0]
    node = next(n for n in cluster.nodes() if n.id == node_id)
    began = time.monotonic()
    cluster.client.containers.get(node.container).exec_run(["docker", "kill", f"bay-demo-web-{victim}"])

    def healed():
        now = registered(cluster)
        return now is not None and victim not in now and len(now) == len(before)

    eventually(healed, timeout, f"{victim} replaced", interval=0.1)
    wait_routed(cluster, WEB, "web", len(before), timeout=timeout)
    return time.monotonic() - began


def trial(cluster) -> tuple[float, float, float]:
    """(kill -> routed, master kill -> new leader, bay.status) for one kill of the leading master."""
    old = cluster.leading_master()
    old_id = old.labels["io.bay.minion"]
    log_lines = int(old.exec_run(["sh", "-c", "wc -l < /var/log/salt/master"]).output.decode().strip() or 0)
    led: list[float] = []
    killed = time.monotonic()
    old.kill()

    def watch():
        while time.monotonic() - killed < 60 and not led:
            if leader_id(cluster) not in (None, old_id):
                led.append(time.monotonic() - killed)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        time.sleep(2)
        routed = kill_and_heal(cluster)
        began = time.monotonic()
        cluster.runner("bay.status", timeout=30)  # the operators' command, through the live master
        took = time.monotonic() - began
        watcher.join(60)
    finally:
        old.start()
    script = f"tail -n +{log_lines + 1} /var/log/salt/master | grep -c 'standing by; '"
    eventually(lambda: old.exec_run(["sh", "-c", script]).output.strip() not in (b"", b"0"), 120,
               f"{old_id} standing by")
    return routed, (led or [float("nan")])[0], took


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--cluster", default="bench")
    args = p.parse_args()
    cluster = bench_cluster(args.cluster)
    if len(cluster.masters()) < 2:
        raise SystemExit(f"cluster {args.cluster!r} has one master: `bay --cluster {args.cluster} up --masters 2`")
    anchor, routed, leads, services = [], [], [], []
    with first_restarts(cluster):
        time.sleep(12)  # the controller reads the nodes' settings again every 10 s (REPORTS_TTL)
        for t in range(args.trials):
            anchor.append(kill_and_heal(cluster))
            r, lead, took = trial(cluster)
            routed.append(r)
            leads.append(lead)
            services.append(took)
            print(f"trial {t + 1}: anchor {anchor[-1]:.1f} s, after the master kill {r:.1f} s "
                  f"(leader after {lead:.1f} s), bay.status {took:.2f} s", flush=True)
    rule = leader.TAKEOVER + leader.LOCK_DELAY

    def row(name, xs, target):
        print(f"| {name} | {len(xs)} | {statistics.median(xs):.1f} s | {pct(xs, 0.95):.1f} s | {target} |")

    print("\n| figure | trials | median | p95 | target |\n| --- | ---: | ---: | ---: | --- |")
    row("container killed, both masters up -> replaced and routed (anchor)", anchor, "")
    row("leader master killed, container killed 2 s later -> replaced and routed", routed, "p95 < 15 s")
    row("leader master killed -> the other master's lock", leads, f"takeover rule {rule:.0f} s + a beat")
    row("`salt-run bay.status` on the live master while the other is down", services, "< 5 s")


if __name__ == "__main__":
    main()
