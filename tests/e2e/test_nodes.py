"""testinfra checks of every node of a `bay up` cluster after `state.apply bay`."""

import json

import pytest
import testinfra
import yaml

from bay_salt.model import names
from tests.e2e.helpers import eventually, haproxy_servers

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
    out = node.check_output("CONSUL_HTTP_TOKEN=%s consul members", cluster.site.consul_token())
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
    serf = [line.strip() for line in node.check_output("CONSUL_HTTP_TOKEN=%s consul info", cluster.site.consul_token())
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



def test_what_docker_leaves_behind_is_found_then_removed_and_nothing_else(cluster, nodes):
    """Node hygiene (bay_salt.node.hygiene) on node3: each kind of leftover
    made there by hand; a dry run names each and removes nothing, a clean
    removes them all and nothing of what runs (its containers, images,
    HAProxy servers), and a second look finds nothing. The e2e site asks for
    no round of the agents' own and keeps nothing dead or dangling
    (tests/e2e/prebuild.py), so every leftover made here is due."""
    info = next(i for i in nodes if i.id == "node3")
    n = testinfra.get_host(f"docker://{info.container}")
    gone_ip = "172.17.0.250"
    rules = {"nat": f"-A DOCKER ! -i docker0 -p tcp -m tcp --dport 39999 -j DNAT --to-destination {gone_ip}:8000",
             "filter": f"-A DOCKER -d {gone_ip}/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 8000 -j ACCEPT"}
    for table, rule in rules.items():
        n.check_output(f"iptables -t {table} {rule}")
    n.check_output(f"conntrack -I -s {gone_ip} -d 10.0.0.1 -p tcp --sport 8000 --dport 40000 "
                   "--state ESTABLISHED -u ASSURED -t 300")
    n.check_output("ip link add vethbaylft0 type veth peer name vethbaylft1")
    image = n.check_output("docker images --format '{{.Repository}}:{{.Tag}}' | grep -v -e '<none>' -e bay-leftover | head -1")
    n.check_output(f"docker create --name bay-leftover-dead --label {names.LABEL_SERVICE}=leftover {image} true")
    for k in range(2):  # the second build takes the tag: the first is dangling
        n.check_output(f"printf 'FROM {image}\\nLABEL bay.leftover={k}\\n' | docker build -q -t bay-leftover:x -")
    volumes = ["a" * 64, "b" * 64]  # anonymous volumes' names
    for v in volumes:
        n.check_output("docker volume create %s", v)
    running = n.check_output("docker ps -q --no-trunc | sort")
    images = set(n.check_output("docker images -q --no-trunc --filter dangling=false").split())
    routed = haproxy_servers(cluster, info)

    dry = cluster.runner("bay.node_clean", "node3")
    found = {(f["kind"], f["name"]) for f in dry["found"]}
    made = {("nat_rule", rules["nat"]), ("filter_rule", rules["filter"]), ("conntrack", gone_ip),
            ("veth", "vethbaylft0"), ("veth", "vethbaylft1"), ("dead_container", "bay-leftover-dead"),
            *(("dangling_volume", v) for v in volumes)}
    assert made <= found, sorted(made - found)
    assert "dangling_image" in {k for k, _ in found}, dry["found"]
    assert dry["removed"] == [] and n.run("ip link show vethbaylft0").rc == 0 and rules["nat"] in n.check_output(
        "iptables-save -t nat")

    done = cluster.runner("bay.node_clean", "node3", "dry_run=False")
    assert done["errors"] == [], done["errors"]
    # a veth pair goes with either end: its peer counts as removed (gone at the second look) or not found again
    assert {(f["kind"], f["name"]) for f in done["removed"]} >= made - {("veth", "vethbaylft1")}
    assert rules["nat"] not in n.check_output("iptables-save -t nat")
    assert rules["filter"] not in n.check_output("iptables-save -t filter")
    assert gone_ip not in n.run("conntrack -L").stdout
    assert n.run("ip link show vethbaylft0").rc != 0 and n.run("ip link show vethbaylft1").rc != 0
    assert n.run("docker inspect bay-leftover-dead").rc != 0
    assert not set(n.check_output("docker volume ls -q").split()) & set(volumes)
    assert n.check_output("docker images -q --filter dangling=true") == ""
    # what runs is untouched
    assert n.check_output("docker ps -q --no-trunc | sort") == running
    assert images <= set(n.check_output("docker images -q --no-trunc").split())
    assert haproxy_servers(cluster, info) == routed
    assert cluster.runner("bay.node_clean", "node3")["found"] == []
    # what the metrics agent reports
    state = json.loads(n.check_output("cat /var/lib/bay/hygiene.json"))
    assert state["counts"]["removed.nat_rule"] == 1 and state["counts"]["removed.dead_container"] == 1
    n.run("docker rmi bay-leftover:x")
