"""testinfra checks of every node of a `bay up` cluster after `state.apply bay`."""

import json

import pytest
import yaml

from tests.e2e.helpers import eventually

SERVICES = ["salt-minion", "docker", "bay-events", "consul", "haproxy", "bay-lb-sync", "cadvisor", "bay-metrics",
            "bay-statsd"]


@pytest.mark.parametrize("service", SERVICES)
def test_service_running_and_enabled(node, service):
    svc = node.service(service)
    assert svc.is_running, f"{service} is not running on {node.info.id}"
    assert svc.is_enabled, f"{service} is not enabled on {node.info.id}"


def test_ports_listening(node):
    """What a node exposes (docs/security.md): Consul's gossip and
    RPC, its API (a server's, HTTPS, ACL-protected; HTTP on loopback) and the
    services' frontends; cAdvisor and HAProxy's stats on loopback only."""
    addr = node.info.address
    for spec in (f"tcp://{addr}:8501", "tcp://127.0.0.1:8500", f"tcp://{addr}:8301", f"tcp://{addr}:8300",
                 "tcp://127.0.0.1:8404", "tcp://127.0.0.1:8080"):
        assert node.socket(spec).is_listening, spec
    for spec in (f"tcp://{addr}:8500", "tcp://0.0.0.0:8500", "tcp://0.0.0.0:8404", "tcp://0.0.0.0:8080",
                 f"tcp://{addr}:8080", f"tcp://{addr}:8404",
                 f"tcp://{addr}:8302", f"tcp://{addr}:8600"):  # no WAN gossip, DNS on loopback
        assert not node.socket(spec).is_listening, spec
    # metrics: the agent's line receiver and statsd on loopback, the containers' statsd on Docker's bridge only
    for spec in ("tcp://127.0.0.1:2013", "udp://127.0.0.1:8126", "udp://172.17.0.1:8125"):
        assert node.socket(spec).is_listening, spec
    for spec in (f"udp://{addr}:8125", "udp://0.0.0.0:8125", "tcp://0.0.0.0:2013"):
        assert not node.socket(spec).is_listening, spec
    # Graphite on the monitoring node: carbon and graphite-web on loopback, HAProxy's TLS frontends on its address
    if node.info.id == "node1":
        for spec in ("tcp://127.0.0.1:2004", "tcp://127.0.0.1:8180", f"tcp://{addr}:2014", f"tcp://{addr}:8088"):
            assert node.socket(spec).is_listening, spec
        for spec in (f"tcp://{addr}:2003", f"tcp://{addr}:2004", f"tcp://{addr}:8180", "tcp://0.0.0.0:2004"):
            assert not node.socket(spec).is_listening, spec


def test_consul_members_all_alive(cluster, node, nodes):
    out = node.check_output("CONSUL_HTTP_TOKEN=%s consul members", cluster.consul_token())
    alive = [line.split()[0] for line in out.splitlines()[1:] if " alive " in line]
    assert sorted(alive) == sorted(n.id for n in nodes)
    # without a token (ACLs, default deny) the agent shows no member
    assert not [line for line in node.run("consul members").stdout.splitlines()[1:] if " alive " in line]


def test_haproxy_runtime_socket(node):
    sock = node.file("/run/haproxy/admin.sock")
    assert sock.is_socket and sock.user == "root" and sock.mode == 0o600
    out = node.check_output(
        "/opt/bay/venv/bin/python -c 'from bay_salt.host.haproxy_runtime import RuntimeAPI; "
        "print(RuntimeAPI(\"/run/haproxy/admin.sock\").execute(\"show info\"))'"
    )
    assert "Name: HAProxy" in out


