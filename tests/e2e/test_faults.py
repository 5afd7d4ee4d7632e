"""Ordinary failures in a real `bay up` cluster, each ending with the whole
cluster checked converged (tests/e2e/helpers.py: convergence): every group at
its desired count of passing instances in KV, every registered instance's
container running (not paused) on its node, no other Bay container running,
and every node's HAProxy holding exactly the registered servers, all UP.
Events are the fast path; reconciliation must heal what they miss."""

import copy
import time

import pytest

from bay_salt.cluster.local import BayError
from tests.e2e.helpers import API, WEB, converges, eventually, ids_via, placements, reconcile_passes, registered


def node_of(cluster, node_id):
    return next(n for n in cluster.nodes() if n.id == node_id)


def on(cluster, node_id, *cmd):
    """``cmd`` in the node, as root with the controller's Consul token (ACLs: `consul` answers nothing without one)."""
    res = cluster.client.containers.get(node_of(cluster, node_id).container).exec_run(
        list(cmd), environment={"CONSUL_HTTP_TOKEN": cluster.site.consul_token() or ""})
    return res.exit_code, res.output.decode()


def victim(cluster, group="web"):
    inst, node_id = sorted(placements(cluster, group).items())[0]
    return inst, node_id, f"bay-demo-{group}-{inst}"


def replaced(cluster, group, inst):
    return eventually(lambda: inst not in placements(cluster, group), 30, f"{inst} replaced")


def test_a_refused_spec_does_not_break_recovery(cluster, pillar):
    """An invalid spec is refused, the owner reverts the file (the minions
    still hold the invalid pillar): every instance killed is still replaced."""
    bad = copy.deepcopy(pillar)
    bad["bay"]["services"]["demo"]["groups"]["api"]["memory"] = "lots"
    cluster.set_services(bad)
    with pytest.raises(BayError, match=r"demo\.api: memory: 'lots' is not a memory size"):
        cluster.runner("bay.deploy", "demo")
    cluster.set_services(pillar)  # reverted, not deployed: the minions hold the invalid pillar
    for group in ("web", "api"):
        for inst, node_id in sorted(placements(cluster, group).items()):
            on(cluster, node_id, "docker", "kill", f"bay-demo-{group}-{inst}")
            replaced(cluster, group, inst)
    converges(cluster)
    st = cluster.runner("bay.status", "demo")
    assert "memory" in (st["demo.api"]["pillar"] or "") or st["demo.api"]["pillar"] is None


def test_a_paused_instance_is_replaced(cluster):
    inst, node_id, name = victim(cluster)
    on(cluster, node_id, "docker", "pause", name)
    replaced(cluster, "web", inst)
    converges(cluster)


def test_a_stopped_process_fails_liveness_and_is_replaced(cluster):
    inst, node_id, name = victim(cluster, "api")
    _, pid = on(cluster, node_id, "docker", "inspect", "-f", "{{.State.Pid}}", name)
    # the container's init and the service's process under it, all stopped (hung, not dead)
    assert on(cluster, node_id, "sh", "-c", f"kill -STOP {pid.strip()} $(pgrep -P {pid.strip()})")[0] == 0
    replaced(cluster, "api", inst)
    converges(cluster)


def test_a_death_while_the_minion_is_down_is_not_lost(cluster):
    inst, node_id, name = victim(cluster)
    on(cluster, node_id, "systemctl", "kill", "--signal=KILL", "salt-minion")
    on(cluster, node_id, "docker", "kill", name)
    replaced(cluster, "web", inst)
    converges(cluster)
    eventually(lambda: on(cluster, node_id, "systemctl", "is-active", "salt-minion")[0] == 0, 30, "minion back")


def test_a_death_nobody_reports_is_found_by_reconciliation(cluster):
    inst, node_id, name = victim(cluster)
    since = reconcile_passes(cluster)
    on(cluster, node_id, "systemctl", "stop", "bay-events")
    try:
        on(cluster, node_id, "docker", "kill", name)
        replaced(cluster, "web", inst)
        converges(cluster)
        assert reconcile_passes(cluster) > since
    finally:
        on(cluster, node_id, "systemctl", "start", "bay-events")


@pytest.mark.parametrize("unit", ["docker", "consul", "bay-lb-sync"])
def test_a_node_daemon_restarted_or_killed_under_the_cluster(cluster, unit):
    node_id = "node2"
    if unit == "bay-lb-sync":
        assert on(cluster, node_id, "systemctl", "kill", "--signal=KILL", unit)[0] == 0
    else:
        assert on(cluster, node_id, "systemctl", "restart", unit)[0] == 0
    eventually(lambda: on(cluster, node_id, "systemctl", "is-active", unit)[0] == 0, 60, f"{unit} active")
    converges(cluster, timeout=90)


def test_a_whole_group_killed_at_once_is_restored_in_parallel(cluster):
    """Every instance of a group killed at once: each is replaced (how fast,
    and that the starts overlap, is bench/faults.py's to measure)."""
    where = placements(cluster, "web")
    for inst, node_id in where.items():
        on(cluster, node_id, "docker", "kill", f"bay-demo-web-{inst}")
    eventually(lambda: not set(where) & set(placements(cluster, "web")) and len(placements(cluster, "web")) == len(where),
               60, "every web instance replaced")
    converges(cluster)


