"""How long fetching a dead container's last 100 lines through its node's
URL takes, next to ``docker logs --tail 100`` on the node, in the same run.

In a `bay up` cluster: on a node, two containers of the demo's image print
the same ``--lines`` lines and exit. One is removed the way Bay removes its
containers (``bay_docker.stop``: its output kept on the node); the other
stays, for ``docker logs``. Then, ``--trials`` times each, alternating:

* the reference: ``docker logs --tail 100`` of the container that stayed,
  run on the node (the CLI against the node's Docker, as an operator would);
* the URL: ``GET https://NODE:8095/v1/logs/...?tail=100`` of the removed
  one, with a token from ``salt-run bay.logs``, from the node itself
  (HTTPS, a new connection each time) and from this machine.

Medians and p95 are reported; the figure is URL / docker logs (medians).

    .venv/bin/python bench/logs_fetch.py [--cluster default] [--lines 20000] [--trials 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import pct, up_cluster  # noqa: E402

from bay_salt.logs import client  # noqa: E402
from bay_salt.model import names  # noqa: E402

console = Console()
SERVICE, GROUP = "demo", "web"  # a service the runner knows (the token is for its output)

#: run on the node: time N fetches of each kind, alternating (seconds, JSON)
ON_NODE = r"""
import json, subprocess, sys, time, requests
name, url, token, ca, trials = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
out = {"docker": [], "url": [], "lines": []}
for _ in range(trials):
    t = time.perf_counter()
    r = subprocess.run(["docker", "logs", "--tail", "100", name], capture_output=True)
    out["docker"].append(time.perf_counter() - t)
    t = time.perf_counter()
    body = requests.get(url, params={"tail": "100"}, headers={"Authorization": "Bearer " + token}, verify=ca,
                        timeout=30).content
    out["url"].append(time.perf_counter() - t)
    out["lines"].append([len(r.stdout.splitlines()) + len(r.stderr.splitlines()), len(body.splitlines())])
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", default=names.DEFAULT_CLUSTER)
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--trials", type=int, default=30)
    args = ap.parse_args()
    cluster = up_cluster(args.cluster)
    node = cluster.nodes()[1]
    nc = cluster.client.containers.get(node.container)
    image = cluster.site.services_pillar()["bay"]["services"]["demo"]["image"]
    tag = uuid.uuid4().hex[:8]
    kept_inst, live_inst = f"bench{tag[:3]}k", f"bench{tag[:3]}l"
    script = f"i=0; while [ $i -lt {args.lines} ]; do echo log line $i of a container that will die; i=$((i+1)); done"
    made = []
    try:
        with console.status(f"two containers printing {args.lines} lines on {node.id}"):
            for inst in (kept_inst, live_inst):
                name = names.service_container(SERVICE, GROUP, inst)
                labels = " ".join(f"--label {k}={v}" for k, v in ((names.LABEL_SERVICE, SERVICE),
                                                                  (names.LABEL_GROUP, GROUP),
                                                                  (names.LABEL_INSTANCE, inst)))
                res = nc.exec_run(["sh", "-c", f"docker run -d --name {name} {labels} --entrypoint sh {image} "
                                               f"-c '{script}' && docker wait {name}"])
                assert res.exit_code == 0, res.output.decode()[-500:]
                made.append(name)
            kept_name = names.service_container(SERVICE, GROUP, kept_inst)
            cluster.salt(node.id, "bay_docker.stop", json.dumps([kept_name]), timeout=60)
            made.remove(kept_name)
        found = cluster.runner("bay.logs", f"{SERVICE}.{GROUP}/{kept_inst}")
        (entry,) = found["entries"]
        assert entry["state"] == "kept", entry
        ca_node = "/etc/bay/ca.pem"
        with console.status(f"{args.trials} fetches of each on {node.id}"):
            res = nc.exec_run(["/opt/bay/venv/bin/python", "-c", ON_NODE, names.service_container(SERVICE, GROUP,
                               live_inst), entry["url"], found["token"], ca_node, str(args.trials)])
            got = json.loads(res.output.decode().strip().splitlines()[-1])
        ca = str(cluster.state_dir / "pki" / "ca.pem")
        remote = []
        with console.status(f"{args.trials} fetches from this machine"):
            for _ in range(args.trials):
                t = time.perf_counter()
                lines = list(client.fetch(entry["url"], found["token"], ca, tail=100))
                remote.append(time.perf_counter() - t)
                assert len(lines) == 100
    finally:
        for name in made:
            nc.exec_run(["docker", "rm", "-f", name])
    assert all(d == 100 and u == 100 for d, u in got["lines"]), got["lines"][:3]
    table = Table(title=f"the last 100 of {args.lines} lines, {args.trials} trials ({node.id})")
    for col in ("how", "median ms", "p95 ms", "vs docker logs (median)"):
        table.add_column(col, justify="right")
    ref = statistics.median(got["docker"])
    for label, xs in (("docker logs --tail 100 (on the node)", got["docker"]),
                      ("URL of the kept output (from the node)", got["url"]),
                      ("URL of the kept output (from this machine)", remote)):
        table.add_row(label, f"{statistics.median(xs) * 1000:.1f}", f"{pct(xs, 0.95) * 1000:.1f}",
                      f"{statistics.median(xs) / ref:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
