"""The reactive controller in a real `bay up` cluster: a container killed
inside its node is replaced and routed on every node; an event forged by
another node changes nothing."""

import json
import time

from bay_salt import names
from tests.e2e.test_services import WEB, containers, registered, wait_routed


def web_instances(cluster):
    st = cluster.runner("bay.status", "demo")["demo.web"]
    return {line.split("@")[0]: line.split("@")[1].split(":")[0] for line in st["instances"]}


def test_killed_container_is_replaced_and_routed(cluster):
    before = web_instances(cluster)
    victim, node_id = sorted(before.items())[0]
    node = next(n for n in cluster.nodes() if n.id == node_id)
    c = cluster.client.containers.get(node.container)
    c.exec_run(["docker", "kill", f"bay-demo-web-{victim}"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = web_instances(cluster)
        if victim not in now and len(now) == len(before):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"not replaced in 30 s: {before} -> {web_instances(cluster)}")
    (new,) = set(now) - set(before)
    assert now[new] == node_id  # same node: it is healthy
    wait_routed(cluster, WEB, "web", len(before))
    names = c.exec_run(["docker", "ps", "-a", "--format", "{{.Names}}"]).output.decode().split()
    assert f"bay-demo-web-{victim}" not in names  # the dead container was removed
    assert containers(cluster, "web") == set(now)


def test_event_forged_by_another_node_changes_nothing(cluster):
    before = web_instances(cluster)
    victim, owner = sorted(before.items())[0]
    forger = next(n.id for n in cluster.nodes() if n.id != owner)
    for claimed in (owner, forger):  # naming the real owner, and naming itself
        payload = json.dumps({"node": claimed, "service": "demo", "group": "web", "instance": victim, "exit_code": 137})
        ret = cluster.salt(forger, "event.send", names.TAG_CONTAINER_DIED, payload)
        assert ret.get(forger) is True
    time.sleep(5)
    assert web_instances(cluster) == before
    log = cluster.master().exec_run(["grep", "-c", names.TAG_EVENT_REJECTED, "/var/log/salt/master"]).output.decode()
    assert int(log.strip() or 0) >= 2
    assert registered(cluster, "web") == set(before)
