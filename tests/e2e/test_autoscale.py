"""Autoscaling in a real `bay up` cluster: a CPU-burning group (busybox
httpd with a CGI that spins the CPU, 0.1 CPU per instance) under load from
a small load generator inside node1 (LOAD: 6 clients in a loop, the
node's own Python, nothing to install) scales up from cAdvisor's figures; after the load stops it
scales back down once the window has passed, and every decision is in KV."""

import base64
import copy
import json
import time

from bay_salt.model import names
from tests.e2e.helpers import eventually, ids_via, kv_get, master_log_lines, master_log_since, status

PORT = 10095
SCRIPT = (
    "mkdir -p /www/cgi-bin; echo ok > /www/healthz; "
    "printf '%s.%s %s v1\\n' \"$BAY_SERVICE\" \"$BAY_GROUP\" \"$BAY_INSTANCE\" > /www/index.html; "
    "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\ni=0\\n"
    "while [ $i -lt 3000 ]; do i=$((i+1)); done\\necho burnt\\n' > /www/cgi-bin/burn; "
    "chmod +x /www/cgi-bin/burn; exec httpd -f -p 8000 -h /www"
)
BURN = {"image": None, "owners": ["platform-team"], "command": ["/bin/sh", "-c", SCRIPT],
        "health": {"http": "/healthz", "interval": "1s", "timeout": "500ms", "rise": 1, "fall": 2,
                   "start_period": "30s"},
        "groups": {"cpu": {"instances": 1, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": PORT,
                           "autoscale": {"min": 1, "max": 4, "target_cpu": 0.5, "scale_down_window": "20s",
                                         "scale_down_step": 0.5}}}}


#: inside node1: 6 clients requesting URL in a loop for 60 s (ended early with pkill -f bay-e2e-load)
LOAD = """
import sys, threading, time, urllib.request
def client(url, until):
    while time.monotonic() < until:
        try:
            urllib.request.urlopen(url, timeout=5).read()
        except OSError:
            time.sleep(0.1)
until = time.monotonic() + 60
threads = [threading.Thread(target=client, args=(sys.argv[-1], until)) for _ in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
"""
STOP_LOAD = ["pkill", "-f", "bay-e2e-load"]


def count(cluster):
    return status(cluster, "burn")["burn.cpu"]["registered"]


def decisions(cluster, since):
    return [line for line in master_log_since(cluster, since, names.TAG_SCALE_DECIDED) if "burn.cpu" in line]


def test_cpu_load_scales_up_then_down_after_the_window(cluster, pillar):
    spec = copy.deepcopy(pillar)
    spec["bay"]["services"]["burn"] = dict(BURN, image=spec["bay"]["services"]["demo"]["image"])
    spec["bay"]["controller"] = {"autoscale_interval": 2.0, "scale_down_drain": 1.0}
    cluster.set_services(spec)
    since = master_log_lines(cluster)
    node1 = cluster.client.containers.get(cluster.nodes()[0].container)
    try:
        cluster.runner("bay.deploy", "burn")
        assert count(cluster) == 1
        node1.exec_run(["/opt/bay/venv/bin/python", "-c", LOAD, "bay-e2e-load",
                        f"http://127.0.0.1:{PORT}/cgi-bin/burn"], detach=True)
        eventually(lambda: count(cluster) >= 3, 75, "scaled up to 3 under load", interval=2)
        ups = [d for d in decisions(cluster, since) if "'reason': 'up'" in d]
        assert ups, decisions(cluster, since)
        # routed: every node's HAProxy serves the instances the autoscaler added

        def routed():
            want = {i.split("@")[0] for i in status(cluster, "burn")["burn.cpu"]["instances"]}
            return {i for i, _ in ids_via(cluster.nodes()[1].address, PORT, 30)} == want

        eventually(routed, 30, "node2's HAProxy serves every burn.cpu instance", interval=0)
        node1.exec_run(STOP_LOAD)
        stopped = time.monotonic()
        eventually(lambda: count(cluster) <= 1, 150, "scaled down to 1 after the window", interval=2)
        assert time.monotonic() - stopped >= 20  # not before the 20 s window had passed
        downs = [d for d in decisions(cluster, since) if "'reason': 'down'" in d]
        assert downs and any("deferred" in d for d in decisions(cluster, since))
        state = json.loads(base64.b64decode(kv_get(cluster, names.kv_scale("burn", "cpu"))[0]["Value"]))
        assert state["state"]["desired"] == 1 and state["last"]["desired"] == 1
    finally:
        node1.exec_run(STOP_LOAD)
        cluster.runner("bay.scale", "burn.cpu", "0")
