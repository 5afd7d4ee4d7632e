import shutil
import subprocess

import pytest

from bay_salt.model import settings
from bay_salt.node import nodefiles as nodeconf
from tests.helpers import CHECKOUT, REGISTRY_AUTH, TOKENS


def cfg_for(minion, **extra):
    p = settings.deep_merge(
        {
            "nodes": {"node1": {"address": "10.0.0.1"}, "node2": {"address": "10.0.0.2"}, "node3": {"address": "10.0.0.3"}},
            "consul": {"servers": ["node1", "node2"], "acl": {"tokens": TOKENS}},
            "registry": {"auth": REGISTRY_AUTH},
        },
        extra,
    )
    return settings.load(settings.formula_defaults(CHECKOUT), p, minion)


def test_docker_daemon_rotates_logs_and_knows_the_registry():
    conf = nodeconf.docker_daemon_config(cfg_for("node1", docker={"registry": "10.0.0.1:5000"}))
    assert conf["log-driver"] == "json-file"
    assert conf["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert conf["live-restore"] is True
    assert conf["insecure-registries"] == ["10.0.0.1:5000"]
    assert conf["registry-mirrors"] == ["http://10.0.0.1:5000"]


def test_docker_daemon_without_registry_has_no_registry_keys():
    conf = nodeconf.docker_daemon_config(cfg_for("node1"))
    assert "insecure-registries" not in conf and "registry-mirrors" not in conf


def test_consul_server_and_client():
    server = nodeconf.consul_config(cfg_for("node1"))
    assert server["server"] is True and server["bootstrap_expect"] == 2
    assert server["bind_addr"] == server["advertise_addr"] == "10.0.0.1"
    assert server["retry_join"] == ["10.0.0.2"]
    assert server["performance"] == {"raft_multiplier": 1}  # production Raft timings
    client = nodeconf.consul_config(cfg_for("node3"))
    assert client["server"] is False and "bootstrap_expect" not in client and "performance" not in client
    assert client["retry_join"] == ["10.0.0.1", "10.0.0.2"]
    assert client["leave_on_terminate"] is True
    # every agent gossips with the same timings: a stopped node is declared failed in seconds
    gossip = {"probe_interval": "500ms", "probe_timeout": "300ms", "suspicion_mult": 3}
    assert server["gossip_lan"] == client["gossip_lan"] == gossip


def test_gossip_timeout_must_be_shorter_than_the_interval():
    bad = {"nodes": {"n": {}}, "consul": {"acl": {"tokens": TOKENS},
                                          "gossip_lan": {"probe_interval": "500ms", "probe_timeout": "1s"}}}
    with pytest.raises(settings.SettingsError, match="probe_timeout must be shorter than probe_interval"):
        settings.load(settings.formula_defaults(CHECKOUT), bad, "n")


def test_consul_needs_an_address():
    cfg = settings.load(settings.formula_defaults(CHECKOUT), {"nodes": {"n": {}}, "consul": {"acl": {"tokens": TOKENS}}},
                        "n")
    with pytest.raises(ValueError, match="no address"):
        nodeconf.consul_config(cfg)


def test_haproxy_base_config_has_admin_socket_root_only():
    text = nodeconf.haproxy_config(cfg_for("node1"))
    assert "master-worker" in text
    assert "stats socket /run/haproxy/admin.sock mode 600 level admin expose-fd listeners" in text
    assert "bind 127.0.0.1:8404" in text and "bind *:8404" not in text  # loopback only


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy binary not installed (scripts/setup.sh installs it)")
def test_haproxy_accepts_the_rendered_config(tmp_path):
    path = tmp_path / "haproxy.cfg"
    path.write_text(nodeconf.haproxy_config(cfg_for("node1")).replace("chroot /var/lib/haproxy\n", ""))
    res = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout


def test_cadvisor_environment():
    env = nodeconf.cadvisor_environment(cfg_for("node1", cadvisor={"port": 9090}))
    assert 'CADVISOR_PORT="9090"' in env
    assert "--housekeeping_interval=2s" in env


def test_mesos_agent_files():
    cfg = cfg_for(
        "node2",
        mesos={"enabled": True, "zk": "zk://10.0.0.1:2181/mesos", "attributes": {"rack": "r1", "az": "a"},
               "resources": {"cpus": 4, "ports": "[31000-32000]"}},
    )
    files = nodeconf.mesos_agent_files(cfg)
    assert files["/etc/mesos/zk"] == "zk://10.0.0.1:2181/mesos\n"
    assert files["/etc/mesos-slave/containerizers"] == "docker,mesos\n"
    assert files["/etc/mesos-slave/attributes"] == "az:a;rack:r1\n"
    assert files["/etc/mesos-slave/resources"] == "cpus:4;ports:[31000-32000]\n"
    assert files["/etc/mesos-slave/ip"] == "10.0.0.2\n"


def test_consul_gossip_key_only_when_set():
    assert "encrypt" not in nodeconf.consul_config(cfg_for("node1"))
    key = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
    assert nodeconf.consul_config(cfg_for("node1", consul={"encrypt": key}))["encrypt"] == key


def test_registry_unit_serves_the_storage_and_registers_behind_haproxy():
    cfg = cfg_for("node2", nodes={"node2": {"roles": ["worker", "registry"]}},
                  registry={"storage": "hdfs://10.0.0.9:9870,10.0.0.8:9870/reg"})
    unit = nodeconf.registry_unit(cfg)
    assert "bin/bay-registry --storage hdfs://10.0.0.9:9870,10.0.0.8:9870/reg --host 10.0.0.2 --port 5001" \
        in unit
    assert "bin/bay-registry-register --consul http://127.0.0.1:8500 --node node2 --address 10.0.0.2 " \
           "--port 5001 --listen 5000" in unit


def test_a_registry_node_keeps_its_instance_in_kv_while_the_registry_runs():
    cfg = cfg_for("node2", nodes={"node2": {"roles": ["worker", "registry"]}})
    unit = nodeconf.registry_keep_unit(cfg)
    register = next(line for line in nodeconf.registry_unit(cfg).splitlines()
                    if line.startswith("ExecStartPost=") and "bay-registry-register" in line)
    # the same registration as the start's, then it stays
    assert f"ExecStart={register.split('=', 1)[1]} --keep" in unit
    assert "EnvironmentFile=-/etc/bay/consul-registry.env" in unit and "Restart=always" in unit
    # stops with the registry, starts with it
    assert "BindsTo=bay-registry.service" in unit and "WantedBy=bay-registry.service" in unit


def test_with_tls_the_registry_nodes_haproxy_ends_it_before_a_plain_instance_on_a_unix_socket(tmp_path):
    from bay_salt.cluster import pki
    from bay_salt.node import routing
    from bay_salt.registry import register

    tls = {"cert_file": "/etc/bay/registry/tls.pem", "key_file": "/etc/bay/registry/tls-key.pem",
           "ca_file": "/etc/bay/ca.pem"}
    cfg = cfg_for("node2", nodes={"node2": {"roles": ["worker", "registry"]}}, registry={"tls": tls})
    unit = nodeconf.registry_unit(cfg)
    sock = "/var/lib/haproxy/bay-registry.sock"
    assert f"--unix-socket {sock} --unix-socket-group haproxy --tls-proxied" in unit and "--tls-cert" not in unit
    assert f"--address 10.0.0.2 --port 5001 --listen 5000 --probe {sock} --tls" in unit
    base = nodeconf.haproxy_config(cfg)
    assert f"bind 10.0.0.2:5001 ssl crt {nodeconf.REGISTRY_PEM}" in base
    # the socket by its path inside HAProxy's chroot
    assert "chroot /var/lib/haproxy" in base and "server registry /bay-registry.sock check" in base
    # not on a node without the role, nor without TLS
    assert "bay-registry-tls" not in nodeconf.haproxy_config(cfg_for("node3", registry={"tls": tls}))
    assert "bay-registry-tls" not in nodeconf.haproxy_config(
        cfg_for("node2", nodes={"node2": {"roles": ["worker", "registry"]}}))
    # every node's HAProxy checks each instance over TLS (its frontend accepts while the instance is down)
    services = routing.render([register.route(5000, tls=True)], {})
    assert "option httpchk GET /v2/" in services and "check check-ssl verify none" in services
    assert "check-ssl" not in routing.render([register.route(5000)], {})
    if shutil.which("haproxy"):
        authority = pki.ca("test CA")
        leaf = pki.leaf(authority, "registry", ["localhost"], ["127.0.0.1"])
        (tmp_path / "reg.pem").write_text(leaf.cert_pem + leaf.key_pem)
        (tmp_path / "haproxy.cfg").write_text(base.replace("chroot /var/lib/haproxy\n", "").replace(
            nodeconf.REGISTRY_PEM, str(tmp_path / "reg.pem")))
        (tmp_path / "services.cfg").write_text(services)
        res = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg"), "-f",
                              str(tmp_path / "services.cfg")], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr + res.stdout


