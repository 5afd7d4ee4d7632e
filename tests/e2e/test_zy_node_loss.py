"""A whole node is lost (its container killed): every instance it ran is
placed on the nodes left and routed there; when it comes back its stale
containers are removed and nothing runs twice. Runs late (file order): it
restarts a node of the shared cluster and waits until it is whole again."""

import time

from bay_salt.cluster.local import BayError
from tests.e2e.test_services import API, WEB, ids_via


def placements(cluster, group):
    st = cluster.runner("bay.status", "demo")[f"demo.{group}"]
    return {line.split("@")[0]: line.split("@")[1].split(":")[0] for line in st["instances"]}


def test_node_lost_then_back(cluster):
    where = {g: placements(cluster, g) for g in ("web", "api")}
    want = {g: len(p) for g, p in where.items()}
    on = [node for p in where.values() for node in p.values()]
    # the busiest node but node1 (node1 holds the registry the replacements pull from)
    victim = max((n for n in cluster.nodes() if n.id != "node1"), key=lambda n: on.count(n.id))
    assert on.count(victim.id) > 0, where
    others = [n for n in cluster.nodes() if n.id != victim.id]
    node = cluster.client.containers.get(victim.container)
    node.kill()
    deadline = time.monotonic() + 90
    while True:
        try:
            now = {g: placements(cluster, g) for g in ("web", "api")}
        except BayError as err:  # Consul electing a new leader if the victim led it
            assert time.monotonic() < deadline, f"bay.status kept failing: {err}"
            time.sleep(1)
            continue
        if all(len(now[g]) == want[g] and victim.id not in now[g].values() for g in now):
            break
        assert time.monotonic() < deadline, f"not placed elsewhere in 90 s: {now}"
        time.sleep(1)
    for port, g in ((WEB, "web"), (API, "api")):
        for n in others:
            assert {i for i, _ in ids_via(n.address, port, 30)} == set(now[g]), (n.id, g)

    node.start()
    deadline = time.monotonic() + 180
    while True:
        names = node.exec_run(["sh", "-c", "docker ps -a --filter label=io.bay.service --format '{{.Names}}' "
                                           "2>/dev/null"]).output.decode().split()
        up = node.exec_run(["systemctl", "is-active", "salt-minion", "bay-lb-sync", "haproxy"]).exit_code == 0
        if up and not names and cluster.salt(victim.id, "test.ping", timeout=10).get(victim.id) is True:
            break
        assert time.monotonic() < deadline, f"{victim.id} back but stale containers remain: {names}"
        time.sleep(2)
    assert {g: placements(cluster, g) for g in ("web", "api")} == now  # nothing ran twice, nothing moved
