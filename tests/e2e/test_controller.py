"""The reactive controller in a real `bay up` cluster: a container killed
inside its node is replaced and routed on every node; an event forged by
another node changes nothing; a salt-master killed mid-recovery resumes
without duplicates; a crash-looping group backs off and is failed."""

import copy
import json
import time
import urllib.error
import urllib.request

from bay_salt import names
from bay_salt.cluster.local import BayError
from tests.e2e.test_services import WEB, containers, pillar, registered, wait_routed  # noqa: F401 (fixture)


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


def kv_get(cluster, key, recurse=False):
    """Consul KV read over HTTP from the host (the cluster's own bridge network)."""
    node = cluster.nodes()[0]
    url = f"http://{node.address}:8500/v1/kv/{key}" + ("?recurse" if recurse else "")
    try:
        return json.loads(urllib.request.urlopen(url, timeout=2).read())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return []
        raise


def test_master_restarted_mid_recovery_resumes_without_duplicates(cluster):
    """Kill an instance, SIGKILL the salt-master as soon as the controller has
    recorded its decision (instance critical, replacement placed) and start it
    again: the restarted controller reconciles to the desired count, with
    nothing running twice."""
    before = web_instances(cluster)
    victim, node_id = sorted(before.items())[-1]
    node = next(n for n in cluster.nodes() if n.id == node_id)
    master = cluster.master()
    cluster.client.containers.get(node.container).exec_run(["docker", "kill", f"bay-demo-web-{victim}"])
    deadline = time.monotonic() + 10
    while not kv_get(cluster, names.kv_placements_prefix(), recurse=True):
        assert time.monotonic() < deadline, "the controller recorded no placement within 10 s"
        time.sleep(0.02)
    master.exec_run(["systemctl", "kill", "--signal=KILL", "salt-master"])
    pending = kv_get(cluster, names.kv_placements_prefix(), recurse=True)
    assert master.exec_run(["systemctl", "restart", "salt-master"]).exit_code == 0
    deadline = time.monotonic() + 90
    while True:
        try:
            now = web_instances(cluster)
            ok = victim not in now and len(now) == len(before) and not kv_get(cluster, "bay/placements/", True)
        except BayError:  # the master is still starting
            ok = False
        if ok:
            break
        assert time.monotonic() < deadline, f"not reconciled in 90 s (pending at the kill: {pending})"
        time.sleep(1)
    wait_routed(cluster, WEB, "web", len(before))
    # nothing ran twice: the containers running are exactly the registered instances
    assert containers(cluster, "web") == set(now)
    for n in cluster.nodes():
        ps = cluster.client.containers.get(n.container).exec_run(
            ["docker", "ps", "-a", "--filter", "label=io.bay.group=web", "--format", "{{.Names}} {{.Status}}"])
        assert all(" Up " in f" {line} " for line in ps.output.decode().splitlines()), (n.id, ps.output)
    log = master.exec_run(["grep", "-c", names.TAG_CONTROLLER_RESUMED, "/var/log/salt/master"]).output.decode()
    assert int(log.strip() or 0) >= 1


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
    master = cluster.master()
    # log lines from now on
    since = int(master.exec_run(["sh", "-c", "wc -l < /var/log/salt/master"]).output.decode().strip())
    try:
        cluster.runner("bay.deploy", "crashy")
        deadline = time.monotonic() + 90
        while not (st := cluster.runner("bay.status", "crashy")["crashy.loop"])["failed"]:
            assert time.monotonic() < deadline, f"not failed in 90 s: {st}"
            time.sleep(1)
        assert "crash loop" in st["failed"] and st["registered"] == 0
        # the first restart at once, then backing off: 0.5 s, 1 s, 2 s (the cap)
        log = master.exec_run(["sh", "-c", f"tail -n +{since + 1} /var/log/salt/master | "
                                           f"grep {names.TAG_CONTAINER_BACKOFF}"]).output.decode()
        waits = [float(line.split("'seconds': ")[1].split("}")[0]) for line in log.splitlines()
                 if "crashy.loop" in line]
        assert waits == [0.5, 1.0, 2.0], log
        assert "4 restarts in a row" in st["failed"]
        time.sleep(6)  # nothing restarts it any more
        assert containers(cluster, "loop") == set()
        assert cluster.runner("bay.status", "crashy")["crashy.loop"]["registered"] == 0
        # a deploy starts it afresh (clears the failed mark and the back-off)
        cluster.runner("bay.deploy", "crashy")
        assert cluster.runner("bay.status", "crashy")["crashy.loop"]["failed"] is None
    finally:
        cluster.runner("bay.scale", "crashy.loop", "0")