@pytest.mark.parametrize("bad, says", [
    ({"storage": "/var/lib/x"}, "expected file:///PATH or hdfs://"),
    ({"storage": "s3://bucket/x"}, "expected file:///PATH or hdfs://"),
    ({"storage": "hdfs://nn:9870/x y"}, "expected file:///PATH or hdfs://"),
    ({"instance_port": 5000}, "instance_port: must differ"),
])
def test_registry_settings_are_checked(bad, says):
    with pytest.raises(settings.SettingsError, match="bay:registry") as err:
        cfg_for("node1", registry=bad)
    assert says in str(err.value)


def test_local_cluster_pillar_runs_two_registries_over_hdfs_pulled_through_haproxy():
    from bay_salt.cluster.build import cluster_pillar

    p = cluster_pillar("c", {"node1": "10.0.0.1", "node2": "10.0.0.2", "node3": "10.0.0.3"}, "k",
                       registry_storage="hdfs://10.0.0.254:9870/bay-registry")["bay"]
    assert [n for n, v in p["nodes"].items() if "registry" in v["roles"]] == ["node1", "node2"]
    assert p["docker"]["registry"] == "127.0.0.1:5000" and p["registry"]["storage"].startswith("hdfs://")


def test_registry_storage_dir_only_for_file_storage():
    assert nodeconf.registry_storage_dir(cfg_for("node1")) == "/var/lib/bay-registry"
    hdfs = cfg_for("node1", registry={"storage": "hdfs://10.0.0.9:9870/reg"})
    assert nodeconf.registry_storage_dir(hdfs) == ""


