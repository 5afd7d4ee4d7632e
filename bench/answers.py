"""Commands that answer in seconds, always (#23): the operators' commands
timed on a 3-node, 2-master `bay up` cluster while something is broken,
beside the same commands on the healthy cluster in the same run:

* **node cut off**: node3's cluster network dropped both ways (iptables in
  the node), timed 2 s after the cut (Consul still counts it alive, its
  minion answers nothing) and again once the controller has moved its work;
* **master down**: the master the CLI would use is stopped; the CLI goes to
  the other one;
* **no Consul leader**: the Consul agents of two of the three servers
  stopped (quorum lost: KV answers "No cluster leader").

Commands (each through the `bay` CLI, as an operator runs it, wall time with
the process start): ``services``, ``status``, ``alerts``, ``logs`` of a
demo.web instance (its last lines), and a deploy that must be refused (an
unknown service: the refusal path). Target: every one < 5 s in every case.

    .venv/bin/python bench/answers.py [--rounds 3] [--cluster e2e]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import CHECKOUT, bench_cluster  # noqa: I001 - bench/ is on the path when run as a script
from rich.console import Console
from rich.table import Table

from tests.e2e.helpers import eventually, placements

TARGET = 5.0
BAY = str(CHECKOUT / ".venv" / "bin" / "bay")


def commands(where: dict[str, str]) -> dict[str, list[str]]:
    """The commands timed; ``where``: demo.web's instances and their nodes (a log from node1 and one from node3)."""
    out = {"services": ["services"], "status": ["status"], "alerts": ["alerts"]}
    for node in ("node1", "node3"):
        inst = next((i for i, n in sorted(where.items()) if n == node), None)
        if inst:
            out[f"logs ({node})"] = ["logs", f"demo.web/{inst}", "--tail", "5"]
    out["deploy refused"] = ["deploy", "no-such-service"]
    return out


def timed(cluster_name: str, args: list[str]) -> tuple[float, int, str]:
    began = time.monotonic()
    res = subprocess.run([BAY, "--cluster", cluster_name, *args], capture_output=True, text=True, timeout=300)
    took = time.monotonic() - began
    # what an operator reads when it fails: its one line (a success prints a table: not repeated here)
    said = " ".join((res.stderr.strip() or res.stdout.strip()).split()) if res.returncode else ""
    return took, res.returncode, said[:160]


def in_node(cluster, node_id: str, *cmd: str) -> int:
    node = next(n for n in cluster.nodes() if n.id == node_id)
    return cluster.client.containers.get(node.container).exec_run(list(cmd)).exit_code


CUT = "iptables -I INPUT -i eth0 -j DROP && iptables -I OUTPUT -o eth0 -j DROP"
UNCUT = "iptables -D INPUT -i eth0 -j DROP; iptables -D OUTPUT -o eth0 -j DROP"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cluster", default="e2e")
    a = ap.parse_args()
    cluster = bench_cluster(a.cluster)
    console = Console()
    rows: dict[tuple[str, str], list[tuple[float, int, str]]] = {}

    cmds: dict[str, list[str]] = {}

    def measure(case: str) -> None:
        for name, args in cmds.items():
            got = timed(cluster.name, args)
            rows.setdefault((case, name), []).append(got)
            console.print(f"  {case:<28} {name:<15} {got[0]:5.1f} s  exit {got[1]}  {got[2]}")

    for r in range(a.rounds):
        console.rule(f"round {r + 1} of {a.rounds}")
        cmds = commands(placements(cluster, "web"))
        measure("healthy (anchor)")

        assert in_node(cluster, "node3", "sh", "-c", CUT) == 0
        try:
            time.sleep(2)
            measure("node3 cut off, 2 s after")
            eventually(lambda: "node3" not in placements(cluster, "web").values(), 90, "node3's work moved")
            measure("node3 cut off, work moved")
        finally:
            in_node(cluster, "node3", "sh", "-c", UNCUT)
        eventually(lambda: cluster.salt("node3", "test.ping", timeout=5).get("node3") is True, 120, "node3 back")

        first = cluster.master()
        first.stop(timeout=5)
        try:
            measure(f"{first.name} stopped")
        finally:
            first.start()
        eventually(lambda: cluster.salt("*", "test.ping", timeout=5).get("node1") is True, 120, "master back")

        stopped = ["node2", "node3"]
        for n in stopped:
            in_node(cluster, n, "systemctl", "stop", "consul")
        try:
            time.sleep(3)
            measure("no Consul leader")
        finally:
            for n in stopped:
                in_node(cluster, n, "systemctl", "start", "consul")
        eventually(lambda: bool(placements(cluster, "web")), 120, "Consul has a leader again")

    table = Table(title=f"bay commands under faults ({a.rounds} rounds; target < {TARGET:.0f} s)")
    for col in ("case", "command", "median", "max", "exits", "what a failure said (last round)"):
        table.add_column(col)
    worst = 0.0
    for (case, name), got in rows.items():
        times = [t for t, _, _ in got]
        worst = max(worst, max(times)) if case != "healthy (anchor)" else worst
        table.add_row(case, name, f"{statistics.median(times):.1f} s", f"{max(times):.1f} s",
                      ",".join(str(c) for _, c, _ in got), got[-1][2])
    console.print(table)
    console.print(f"slowest answer under a fault: {worst:.1f} s (target < {TARGET:.0f} s): "
                  + ("[green]met[/]" if worst < TARGET else "[red]NOT met[/]"))
    return 0 if worst < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
