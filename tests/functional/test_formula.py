"""The bay formula and execution module through a real master and minion."""

import json

from tests.functional.conftest import VALID_PILLAR
from tests.helpers import REGISTRY_AUTH, TOKENS


def test_settings_module_validates_and_views_this_node(pillar, salt_call):
    pillar(VALID_PILLAR)
    ret = salt_call.run("bay.settings")
    assert ret.returncode == 0, ret
    assert ret.data["node"] == {"id": "bay-func-minion", "address": "10.9.0.1", "roles": ["worker"], "consul_server": True}
    assert ret.data["docker"]["log_max_file"] == 3  # from salt://bay/defaults.yaml


def test_highstate_renders_every_part(pillar, salt_call):
    pillar(VALID_PILLAR)
    ret = salt_call.run("state.show_sls", "bay")
    assert ret.returncode == 0, ret
    ids = set(ret.data)
    for sid in ("bay-python-packages", "bay-docker-daemon-config", "bay-docker-service", "bay-consul-bullseye-source",
                "bay-consul-config", "bay-consul-service", "bay-haproxy-config", "bay-haproxy-service",
                "bay-cadvisor-service"):
        assert sid in ids, sid
    assert not any(s.startswith("bay-mesos") for s in ids), "mesos is off by default"
    daemon = next(a for a in ret.data["bay-docker-daemon-config"]["file"] if isinstance(a, dict) and "dataset" in a)
    assert daemon["dataset"]["log-opts"] == {"max-size": "10m", "max-file": "3"}
    consul = next(a for a in ret.data["bay-consul-config"]["file"] if isinstance(a, dict) and "dataset" in a)
    assert consul["dataset"]["server"] is True and consul["dataset"]["bootstrap_expect"] == 2
    src = next(a for a in ret.data["bay-consul-bullseye-source"]["file"] if isinstance(a, dict) and "contents" in a)
    assert "Suites: bullseye" in src["contents"]


def test_hashicorp_source_is_the_production_default(pillar, salt_call):
    pillar(VALID_PILLAR.replace("source: debian-bullseye", "source: hashicorp"))
    ret = salt_call.run("state.show_sls", "bay.consul")
    assert ret.returncode == 0, ret
    repo = ret.data["bay-consul-repo"]["pkgrepo"]
    name = next(a["name"] for a in repo if isinstance(a, dict) and "name" in a)
    assert "apt.releases.hashicorp.com" in name and "signed-by=" in name


def test_mesos_agent_configuration_renders_when_enabled(pillar, salt_call):
    """Mesos packages exist in no repository reachable here: only the rendered
    configuration is checked, never an installed agent."""
    pillar(VALID_PILLAR + """
  mesos:
    enabled: true
    repo: deb http://mesos.example/debian bookworm main
    zk: zk://10.9.0.1:2181/mesos
    attributes: {rack: r1}
    resources: {cpus: 2}
""")
    ret = salt_call.run("state.show_sls", "bay.mesos")
    assert ret.returncode == 0, ret
    contents = {}
    for sid, body in ret.data.items():
        if sid.startswith("bay-mesos-agent-config"):
            args = {k: v for a in body["file"] if isinstance(a, dict) for k, v in a.items()}
            contents[args["name"]] = args["contents"]
    assert contents["/etc/mesos/zk"] == "zk://10.9.0.1:2181/mesos\n"
    assert contents["/etc/mesos-slave/containerizers"] == "docker,mesos\n"
    assert contents["/etc/mesos-slave/attributes"] == "rack:r1\n"
    assert contents["/etc/mesos-slave/ip"] == "10.9.0.1\n"
    assert "bay-mesos-agent-service" in ret.data and "bay-mesos-repo" in ret.data


def test_invalid_pillar_fails_before_any_state_runs(pillar, salt_call):
    pillar(VALID_PILLAR.replace("servers: [bay-func-minion, other]", "servers: [bay-func-minion, node9]"))
    ret = salt_call.run("state.sls", "bay", "test=True")
    assert ret.returncode != 0
    text = json.dumps(ret.data)
    assert "bay:consul:servers" in text and "'node9' is not a node in bay:nodes" in text
    # a render failure: Salt returns the error list, not a single state result
    assert isinstance(ret.data, list), ret.data


def test_closed_by_default_needs_the_tokens_and_the_registry_secret(pillar, salt_call):
    """Consul ACLs and registry auth are on by default: a pillar without the
    node's tokens, or a registry node without the registry's secret, fails
    before any state runs and names the missing key."""
    pillar(VALID_PILLAR.replace(f"        agent: {TOKENS['agent']}\n", ""))
    ret = salt_call.run("state.sls", "bay", "test=True")
    assert ret.returncode != 0
    assert "bay:consul:acl:tokens:agent: missing on bay-func-minion" in json.dumps(ret.data)
    pillar(VALID_PILLAR.replace("roles: [worker]", "roles: [worker, registry]")
           .replace(f"      secret: {REGISTRY_AUTH['secret']}\n", ""))
    ret = salt_call.run("bay.settings")
    assert ret.returncode != 0
    assert "bay:registry:auth:secret: missing on bay-func-minion" in ret.stderr + json.dumps(ret.data)


def test_unknown_role_is_named(pillar, salt_call):
    pillar(VALID_PILLAR.replace("roles: [worker]", "roles: [worker, dbserver]"))
    ret = salt_call.run("bay.settings")
    assert ret.returncode != 0
    assert "bay:nodes:bay-func-minion:roles: unknown role 'dbserver'" in ret.stderr + json.dumps(ret.data)