def test_registry_over_hdfs_caches_blobs_on_the_instances_disk():
    hdfs = cfg_for("node1", registry={"storage": "hdfs://10.0.0.9:9870/reg", "cache_size": "512Mi"})
    assert f"--cache-dir /var/cache/bay-registry --cache-size {512 << 20}" in nodeconf.registry_unit(hdfs)
    off = cfg_for("node1", registry={"storage": "hdfs://10.0.0.9:9870/reg", "cache_size": 0})
    assert "--cache-dir" not in nodeconf.registry_unit(off)
    # a file:// registry reads its own disk already
    assert "--cache-dir" not in nodeconf.registry_unit(cfg_for("node1"))


@pytest.mark.parametrize("bad, says", [
    ({"cache_size": "lots"}, "is not a memory size"),
    ({"cache_dir": "relative/dir"}, "expected an absolute path"),
    ({"cache_dir": "/var/../etc"}, "expected an absolute path"),
])
def test_registry_cache_settings_are_checked(bad, says):
    with pytest.raises(settings.SettingsError, match="bay:registry") as err:
        cfg_for("node1", registry=bad)
    assert says in str(err.value)


def test_nothing_listens_beyond_the_node_unless_it_must():
    """Consul's HTTP API on loopback (servers also on their address, for the
    master, ACL-protected), cAdvisor on loopback, ACLs on by default."""
    server, client = nodeconf.consul_config(cfg_for("node1")), nodeconf.consul_config(cfg_for("node3"))
    assert client["client_addr"] == "127.0.0.1" and server["client_addr"] == "127.0.0.1 10.0.0.1"
    assert server["addresses"] == {"dns": "127.0.0.1"} and client["addresses"] == {"dns": "127.0.0.1"}
    assert server["acl"]["default_policy"] == "deny" and server["acl"]["tokens"]["master"] == TOKENS["management"]
    assert "master" not in client["acl"]["tokens"] and client["acl"]["tokens"]["agent"] == TOKENS["agent"]
    assert "--listen_ip=127.0.0.1" in nodeconf.cadvisor_unit_override(cfg_for("node1"))
    tls = cfg_for("node1", consul={"tls": {"ca_file": "/c", "cert_file": "/s", "key_file": "/k"}})
    conf = nodeconf.consul_config(tls)
    assert conf["verify_incoming_rpc"] and conf["verify_outgoing"] and conf["verify_server_hostname"]
    # with TLS the token never crosses the network in clear: HTTP on loopback, HTTPS on the address
    assert conf["client_addr"] == "127.0.0.1" and "verify_incoming" not in conf
    assert conf["ports"]["https"] == 8501 and conf["addresses"] == {"dns": "127.0.0.1", "https": "10.0.0.1"}
    on_client = nodeconf.consul_config(cfg_for("node3", consul={"tls": {"ca_file": "/c", "cert_file": "/s",
                                                                       "key_file": "/k"}}))
    assert "https" not in on_client["ports"] and on_client["client_addr"] == "127.0.0.1"
    env = nodeconf.consul_token_env(cfg_for("node1"), "reader")
    assert env.endswith(f"CONSUL_HTTP_TOKEN={TOKENS['reader']}\n")


