"""The log relay and the log endpoint under 1,000 idle connections (#24):
other containers' lines and other readers are not held up.

On a `bay up` cluster, node2 (not the kafka node), ``--rounds`` times each,
alternating quiet and attacked:

* **The relay.** A victim container (the demo's image, labelled as an
  instance of demo.web, so the relay takes its lines) writes ``--lines``
  JSON lines through its node's relay; the figure is the time from its
  first line until every one of them is in Kafka's topic, read from this
  machine over SASL_SSL. The attacker is another container on the same
  node, also labelled as a Bay container, that opens 1,000 connections to
  the relay and holds them, each with half a line sent (a slow client).
* **The endpoint.** A reader on this machine fetches the last 100 lines of
  a demo instance on node2 from ``https://node2:8095`` (a new connection
  each time, the token from ``salt-run bay.logs``), ``--fetches`` times. The
  attacker is a container on the cluster's network that holds 1,000
  connections to the endpoint without ever starting TLS (and opens new ones
  as the endpoint closes them).

Reported: lines delivered, medians, and attacked / quiet (medians).

    .venv/bin/python bench/logs_idle.py [--cluster default] [--lines 2000] [--rounds 3] [--fetches 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import up_cluster  # noqa: E402

from bay_salt.cluster import images  # noqa: E402
from bay_salt.logs import client as log_client  # noqa: E402
from bay_salt.logs import kafka  # noqa: E402
from bay_salt.model import names  # noqa: E402

console = Console()
SERVICE, GROUP = "demo", "web"
ATTACKER = "bay-bench-idle-attacker"

#: holds N connections to HOST:PORT for SECONDS, each with half a line sent, opening new ones as they close
HOLD = r"""
import os, signal, socket, sys, time
print(os.getpid(), flush=True)
signal.signal(signal.SIGTERM, lambda *_: (print(opened, held(), flush=True), os._exit(0)))
host, port, n, seconds, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
socks, opened, end = [], 0, time.monotonic() + seconds
held = lambda: len(socks)
while time.monotonic() < end:
    live = []
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1) == b"":
                s.close()
                continue
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        live.append(s)
    socks = live
    tries = 0
    while len(socks) < n and tries < n and time.monotonic() < end:
        tries += 1
        try:
            s = socket.create_connection((host, port), timeout=0.5)
            if payload:
                s.sendall(payload.encode())
            socks.append(s)
            opened += 1
        except OSError:
            pass
    time.sleep(0.05)
print(opened, len(socks), flush=True)
"""


def kafka_client(cluster) -> kafka.Client:
    """Bay's Kafka user, from this cluster's secrets, over TLS with the cluster's CA."""
    pillar = cluster.state_dir / "pillar"
    password = yaml.safe_load((pillar / "bay-secrets-node.sls").read_text())["bay"]["kafka"]["password"]
    return kafka.Client(f"{cluster.nodes()[0].address}:9092", "bay", password,
                        str(cluster.state_dir / "pki" / "ca.pem"))


def relay_round(cluster, node, image, lines: int, consumer) -> tuple[int, float]:
    """(lines of the victim in Kafka, seconds from its start until the last arrived)."""
    box = cluster.client.containers.get(node.container)
    inst = f"v{uuid.uuid4().hex[:6]}"
    labels = " ".join(f"--label {k}={v}" for k, v in ((names.LABEL_SERVICE, SERVICE), (names.LABEL_GROUP, GROUP),
                                                      (names.LABEL_INSTANCE, inst)))
    gw = box.exec_run(["sh", "-c", "docker network inspect bridge -f '{{(index .IPAM.Config 0).Gateway}}'"]
                      ).output.decode().strip()
    script = (f'i=0; while [ $i -lt {lines} ]; do echo "{{\\"message\\":\\"{inst} $i\\"}}"; i=$((i+1)); done '
              f"| nc {gw} 5140")
    name = names.service_container(SERVICE, GROUP, inst)
    began = time.monotonic()
    res = box.exec_run(["sh", "-c", f"docker run -d --name {name} {labels} --entrypoint sh {image} -c '{script}'"])
    assert res.exit_code == 0, res.output.decode()[-300:]
    got, last = 0, began
    deadline = began + 60
    try:
        while got < lines and time.monotonic() < deadline:
            m = consumer.poll(0.2)
            if m is None or m.error() is not None:
                continue
            if json.loads(m.value()).get("message", "").startswith(f"{inst} "):  # whatever the relay named it
                got, last = got + 1, time.monotonic()
    finally:
        box.exec_run(["docker", "rm", "-f", name])
    return got, last - began


def fetches(entry_url, token, ca, n) -> tuple[int, list[float]]:
    ok, took = 0, []
    for _ in range(n):
        t = time.perf_counter()
        try:
            if len(list(log_client.fetch(entry_url, token, ca, tail=100))) > 0:
                ok += 1
        except Exception:  # noqa: BLE001 - a refused reader is what is counted
            pass
        took.append(time.perf_counter() - t)
    return ok, took


