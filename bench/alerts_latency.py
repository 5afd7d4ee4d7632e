"""From an alert's condition becoming true to its notification received,
against ``for`` + 15 s, on a running `bay up` cluster.

A service ``alertbench`` (the demo image, two instances, a health check and
no liveness check, ``GroupUnhealthy`` after ``--for`` seconds) is deployed,
and its owner's contact is a real SMTP server and HTTP receiver on this
machine (tests/support/receivers.py); the evaluator runs with Bay's default
timing (a round every 5 s, ``group_wait`` 5 s). Each trial, at a random
phase, removes the health check's file in both containers (they answer 404:
the group is down, nothing is restarted); the condition is true once KV
marks both instances failing (polled every 0.2 s from here), and the trial
ends when the webhook receives the firing notification. The file is put
back, the resolved notification awaited, and the next trial begins. Also
shown: from the failure itself (the file removed) to the notification.

    .venv/bin/python bench/alerts_latency.py [--cluster default] [--trials 10] [--for 30]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import time

from common import demo_image_service, pct, up_cluster
from rich.console import Console
from rich.table import Table

from bay_salt.model import names
from tests.e2e.helpers import kv_get
from tests.support.receivers import Receivers, gateway

SERVICE, GROUP, OWNER, LISTEN = "alertbench", "web", "bench-owner", 10095
SLACK = 15.0


def failing(cluster) -> int:
    rows = kv_get(cluster, names.kv_instances_prefix(SERVICE, GROUP), recurse=True) or []
    return sum(1 for r in rows if json.loads(base64.b64decode(r["Value"]))["health"] != "passing")


def containers(cluster) -> list[tuple[object, str]]:
    out = []
    for n in cluster.nodes():
        node = cluster.client.containers.get(n.container)
        ids = node.exec_run(["docker", "ps", "-q", "--filter", f"label={names.LABEL_SERVICE}={SERVICE}"]).output.split()
        out += [(node, cid.decode()) for cid in ids]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", default=names.DEFAULT_CLUSTER)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--for", dest="for_", type=float, default=30.0)
    args = ap.parse_args()
    console = Console()
    cluster = up_cluster(args.cluster)
    body = {"health": "demo", "owners": [OWNER], "alerts": {"GroupUnhealthy": {"for": args.for_}},
            "groups": {GROUP: {"instances": 2, "cpu": 0.05, "memory": "32Mi", "port": 8000, "listen": LISTEN}}}
    from_kv, from_failure = [], []
    with Receivers(gateway(cluster)) as r:
        cluster.set_alerts(r.settings([OWNER], interval=5, group_wait=5, group_interval=10))
        try:
            with demo_image_service(cluster, SERVICE, body, console.status, timeout=120):
                for k in range(args.trials):
                    time.sleep(random.uniform(0, 5))  # no phase lock with the evaluator's rounds
                    began = time.time()
                    for node, cid in containers(cluster):
                        node.exec_run(["docker", "exec", cid, "rm", "-f", "/www/healthz"])
                    failed = time.time()
                    true_at = None
                    while not r.inbox.about(since=began, receiver=OWNER, channel="webhook", status="firing"):
                        if true_at is None and failing(cluster) >= 2:
                            true_at = time.time()
                        if time.time() - began > args.for_ + 120:
                            raise SystemExit(f"trial {k + 1}: no notification within {args.for_ + 120:.0f} s")
                        time.sleep(0.2)
                    got = r.inbox.about(since=began, receiver=OWNER, channel="webhook", status="firing")[0]["at"]
                    from_kv.append(got - (true_at or got))
                    from_failure.append(got - failed)
                    console.print(f"trial {k + 1}: {from_kv[-1]:.1f} s from the condition, {from_failure[-1]:.1f} s "
                                  "from the failure")
                    for node, cid in containers(cluster):
                        node.exec_run(["docker", "exec", cid, "sh", "-c", "echo ok > /www/healthz"])
                    deadline = time.time() + 120
                    while not r.inbox.about(since=began, receiver=OWNER, channel="webhook", status="resolved"):
                        if time.time() > deadline:
                            raise SystemExit(f"trial {k + 1}: not resolved within 120 s")
                        time.sleep(0.5)
        finally:
            cluster.set_alerts({})
    target = args.for_ + SLACK
    t = Table(title=f"Alert latency, {args.trials} trials (GroupUnhealthy, for {args.for_:.0f} s; "
                    "evaluation every 5 s, group_wait 5 s)")
    for col in ("", "median", "p95", "max", "target p95", "p95 / target"):
        t.add_column(col)
    for name, lat in (("condition true (KV) -> notification", from_kv), ("failure -> notification", from_failure)):
        p95 = pct(lat, 0.95)
        t.add_row(name, f"{statistics.median(lat):.1f} s", f"{p95:.1f} s", f"{max(lat):.1f} s", f"{target:.0f} s",
                  f"{p95 / target:.2f}x")
    console.print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
