"""The reactive controller in a real `bay up` cluster: a container killed
inside its node is replaced and routed on every node; an event forged by
another node changes nothing; a salt-master killed mid-recovery resumes
without duplicates; a crash-looping group backs off and is failed."""

import copy
import json

from bay_salt.model import names
from tests.e2e.helpers import (
    WEB,
    containers,
    eventually,
    kv_get,
    leading_master,
    master_log_lines,
    master_log_since,
    reconcile_passes,
    registered,
    status,
    wait_routed,
    web_instances,
)


def test_killed_container_is_replaced_and_routed(cluster):
    before = web_instances(cluster)
    victim, node_id = sorted(before.items())[0]
    node = next(n for n in cluster.nodes() if n.id == node_id)
    c = cluster.client.containers.get(node.container)
    c.exec_run(["docker", "kill", f"bay-demo-web-{victim}"])

    def replaced():
        now = web_instances(cluster)
        return now if victim not in now and len(now) == len(before) else None

    now = eventually(replaced, 30, f"{victim} replaced (before: {before})")
    (new,) = set(now) - set(before)
    assert now[new] == node_id  # same node: it is healthy
    wait_routed(cluster, WEB, "web", len(before))
    # the dead container is removed (just after its replacement is registered: the test reads KV directly)
    eventually(lambda: f"bay-demo-web-{victim}" not in
               c.exec_run(["docker", "ps", "-a", "--format", "{{.Names}}"]).output.decode().split(), 15,
               f"bay-demo-web-{victim} removed")
    assert containers(cluster, "web") == set(now)


#: root on a node sends an ``events`` list through its own minion's channel: Salt fires each item with
#: the id the item claims (here another node's), not the sender's
FORGE_LIST = r"""
import json, sys
import salt.channel.client, salt.config, salt.minion
opts = salt.config.minion_config("/etc/salt/minion")
opts["master"] = sys.argv[1]
opts.update(salt.minion.resolve_dns(opts, fallback=False))
with salt.channel.client.ReqChannel.factory(opts) as channel:
    channel.send({"id": opts["id"], "cmd": "_minion_event", "events": [json.loads(sys.argv[2])]}, tries=1, timeout=10)
"""


def test_event_forged_by_another_node_changes_nothing(cluster):
    before = web_instances(cluster)
    victim, owner = sorted(before.items())[0]
    forger = next(n for n in cluster.nodes() if n.id != owner)
    since = master_log_lines(cluster)
    for claimed in (owner, forger.id):  # naming the real owner, and naming itself
        payload = json.dumps({"node": claimed, "service": "demo", "group": "web", "instance": victim, "exit_code": 137})
        ret = cluster.salt(forger.id, "event.send", names.TAG_CONTAINER_DIED, payload)
        assert ret.get(forger.id) is True
    # an events list whose item claims to come from the owner itself
    data = {"node": owner, "service": "demo", "group": "web", "instance": victim, "exit_code": 137}
    item = {"tag": names.TAG_CONTAINER_DIED, "data": {"id": owner, "tag": names.TAG_CONTAINER_DIED, "data": data,
                                                     "cmd": "_minion_event"}}
    res = cluster.client.containers.get(forger.container).exec_run(
        ["/opt/bay/venv/bin/python", "-c", FORGE_LIST, cluster.leading_master().name, json.dumps(item)])
    assert res.exit_code == 0, res.output.decode()[-500:]
    # all three were handled (and rejected): only then is "nothing changed" a finding
    eventually(lambda: len(master_log_since(cluster, since, names.TAG_EVENT_REJECTED)) >= 3, 30,
               "the three forged events rejected")
    assert any("not signed" in line for line in master_log_since(cluster, since, f"claiming to be from {owner}"))
    assert web_instances(cluster) == before
    assert registered(cluster, "web") == set(before)