def test_capacity_grain(salt_call):
    ret = salt_call.run("grains.get", "bay_capacity")
    assert ret.returncode == 0, ret
    assert ret.data["cpus"] > 0 and ret.data["memory_mb"] > 0


def test_registry_renders_for_the_registry_role(pillar, salt_call):
    """bay.registry on a registry node: the unit, its service, the keeper
    of its KV record, and a storage directory only for file:// storage (none for HDFS)."""
    pillar(VALID_PILLAR.replace("roles: [worker]", "roles: [worker, registry]"))
    ret = salt_call.run("state.show_sls", "bay.registry")
    assert ret.returncode == 0, ret
    assert {"bay-registry-unit", "bay-registry-service", "bay-registry-storage", "bay-registry-keep",
            "bay-registry-keep-unit"} <= set(ret.data)
    unit = next(a["contents"] for a in ret.data["bay-registry-unit"]["file"] if isinstance(a, dict) and "contents" in a)
    assert "--storage file:///var/lib/bay-registry" in unit
    pillar(VALID_PILLAR.replace("roles: [worker]", "roles: [worker, registry]")
           .replace("storage: file:///var/lib/bay-registry", "storage: hdfs://10.9.0.5:9870/bay-registry"))
    ret = salt_call.run("state.show_sls", "bay.registry")
    assert ret.returncode == 0, ret
    assert "bay-registry-storage" not in ret.data and "bay-registry-service" in ret.data


def test_each_part_stands_alone(pillar, salt_call):
    """`state.apply bay.cadvisor` (or any part) brings what it requires."""
    pillar(VALID_PILLAR)
    for sls, needs in (("bay.cadvisor", {"bay-docker-service", "bay-python-packages"}),
                       ("bay.haproxy", {"bay-consul-service", "bay-python-packages"}),
                       ("bay.registry", set())):
        ret = salt_call.run("state.show_sls", sls)
        assert ret.returncode == 0, (sls, ret)
        assert needs <= set(ret.data), (sls, sorted(ret.data))


def test_monitoring_node_renders_graphite_and_metrics(pillar, salt_call, tmp_path):
    """bay.monitoring and bay.metrics on a node with role monitoring: Graphite's
    venv, daemons, files and dashboards; the agent and statsd; HAProxy's PEM."""
    from bay_salt.cluster import pki

    authority = pki.ca("func CA")
    leaf = pki.leaf(authority, "bay-func-minion", ["bay-func-minion"], ["10.9.0.1"])
    for name, text in (("ca.pem", authority.cert_pem), ("node.pem", leaf.cert_pem), ("node-key.pem", leaf.key_pem)):
        (tmp_path / name).write_text(text)
    pillar(VALID_PILLAR.replace("roles: [worker]", "roles: [worker, monitoring]") + f"""
  monitoring:
    tls:
      cert_file: {tmp_path / "node.pem"}
      key_file: {tmp_path / "node-key.pem"}
      ca_file: {tmp_path / "ca.pem"}
""")
    ret = salt_call.run("state.show_sls", "bay.monitoring")
    assert ret.returncode == 0, ret
    assert {"bay-graphite-install", "bay-carbon-service", "bay-graphite-web-service", "bay-monitoring-dashboards",
            "bay-haproxy-monitoring-pem", "bay-monitoring-file-/var/lib/bay/graphite/conf/carbon.conf"} <= set(ret.data)
    ret = salt_call.run("state.show_sls", "bay.metrics")
    assert ret.returncode == 0, ret
    assert {"bay-metrics-service", "bay-statsd-service", "bay-statsd-package",
            "bay-metrics-file-/etc/bay/metrics.json"} <= set(ret.data)
    npm = next(a["name"] for a in ret.data["bay-statsd-package"]["cmd"] if isinstance(a, dict) and "name" in a)
    assert npm.endswith("statsd@0.9.0") and "--prefix /opt/bay/statsd" in npm


def test_a_site_made_by_bay_site_init_renders_for_its_nodes(salt_master, salt_call, tmp_path):
    """`bay site init`'s pillar (top file, topology, every secret file) is what
    the formula takes: a worker of the site renders `bay` with its own agent
    token, and no registry secret reaches it."""
    from bay_salt.cluster import sitefiles

    site = tmp_path / "site"
    sitefiles.init(site, sitefiles.Inventory.parse("func", ["m1=10.9.0.200"], [
        "n1=10.9.0.11", "n2=10.9.0.12", "n3=10.9.0.13", "bay-func-minion=10.9.0.1"]))
    files = [salt_master.pillar_tree.base.temp_file(p.name, p.read_text()) for p in (site / "pillar").iterdir()]
    for f in files:
        f.__enter__()
    try:
        assert salt_call.run("saltutil.refresh_pillar", wait=True).returncode == 0
        ret = salt_call.run("bay.settings")
        assert ret.returncode == 0, ret
        assert ret.data["node"] == {"id": "bay-func-minion", "address": "10.9.0.1", "roles": ["worker"],
                                    "consul_server": False}
        ret = salt_call.run("state.show_sls", "bay")
        assert ret.returncode == 0, ret
        assert {"bay-consul-config", "bay-haproxy-config", "bay-docker-daemon-config"} <= set(ret.data)
        mine = salt_call.run("pillar.get", "bay")
        assert list(mine.data["consul"]["acl"]["node_tokens"]) == ["bay-func-minion"]
        assert "secret" not in mine.data.get("registry", {}).get("auth", {})
    finally:
        for f in reversed(files):
            f.__exit__(None, None, None)