def main() -> None:
    from confluent_kafka import Consumer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", default=names.DEFAULT_CLUSTER)
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fetches", type=int, default=20)
    args = ap.parse_args()
    cluster = up_cluster(args.cluster)
    node = cluster.nodes()[1]
    box = cluster.client.containers.get(node.container)
    image = cluster.site.services_pillar()["bay"]["services"]["demo"]["image"]
    ca = str(cluster.state_dir / "pki" / "ca.pem")
    found = cluster.runner("bay.logs", f"{SERVICE}.{GROUP}")
    entry = next(e for e in found["entries"] if e["node"] == node.id and e["state"] == "live")
    consumer = Consumer(kafka_client(cluster).conf(**{"group.id": f"bench-{uuid.uuid4().hex[:6]}",
                                                     "auto.offset.reset": "latest"}))
    consumer.subscribe([names.log_topic(SERVICE)])
    while not consumer.assignment():
        consumer.poll(0.2)
    attack_inst = f"a{uuid.uuid4().hex[:6]}"
    attack_name = names.service_container(SERVICE, GROUP, attack_inst)
    labels = " ".join(f"--label {k}={v}" for k, v in ((names.LABEL_SERVICE, SERVICE), (names.LABEL_GROUP, GROUP),
                                                      (names.LABEL_INSTANCE, attack_inst)))
    outside = None
    relay = {"quiet": [], "attacked": []}
    dialled: dict[str, list[tuple[int, int]]] = {}  # where -> (connections opened, open at the end) per round
    endpoint = {"quiet": [], "attacked": []}
    try:
        # the relay's attacker: a Bay-labelled container on node2; its connections come from its own
        # address (the node's Python in its network namespace)
        box.exec_run(["sh", "-c", f"docker run -d --name {attack_name} {labels} --entrypoint sleep {image} 3600"])
        pid = box.exec_run(["docker", "inspect", "-f", "{{.State.Pid}}", attack_name]).output.decode().strip()
        gw = box.exec_run(["sh", "-c", "docker network inspect bridge -f '{{(index .IPAM.Config 0).Gateway}}'"]
                          ).output.decode().strip()
        # the endpoint's attacker: a machine on the cluster's network (a service container cannot reach 8095)
        subprocess.run(["docker", "rm", "-f", ATTACKER], capture_output=True)
        outside = cluster.client.containers.run(images.ensure_node_image(cluster.client, cluster.progress),
                                                ["sleep", "3600"], name=ATTACKER, detach=True, entrypoint=[],
                                                network=names.network_name(cluster.name))
        for r in range(args.rounds):
            for mode in ("quiet", "attacked"):
                holders = []  # (container, process, pid inside it)
                if mode == "attacked":
                    for where, cmd in (
                            (node.container, ["nsenter", "-t", pid, "-n", "/opt/bay/venv/bin/python", "-c", HOLD, gw,
                                              "5140", "1000", "120", '{"message": "half a li']),
                            (ATTACKER, [f"{images.VENV}/bin/python", "-c", HOLD, node.address, "8095", "1000", "120",
                                        ""])):
                        p = subprocess.Popen(["docker", "exec", where, *cmd], stdout=subprocess.PIPE, text=True)
                        inner = p.stdout.readline().strip()
                        if not inner.isdigit():
                            raise SystemExit(f"logs_idle.py: the attacker in {where} did not start (see above)")
                        holders.append((where, p, inner))
                    time.sleep(5)  # the connections are open
                with console.status(f"round {r + 1}/{args.rounds}, {mode}: {args.lines} lines, "
                                    f"{args.fetches} fetches"):
                    relay[mode].append(relay_round(cluster, node, image, args.lines, consumer))
                    endpoint[mode].append(fetches(entry["url"], found["token"], ca, args.fetches))
                for where, p, inner in holders:  # the holder itself, by its id inside its container
                    subprocess.run(["docker", "exec", where, "kill", inner], capture_output=True)
                    out = p.stdout.read().split()
                    p.wait(timeout=30)
                    if len(out) == 2:
                        dialled.setdefault(where, []).append((int(out[0]), int(out[1])))
                if holders:
                    time.sleep(2)
    finally:
        consumer.close()
        box.exec_run(["docker", "rm", "-f", attack_name])
        if outside is not None:
            outside.remove(force=True)
    table = Table(title=f"the relay and the log endpoint of {node.id}, quiet vs 1,000 idle connections "
                        f"({args.rounds} rounds each, alternating)")
    for col in ("what", "quiet", "attacked", "attacked / quiet (medians)"):
        table.add_column(col, justify="right")
    q = [t for _, t in relay["quiet"]]
    a = [t for _, t in relay["attacked"]]
    table.add_row(f"victim's {args.lines} lines delivered (per round)",
                  " ".join(str(g) for g, _ in relay["quiet"]), " ".join(str(g) for g, _ in relay["attacked"]), "")
    table.add_row("seconds until all in Kafka (median)", f"{statistics.median(q):.2f}", f"{statistics.median(a):.2f}",
                  f"{statistics.median(a) / statistics.median(q):.2f}x")
    fq = [x for _, xs in endpoint["quiet"] for x in xs]
    fa = [x for _, xs in endpoint["attacked"] for x in xs]
    table.add_row("reader's fetches served", str(sum(ok for ok, _ in endpoint["quiet"])),
                  str(sum(ok for ok, _ in endpoint["attacked"])), f"of {args.fetches * args.rounds}")
    table.add_row("fetch ms (median)", f"{statistics.median(fq) * 1000:.0f}", f"{statistics.median(fa) * 1000:.0f}",
                  f"{statistics.median(fa) / statistics.median(fq):.2f}x")
    console.print(table)
    for where, counts in dialled.items():
        console.print(f"attacker in {where}: connections opened per round {[o for o, _ in counts]}, "
                      f"still open when stopped {[h for _, h in counts]}")


if __name__ == "__main__":
    main()
