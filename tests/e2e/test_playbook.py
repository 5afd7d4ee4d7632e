"""The Ansible bootstrap: a plain Debian server joins the `bay up` cluster.

The playbook runs for real (apt, pip, keys, systemd) inside a plain base-image
container through playbooks/connection_plugins/bay_docker.py (docker exec), as
it would over ssh on a real server. The packages node1 downloaded are put into
the new server's apt cache first, as a site's apt proxy would serve them: apt
still resolves, verifies and installs each one; only the download is saved.

Disruptive, next to last: the new node4 stays in the cluster (a fourth node for
every test after it: more nodes to restart, route and wait for), so nothing but
`bay down` runs after it."""

import json
import os
import shutil
import subprocess

import pytest
import yaml

from bay_salt.cluster import images, sitefiles
from bay_salt.cluster.build import Builder
from bay_salt.model import names
from tests.helpers import CHECKOUT


def plain_server(cluster, minion_id: str):
    """A plain Debian server on the cluster network: the base image (systemd,
    python3; no Salt), as a new server is before bootstrap. Removed by ``down``
    like the rest; its certificates come from the site (sitefiles.add_node, the
    playbook's bay_site)."""
    net = cluster.client.networks.get(names.network_name(cluster.name))
    index = len(cluster.nodes()) + 1
    vol = cluster.client.volumes.create(f"{names.node_container(cluster.name, index)}-docker", labels=cluster.labels)
    binds = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
             vol.name: {"bind": "/var/lib/docker", "mode": "rw"}}
    c = Builder(cluster).container(images.base_image_tag(), names.node_container(cluster.name, index), "node",
                                   minion_id, binds, net, devices=["/dev/kmsg:/dev/kmsg:r"])
    c.start()
    c.reload()
    return c


@pytest.mark.disruptive(order=98)
def test_bootstrap_playbook_joins_a_plain_server(cluster, tmp_path):
    server = plain_server(cluster, "node4")
    address = server.attrs["NetworkSettings"]["Networks"][names.network_name(cluster.name)]["IPAddress"]
    # the site grows by one server as a real one does: `bay site add-node` over the cluster's state
    # directory (its pillar and CA) gives it its certificates and its own Consul token, which the
    # servers create; the playbook copies its files (bay_site)
    sitefiles.add_node(cluster.state_dir, sitefiles.parse_host(f"node4={address}"))
    server1 = cluster.nodes()[0].id  # a Consul server: it creates the token (Raft gives it to the others)
    cluster.salt(server1, "saltutil.refresh_pillar", "wait=True", timeout=60)
    applied = cluster.salt(server1, "state.sls_id", "bay-consul-acl", "bay.consul", timeout=300)
    assert all(isinstance(r, dict) and all(v.get("result") for v in r.values()) for r in applied.values()), applied
    packages, _ = cluster.client.containers.get(cluster.nodes()[0].container).get_archive("/var/cache/apt/archives")
    server.put_archive("/var/cache/apt", b"".join(packages))
    wheels = tmp_path / "wheelhouse"
    shutil.copytree(images.ensure_wheelhouse(cluster.progress), wheels, ignore=shutil.ignore_patterns(".complete"))
    shutil.copy(images.build_bay_wheel(cluster.progress), wheels)
    # each copied as one archive (Ansible's copy of a directory is a round trip per file)
    wheels_tar = shutil.make_archive(str(tmp_path / "wheelhouse"), "tar", wheels)
    statsd_tar = shutil.make_archive(str(tmp_path / "statsd"), "tar", images.ensure_statsd(cluster.progress))
    inventory = {"all": {"children": {
        "bay_new": {"hosts": {"node4": {"ansible_connection": "bay_docker", "ansible_host": server.name}}},
        "bay_master": {"hosts": {m.labels["io.bay.minion"]: {"ansible_connection": "bay_docker", "ansible_host": m.name}
                                 for m in cluster.masters()}},
    }}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    res = subprocess.run(
        [str(CHECKOUT / ".venv/bin/ansible-playbook"), "-i", str(tmp_path / "inventory.yml"), "bootstrap.yml",
         "-e", f"bay_wheelhouse={wheels_tar}", "-e", f"bay_statsd={statsd_tar}", "-e", f"bay_site={cluster.state_dir}"],
        cwd=CHECKOUT / "playbooks", capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PATH=f"{CHECKOUT / '.venv/bin'}:{os.environ['PATH']}"),
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]

    for master in cluster.masters():  # accepted on every master, and connected to each
        keys = yaml.safe_load(master.exec_run(["salt-key", "-L", "--out=yaml"]).output)
        assert "node4" in keys["minions"] and keys["minions_pre"] == [], master.name
        ping = master.exec_run(["salt", "node4", "test.ping", "--out=json", "--static", "-t", "10"]).output
        assert json.loads(ping) == {"node4": True}, (master.name, ping)
    out = server.exec_run(["consul", "members"], environment={"CONSUL_HTTP_TOKEN": cluster.site.consul_token()}).output.decode()
    alive = sorted(line.split()[0] for line in out.splitlines()[1:] if " alive " in line)
    assert alive == ["node1", "node2", "node3", "node4"], out
    # with its own agent token (it may write node4 only), not the shared one
    conf = json.loads(server.exec_run(["cat", "/etc/consul.d/bay.json"]).output)
    mine = yaml.safe_load((cluster.state_dir / "pillar" / "bay-secrets-node-node4.sls").read_text())
    assert conf["acl"]["tokens"]["agent"] == mine["bay"]["consul"]["acl"]["node_tokens"]["node4"]
    for svc in ("salt-minion", "docker", "consul", "haproxy", "cadvisor", "bay-metrics", "bay-statsd"):
        assert server.exec_run(["systemctl", "is-active", svc]).exit_code == 0, svc
