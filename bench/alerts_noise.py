"""Noise: the notifications sent while 100 single containers are killed
under load, on a running `bay up` cluster. The reference is 0: a single
container's death is the controller's business, not a person's.

A service ``noisebench`` (the demo image with its health and liveness
checks, three groups of eight instances) is deployed with Bay's default
rules and timing; its owner and the platform team are a real SMTP server
and HTTP receiver on this machine (tests/support/receivers.py). Requests go
to the three groups through every node's HAProxy all along (about 20 a
second). Then 100 times: one running container of the next group (in turn)
is killed (`docker kill`), the cluster is waited on until it has converged
again, and a random 2-5 s passes. Every notification the receivers get
from the first kill to 90 s after the last (any alert, any receiver) is
counted.

    .venv/bin/python bench/alerts_noise.py [--cluster default] [--kills 100]
"""

from __future__ import annotations

import argparse
import collections
import random
import threading
import time
import urllib.request

from common import demo_image_service, up_cluster
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bay_salt.model import names
from tests.e2e.helpers import converges
from tests.support.receivers import Receivers, gateway

SERVICE, OWNER, LISTEN = "noisebench", "noise-owner", 10100
GROUPS = ("a", "b", "c")


class Load:
    def __init__(self, cluster, rate: float = 20.0):
        self.urls = [f"http://{n.address}:{LISTEN + k}/" for n in cluster.nodes() for k in range(len(GROUPS))]
        self.rate, self.ok, self.failed = rate, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        k = 0
        while not self.stop.is_set():
            try:
                urllib.request.urlopen(self.urls[k % len(self.urls)], timeout=5).read()
                self.ok += 1
            except OSError:
                self.failed += 1
            k += 1
            time.sleep(1 / self.rate)


def running(cluster, group: str) -> list[tuple[object, str]]:
    out = []
    for n in cluster.nodes():
        node = cluster.client.containers.get(n.container)
        ids = node.exec_run(["docker", "ps", "-q", "--filter", f"label={names.LABEL_SERVICE}={SERVICE}",
                             "--filter", f"label={names.LABEL_GROUP}={group}"]).output.split()
        out += [(node, cid.decode()) for cid in ids]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", default=names.DEFAULT_CLUSTER)
    ap.add_argument("--kills", type=int, default=100)
    args = ap.parse_args()
    console = Console()
    cluster = up_cluster(args.cluster)
    body = {"health": "demo", "liveness": "demo", "owners": [OWNER],
            "groups": {g: {"instances": 8, "cpu": 0.02, "memory": "16Mi", "port": 8000, "listen": LISTEN + k}
                       for k, g in enumerate(GROUPS)}}
    with Receivers(gateway(cluster)) as r:
        # Bay's default timing (a round every 5 s, group_wait 5 s, group_interval 60 s)
        cluster.set_alerts(r.settings([OWNER], interval=5, group_wait=5, group_interval=60))
        load = Load(cluster)
        try:
            with demo_image_service(cluster, SERVICE, body, console.status):
                load.thread.start()
                began = time.time()
                took = []
                with Progress(console=console) as progress:
                    task = progress.add_task("single-container kills", total=args.kills)
                    for k in range(args.kills):
                        group = GROUPS[k % len(GROUPS)]
                        node, cid = random.choice(running(cluster, group))
                        node.exec_run(["docker", "kill", cid])
                        took.append(converges(cluster, 120, services=("demo", SERVICE)))
                        progress.advance(task)
                        time.sleep(random.uniform(2, 5))
                ended = time.time()
                time.sleep(90)  # what a `for` of 60 s and a group_wait would still send
                got = r.inbox.about(since=began)
                load.stop.set()  # before the service goes
        finally:
            load.stop.set()
            cluster.set_alerts({})
    by = collections.Counter((x["receiver"], x["alertname"], x["status"]) for x in got)
    t = Table(title=f"Noise: {args.kills} single-container kills in {ended - began:.0f} s under load "
                    f"({load.ok} requests, {load.failed} failed)")
    for col in ("figure", "value", "reference"):
        t.add_column(col)
    t.add_row("notifications (any alert, any receiver)", str(len(got)), "0")
    t.add_row(f"... about {SERVICE}", str(sum(1 for x in got if x["service"] == SERVICE)), "0")
    for (receiver, alert, status), n in sorted(by.items()):
        t.add_row(f"    {receiver}: {alert} {status}", str(n), "")
    t.add_row("convergence after a kill (median)", f"{sorted(took)[len(took) // 2]:.1f} s", "")
    console.print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