def test_nodes_log_in_to_the_registry_and_trust_its_ca():
    cfg = cfg_for("node1", docker={"registry": "127.0.0.1:5000"},
                  registry={"tls": {"ca_file": "/etc/bay/ca.pem", "cert_file": "/c", "key_file": "/k"}})
    assert "insecure-registries" not in nodeconf.docker_daemon_config(cfg)
    login = nodeconf.docker_client_config(cfg)["auths"]["127.0.0.1:5000"]["auth"]
    assert __import__("base64").b64decode(login).decode() == "node:pull-only"
    policy = nodeconf.registry_auth_file(cfg_for("node1", admins=["ops"], services={
        "demo": {"image": "127.0.0.1:5000/bay/demo:1", "owners": ["alice"], "groups": {}}},
        docker={"registry": "127.0.0.1:5000"}))
    assert {"repository": "bay/demo", "actions": ["pull", "push", "delete"]} in policy["grants"]["alice"]
    assert policy["grants"]["ops"] == [{"repository": "*", "actions": ["*"]}] and policy["mode"] == "token"


def test_minion_config_notices_a_dead_master_connection_in_seconds(capsys):
    import yaml

    from bay_salt.node import minion

    minion.main(["node7", "10.0.0.1"])
    conf = yaml.safe_load(capsys.readouterr().out)
    assert conf["id"] == "node7" and conf["master"] == "10.0.0.1"
    assert conf["tcp_keepalive"] and conf["tcp_keepalive_idle"] + conf["tcp_keepalive_cnt"] * conf["tcp_keepalive_intvl"] < 60


def test_minion_config_names_every_master_of_a_multi_master_site(capsys):
    import yaml

    from bay_salt.cluster.build import master_config, minion_config
    from bay_salt.node import minion

    minion.main(["node7", "10.0.0.1, 10.0.0.2"])
    assert yaml.safe_load(capsys.readouterr().out)["master"] == ["10.0.0.1", "10.0.0.2"]
    assert minion_config("c", "node1", masters=2)["master"] == ["bay-c-master", "bay-c-master2"]
    assert minion_config("c", "node1")["master"] == "bay-c-master"
    two = master_config("c", 2)
    assert two["id"] == "master2" and two["bay_advertise"] == "bay-c-master2"
    assert {k: v for k, v in two.items() if k not in ("id", "bay_advertise")} == \
        {k: v for k, v in master_config("c").items() if k not in ("id", "bay_advertise")}