def test_a_missing_image_is_one_line_and_changes_nothing(cluster, pillar):
    before = placements(cluster, "web")
    spec = copy.deepcopy(pillar)
    web = spec["bay"]["services"]["demo"]["groups"]["web"]
    web["image"] = spec["bay"]["services"]["demo"]["image"].replace(":1", ":404")
    cluster.set_services(spec)
    with pytest.raises(BayError) as err:
        cluster.runner("bay.deploy", "demo")
    msg = str(err.value)
    assert "demo.web" in msg and ":404" in msg and "node" in msg and "Traceback" not in msg, msg
    assert len(msg.splitlines()) == 1 and "the old instances keep serving" in msg
    assert placements(cluster, "web") == before
    cluster.set_services(pillar)
    converges(cluster)


@pytest.mark.disruptive(order=2)
def test_a_node_cut_off_then_back_runs_nothing_twice(cluster):
    """node3 loses the cluster network (its packets dropped both ways) while
    its containers keep running: what it ran is restored elsewhere; back,
    its stale copies are removed and its HAProxy routes what the cluster has."""
    node_id = "node3"
    had = {g: {i for i, n in placements(cluster, g).items() if n == node_id} for g in ("web", "api")}
    scaled = not any(had.values())
    if scaled:  # earlier faults left node3 empty: one more web instance goes there (spread), to be lost
        cluster.runner("bay.scale", "demo.web", "4")
        had["web"] = {i for i, n in placements(cluster, "web").items() if n == node_id}
        assert had["web"], placements(cluster, "web")
    cut = ["sh", "-c", "iptables -I INPUT -i eth0 -j DROP && iptables -I OUTPUT -o eth0 -j DROP"]
    assert on(cluster, node_id, *cut)[0] == 0
    try:
        eventually(lambda: all(not (set(placements(cluster, g)) & had[g]) and node_id not in
                               placements(cluster, g).values() for g in had), 90,
                   "what node3 ran placed elsewhere", interval=2)
    finally:
        on(cluster, node_id, "sh", "-c", "iptables -D INPUT -i eth0 -j DROP; iptables -D OUTPUT -o eth0 -j DROP")
    converges(cluster, timeout=120)
    n3 = node_of(cluster, node_id)
    for port, g in ((WEB, "web"), (API, "api")):
        assert {i for i, _ in ids_via(n3.address, port, 30)} == registered(cluster, g), g
    if scaled:
        cluster.runner("bay.deploy", "demo")
        converges(cluster)


@pytest.mark.disruptive(order=3)
def test_rolling_restart_of_every_node_with_one_drained_keeps_the_consul_quorum(cluster):
    """Each node restarted as soon as the previous one is back: Consul always
    has a leader (within an election), and the cluster converges after. node2's
    restart is maintenance as a platform team does it: drained first (what it
    runs moves, nothing fails), undrained once back, used again."""
    import threading

    import requests

    gaps, stop = [], threading.Event()

    def watch():
        last_ok = time.monotonic()
        while not stop.is_set():
            ok = False
            for n in cluster.nodes():
                try:
                    ok = bool(cluster.consul_client(n.address, timeout=1).status.leader())
                except (OSError, requests.exceptions.RequestException):
                    continue
                if ok:
                    break
            now = time.monotonic()
            if ok:
                gaps.append(now - last_ok)
                last_ok = now
            time.sleep(0.5)

    drained = "node2"
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        for node_id in ("node1", "node2", "node3"):
            if node_id == drained:
                out = cluster.runner("bay.drain", node_id)
                assert out and all(node_id not in placements(cluster, g).values() for g in ("web", "api")), out
                converges(cluster)
            c = cluster.client.containers.get(node_of(cluster, node_id).container)
            c.restart(timeout=10)
            eventually(lambda node_id=node_id: on(cluster, node_id, "consul", "members")[1].count(" alive ") >= 3
                       and cluster.salt(node_id, "test.ping", timeout=5).get(node_id) is True, 180,
                       f"{node_id} back", interval=2)
            if node_id == drained:
                assert "back in service" in cluster.runner("bay.undrain", node_id)[node_id]["summary"]
        converges(cluster, timeout=180)
    finally:
        stop.set()
        t.join()
    assert max(gaps) < 15, f"Consul had no leader for {max(gaps):.1f} s"
    _, peers = on(cluster, "node1", "consul", "operator", "raft", "list-peers")
    voters = [row for row in peers.splitlines()[1:] if row.split()[4:5] == ["true"]]
    assert len(voters) == 3, peers  # every server back as a voter (autopilot's cleanup is off)
    cluster.runner("bay.scale", "demo.web", "4")  # something new may go to the undrained node again
    eventually(lambda: drained in placements(cluster, "web").values() or len(placements(cluster, "web")) == 4, 60,
               "scaled with node2 back")
    cluster.runner("bay.deploy", "demo")
    converges(cluster)
