"""What the service containers' sandbox costs (#24): the same work with the
nftables table on and off, alternating, in the same run.

* requests from a container: --requests HTTP/1.0 requests, each a new TCP
  connection (busybox nc in a demo container on node1), to its node's
  frontend (the table's input chain) and to a demo instance on another node
  by its address and host port (the forward chain and the peers set);
* registry pulls: node3's Docker pulls the demo image (about 1 MiB) and a
  --big-mib image (one layer of random bytes, pushed once by the bench as
  the registry's admin; pulled with a Docker config of its own) again
  through its HAProxy (the engine's own traffic, which the table passes on
  its first rule: it is not on the bridge); the big one is the throughput
  figure, in MiB/s.

"Off" removes the table and stops bay-lb-sync on the node (which would write
it again); both are put back after each round. Target: on/off >= 0.95 for
each, median of --rounds rounds.

    .venv/bin/python bench/sandbox.py [--cluster e2e] [--rounds 5] [--requests 300] [--big-mib 200]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time

from common import up_cluster  # noqa: I001 - bench/ is on the path when run as a script
from rich.console import Console
from rich.table import Table

from bay_salt.model import names
from tests.e2e.helpers import eventually, kv_get


def timed(box, cmd: list[str]) -> float:
    t = time.perf_counter()
    res = box.exec_run(cmd)
    if res.exit_code != 0:
        raise SystemExit(f"{' '.join(cmd)[:120]}: {res.output.decode()[-300:]}")
    return time.perf_counter() - t


def sandbox(box, on: bool) -> None:
    if on:
        box.exec_run(["systemctl", "start", "bay-lb-sync"])
        eventually(lambda: box.exec_run(["nft", "list", "table", "inet", names.SANDBOX_TABLE]).exit_code == 0,
                   30, "the sandbox written again")
    else:
        box.exec_run(["systemctl", "stop", "bay-lb-sync"])
        box.exec_run(["nft", "delete", "table", "inet", names.SANDBOX_TABLE])


#: a Docker config of the bench's own on the nodes (the admin's login), so the node's own is not touched
BENCH_DOCKER_CONFIG = "/tmp/bay-bench-docker"


def push_big(cluster, boxes, base: str, mib: int) -> str:
    """A ``mib`` MiB image (one layer of random bytes on the demo image) built on the first of ``boxes``
    and pushed as the registry's admin, logged in on each in the bench's own Docker config; its name."""
    user, password, _ = cluster.site.registry_login()
    name = f"127.0.0.1:5000/bay/bench-big:{mib}"
    for box in boxes:  # the password through the environment of one exec and stdin, never a command line
        res = box.exec_run(["sh", "-c", f'printf %s "$P" | DOCKER_CONFIG={BENCH_DOCKER_CONFIG} docker login -u {user} '
                                        "--password-stdin 127.0.0.1:5000"], environment={"P": password})
        if res.exit_code != 0:
            raise SystemExit(f"docker login as {user}: {res.output.decode()[-300:]}")
    script = (f"set -e; mkdir -p /tmp/bay-bench-big && cd /tmp/bay-bench-big && "
              f"head -c {mib}M /dev/urandom > blob && printf 'FROM {base}\\nCOPY blob /blob\\n' > Dockerfile && "
              f"docker build -q -t {name} . >/dev/null && rm -rf /tmp/bay-bench-big && "
              f"DOCKER_CONFIG={BENCH_DOCKER_CONFIG} docker push -q {name}")
    timed(boxes[0], ["sh", "-c", script])
    return name


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cluster", default="e2e")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--big-mib", type=int, default=200)
    args = p.parse_args()
    cluster = up_cluster(args.cluster)
    nodes = cluster.nodes()
    one, three = (cluster.client.containers.get(n.container) for n in (nodes[0], nodes[2]))
    cid = one.exec_run(["docker", "ps", "-q", "--filter", f"label={names.LABEL_SERVICE}=demo"]).output.split()[0]
    remote = next(json.loads(base64.b64decode(e["Value"])) for e in kv_get(cluster, "bay/instances/demo/", True)
                  if json.loads(base64.b64decode(e["Value"]))["node"] != nodes[0].id)
    gateway = one.exec_run(["docker", "network", "inspect", "bridge", "--format",
                            "{{(index .IPAM.Config 0).Gateway}}"]).output.decode().strip()
    image = "127.0.0.1:5000/bay/demo:2"

    def requests(host, port):
        loop = (f'i=0; while [ $i -lt {args.requests} ]; do printf "GET / HTTP/1.0\\r\\n\\r\\n" | '
                f'nc -w 3 {host} {port} | grep -q "^HTTP/1" || exit 1; i=$((i+1)); done')
        return args.requests / timed(one, ["docker", "exec", cid.decode(), "sh", "-c", loop])

    def pull():
        three.exec_run(["docker", "rmi", "-f", image])
        return 1 / timed(three, ["docker", "pull", "-q", image])

    big = push_big(cluster, [one, three], image, args.big_mib)

    def pull_big():
        three.exec_run(["docker", "rmi", "-f", big])
        return args.big_mib / timed(three, ["env", f"DOCKER_CONFIG={BENCH_DOCKER_CONFIG}", "docker", "pull", "-q", big])

    work = {"requests/s, container -> its node's frontend": lambda: requests(gateway, 10080),
            "requests/s, container -> an instance on another node": lambda: requests(remote["address"],
                                                                                    remote["port"]),
            "pulls/s, node3's Docker -> the registry (demo image)": pull,
            f"MiB/s, node3's Docker pulling a {args.big_mib} MiB image": pull_big}
    got: dict[str, dict[bool, list[float]]] = {k: {True: [], False: []} for k in work}
    try:
        for r in range(args.rounds):
            for on in ((True, False) if r % 2 == 0 else (False, True)):
                sandbox(one, on)
                sandbox(three, on)
                for k, fn in work.items():
                    got[k][on].append(fn())
    finally:
        sandbox(one, True)
        sandbox(three, True)
        for box in (one, three):
            box.exec_run(["docker", "rmi", "-f", big])
            box.exec_run(["rm", "-rf", BENCH_DOCKER_CONFIG])
    t = Table(title=f"the sandbox on vs off, median of {args.rounds} rounds (alternating)")
    for col in ("work", "sandbox on", "sandbox off", "on / off", "target"):
        t.add_column(col)
    for k, v in got.items():
        on, off = statistics.median(v[True]), statistics.median(v[False])
        t.add_row(k, f"{on:.2f}", f"{off:.2f}", f"{on / off:.2f}x", ">= 0.95x")
    Console(width=160).print(t)


if __name__ == "__main__":
    main()