def test_docker_daemon_json_rotates_logs(node):
    conf = json.loads(node.file("/etc/docker/daemon.json").content_string)
    assert conf["log-driver"] == "json-file"
    assert conf["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert conf["live-restore"] is True
    info = json.loads(node.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file" and info["Driver"] == "overlay2"


def test_minion_python_has_bay_modules(node):
    node.run_expect([0], "/opt/bay/venv/bin/python -c 'import bay_salt, docker, consul, pydantic'")


def test_cadvisor_answers_on_its_node_only(cluster, nodes):
    master = cluster.master()
    for n in nodes:
        assert master.exec_run(["curl", "-sf", "-m", "3", f"http://{n.address}:8080/api/v1.3/machine"]).exit_code != 0
    ret = cluster.salt("*", "bay.container_usage", timeout=30)  # what the autoscaler measures with
    assert all(isinstance(v, dict) for v in ret.values()), ret


def test_master_never_auto_accepts(cluster):
    for master in cluster.masters():
        conf = yaml.safe_load(master.exec_run(["cat", "/etc/salt/master.d/bay.conf"]).output)
        assert conf["auto_accept"] is False and conf["open_mode"] is False
        keys = json.loads(master.exec_run(["salt-key", "-L", "--out=json"]).output)
        assert keys["minions_pre"] == [] and sorted(keys["minions"]) == ["node1", "node2", "node3"], master.name


def test_second_apply_changes_nothing(cluster):
    summaries = cluster.provision()
    assert {m: s.changed for m, s in summaries.items()} == {"node1": 0, "node2": 0, "node3": 0}


def test_invalid_pillar_fails_up_front_and_changes_nothing(cluster, node):
    pillar_file = cluster.state_dir / "pillar" / "bay.sls"
    good = pillar_file.read_text()
    before = node.file("/etc/docker/daemon.json").content_string
    bad = yaml.safe_load(good)
    bad["bay"]["docker"] = {"log_max_file": 9, "log_max_size": "-1m"}
    pillar_file.write_text(yaml.safe_dump(bad))
    try:
        ret = cluster.salt(node.info.id, "state.apply", "bay")[node.info.id]
    finally:
        pillar_file.write_text(good)
    assert isinstance(ret, list), f"expected render errors, got state results: {str(ret)[:500]}"
    assert any("bay:docker:log_max_size: '-1m' is not a positive size" in e for e in ret), ret[0][:500]
    assert node.file("/etc/docker/daemon.json").content_string == before


def test_gossip_encrypted_and_key_in_no_log_or_job_cache(cluster, node):
    key = yaml.safe_load((cluster.state_dir / "pillar" / "bay.sls").read_text())["bay"]["consul"]["encrypt"]
    assert key
    conf = node.file("/etc/consul.d/bay.json")
    assert conf.mode == 0o640 and conf.group == "consul"
    serf = [line.strip() for line in node.check_output("CONSUL_HTTP_TOKEN=%s consul info", cluster.consul_token())
            .splitlines() if "encrypted" in line]
    assert serf and all(line == "encrypted = true" for line in serf), serf
    # neither the minion's log nor the master's job cache (state returns) holds it
    assert node.run(f"grep -rqF '{key}' /var/log/salt /var/cache/salt/minion/proc").rc == 1
    res = cluster.master().exec_run(["grep", "-rqF", key, "/var/cache/salt/master/jobs", "/var/log/salt"])
    assert res.exit_code == 1, "the gossip key is in the master's job cache or log"


def test_modules_come_with_the_package_not_a_sync(cluster):
    """No file server carries Bay's modules and no minion holds a synced copy:
    a restarted minion has them at once, from the bay-salt it runs."""
    node = cluster.client.containers.get(next(n for n in cluster.nodes() if n.id == "node3").container)
    assert node.exec_run(["systemctl", "restart", "salt-minion"]).exit_code == 0
    eventually(lambda: cluster.salt("node3", "test.ping", timeout=5).get("node3") is True, 60, "node3 answers")
    ret = cluster.salt("node3", "bay_docker.instances", timeout=30)["node3"]
    assert isinstance(ret, list), ret
    listing = node.exec_run(["sh", "-c", "ls /var/cache/salt/minion/extmods/*/ 2>/dev/null"]).output.decode()
    assert "bay" not in listing, listing
    served = cluster.salt("node3", "cp.list_master", timeout=30)["node3"]
    assert served and not [f for f in served if f.startswith(("_modules", "_states", "_runners", "_engines"))]