def test_a_node_with_its_own_agent_token_uses_it_and_needs_no_shared_one():
    own = "0b6f7c1e-2d3a-4e5f-8a9b-0c1d2e3f4a5b"
    tokens = {r: t for r, t in TOKENS.items() if r in ("agent", "reader")}
    cfg = settings.load(settings.formula_defaults(CHECKOUT), {
        "nodes": {"node1": {"address": "10.0.0.1"}, "node4": {"address": "10.0.0.4"}},
        "consul": {"servers": ["node1"], "acl": {"tokens": {"reader": tokens["reader"]}, "node_tokens": {"node4": own}}},
        "registry": {"auth": REGISTRY_AUTH}}, "node4")
    assert nodeconf.consul_config(cfg)["acl"]["tokens"] == {"agent": own}
    assert settings.redacted(cfg)["consul"]["acl"]["node_tokens"] == {"node4": settings.REDACTED}
    # without its own, a client needs the shared one (named, the value never shown)
    with pytest.raises(settings.SettingsError, match="tokens:agent: missing on node4"):
        settings.load(settings.formula_defaults(CHECKOUT), {
            "nodes": {"node1": {"address": "10.0.0.1"}, "node4": {"address": "10.0.0.4"}},
            "consul": {"servers": ["node1"], "acl": {"tokens": {"reader": tokens["reader"]}}},
            "registry": {"auth": REGISTRY_AUTH}}, "node4")
    with pytest.raises(settings.SettingsError, match="node_tokens: 'node9' is not a node"):
        cfg_for("node1", consul={"acl": {"node_tokens": {"node9": own}}})
    with pytest.raises(settings.SettingsError, match="node_tokens: node2: not a UUID") as err:
        cfg_for("node1", consul={"acl": {"node_tokens": {"node2": "not-a-uuid-secret"}}})
    assert "not-a-uuid-secret" not in str(err.value)


def test_bay_up_gives_each_node_its_own_agent_token_and_no_others():
    """Targeted per node; the servers create them all (and hold the management
    token: a server's root is Consul's admin); a node joined later without
    its own token gets the shared one."""
    import yaml

    from bay_salt.cluster.sitefiles import Secrets, secret_pillars

    s = Secrets.new(["node1", "node2", "node3", "node4"])
    files = secret_pillars(s, ["node1"], ["node1"], ["node1"])
    top = yaml.safe_load(files["top.sls"])["base"]
    for n in ("node2", "node3"):
        assert top[n] == [{"match": "list"}, f"bay-secrets-node-{n}"]
        own = yaml.safe_load(files[f"bay-secrets-node-{n}.sls"])["bay"]["consul"]["acl"]
        assert own == {"node_tokens": {n: s.node_tokens[n]}}
    assert "bay-secrets-node-node1" in top["node1"] and "bay-secrets-monitoring" in top["node1"]
    assert top["* and not L@node1,node2,node3,node4"] == [{"match": "compound"}, "bay-secrets-agent"]
    shared = yaml.safe_load(files["bay-secrets-node.sls"])["bay"]["consul"]["acl"]["tokens"]
    assert set(shared) == {"reader"}
    server = yaml.safe_load(files["bay-secrets-server.sls"])["bay"]["consul"]["acl"]
    assert server["node_tokens"] == s.node_tokens


def test_the_registry_frontend_opens_and_closes_by_name():
    from bay_salt.node import registry_frontend

    sent = []

    class API:
        def execute(self, command):
            sent.append(command)
            return "Frontend is already enabled.\n" if command.startswith("enable") else ""

    assert registry_frontend.switch(API(), True) == "Frontend is already enabled."
    assert registry_frontend.switch(API(), False) == ""
    assert sent == ["enable frontend bay-registry-tls", "disable frontend bay-registry-tls"]
    cfg = cfg_for("node2", nodes={"node2": {"roles": ["worker", "registry"]}},
                  registry={"tls": {"cert_file": "/c", "key_file": "/k", "ca_file": "/ca"}})
    unit = nodeconf.registry_unit(cfg)
    assert "ExecStop=-/opt/bay/venv/bin/bay-registry-frontend close --socket /run/haproxy/admin.sock" in unit
    assert "frontend bay-registry-tls" in nodeconf.haproxy_config(cfg)