def test_master_restarted_mid_recovery_resumes_without_duplicates(cluster):
    """Kill an instance, SIGKILL the salt-master as soon as the controller has
    recorded its decision (instance critical, replacement placed) and start it
    again: the restarted controller reconciles to the desired count, with
    nothing running twice."""
    before = web_instances(cluster)
    victim, node_id = sorted(before.items())[-1]
    node = next(n for n in cluster.nodes() if n.id == node_id)
    master = leading_master(cluster)
    since = master_log_lines(cluster)
    cluster.client.containers.get(node.container).exec_run(["docker", "kill", f"bay-demo-web-{victim}"])
    eventually(lambda: kv_get(cluster, names.kv_placements_prefix(), recurse=True), 10,
               "the controller recorded a placement", interval=0.02)
    master.exec_run(["systemctl", "kill", "--signal=KILL", "salt-master"])
    pending = kv_get(cluster, names.kv_placements_prefix(), recurse=True)
    assert master.exec_run(["systemctl", "restart", "salt-master"]).exit_code == 0

    def reconciled():
        now = web_instances(cluster)
        ok = victim not in now and len(now) == len(before) and not kv_get(cluster, "bay/placements/", True)
        return now if ok else None

    now = eventually(reconciled, 90, f"reconciled after the restart (pending at the kill: {pending})", interval=1)
    wait_routed(cluster, WEB, "web", len(before))
    # nothing ran twice: the containers running are exactly the registered instances
    assert containers(cluster, "web") == set(now)
    for n in cluster.nodes():
        ps = cluster.client.containers.get(n.container).exec_run(
            ["docker", "ps", "-a", "--filter", "label=io.bay.group=web", "--format", "{{.Names}} {{.Status}}"])
        assert all(" Up " in f" {line} " for line in ps.output.decode().splitlines()), (n.id, ps.output)
    # the restarted master took its lock back at once, or the other one took over: either resumed
    assert master_log_since(cluster, since, names.TAG_CONTROLLER_RESUMED)


CRASHY = {"image": None, "owners": ["platform-team"],
          "command": ["/bin/sh", "-c", "/bin/sh /demo.sh & sleep 3; exit 3"],  # healthy for 3 s, then exits
          "health": {"http": "/healthz", "interval": "1s", "timeout": "500ms", "rise": 1, "fall": 2,
                     "start_period": "30s"},
          "groups": {"loop": {"instances": 1, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": 10090}}}


def test_crash_loop_backs_off_then_fails_the_group(cluster, pillar):
    spec = copy.deepcopy(pillar)
    spec["bay"]["services"]["crashy"] = dict(CRASHY, image=spec["bay"]["services"]["demo"]["image"])
    spec["bay"]["controller"] = {"restart_backoff": 0.5, "restart_backoff_max": 2.0, "crash_loop_restarts": 4}
    cluster.set_services(spec)
    since = master_log_lines(cluster)
    try:
        cluster.runner("bay.deploy", "crashy")
        st = eventually(lambda: (s := status(cluster, "crashy")["crashy.loop"])["failed"] and s, 90,
                        "crashy.loop failed", interval=1)
        assert "crash loop" in st["failed"] and st["registered"] == 0
        # the first restart at once, then backing off: 0.5 s, 1 s, 2 s (the cap)
        log = master_log_since(cluster, since, names.TAG_CONTAINER_BACKOFF)
        waits = [float(line.split("'seconds': ")[1].split("}")[0]) for line in log if "crashy.loop" in line]
        assert waits == [0.5, 1.0, 2.0], log
        assert "4 restarts in a row" in st["failed"]
        # nothing restarts it any more: two reconciliation passes later (each compares the
        # group with its deployed count) it still runs nothing
        passes = reconcile_passes(cluster)
        eventually(lambda: reconcile_passes(cluster) >= passes + 2, 30, "two reconciliation passes")
        assert containers(cluster, "loop", service="crashy") == set()
        assert status(cluster, "crashy")["crashy.loop"]["registered"] == 0
        # a deploy starts it afresh (clears the failed mark and the back-off)
        cluster.runner("bay.deploy", "crashy")
        assert status(cluster, "crashy")["crashy.loop"]["failed"] is None
    finally:
        cluster.runner("bay.scale", "crashy.loop", "0")
