"""A whole node is lost (its container killed): every instance it ran is
placed on the nodes left and routed there; when it comes back its stale
containers are removed and nothing runs twice. Disruptive: it restarts a
node of the shared cluster and waits until it is whole again."""

import pytest

from bay_salt.kv.store import Unavailable
from tests.e2e.helpers import API, WEB, eventually, ids_via, placements


@pytest.mark.disruptive(order=1)
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
    try:
        def placed_elsewhere():
            try:
                now = {g: placements(cluster, g) for g in ("web", "api")}
            except Unavailable:  # Consul electing a new leader if the victim led it
                return None
            return now if all(len(now[g]) == want[g] and victim.id not in now[g].values() for g in now) else None

        now = eventually(placed_elsewhere, 90, f"what {victim.id} ran placed elsewhere", interval=1)

        def routed_elsewhere():
            # a replacement is registered once healthy on its node; each HAProxy routes it a moment later
            return all({i for i, _ in ids_via(n.address, port, 30)} == set(now[g])
                       for port, g in ((WEB, "web"), (API, "api")) for n in others)

        eventually(routed_elsewhere, 30, "every other node's HAProxy routes what was placed", interval=1)
    finally:
        node.start()  # a failure above must not leave the shared cluster a node short

    def whole_again():
        names = node.exec_run(["sh", "-c", "docker ps -a --filter label=io.bay.service --format '{{.Names}}' "
                                           "2>/dev/null"]).output.decode().split()
        up = node.exec_run(["systemctl", "is-active", "salt-minion", "bay-lb-sync", "haproxy"]).exit_code == 0
        return up and not names and cluster.salt(victim.id, "test.ping", timeout=10).get(victim.id) is True

    eventually(whole_again, 180, f"{victim.id} back with no stale containers", interval=2)
    assert {g: placements(cluster, g) for g in ("web", "api")} == now  # nothing ran twice, nothing moved
