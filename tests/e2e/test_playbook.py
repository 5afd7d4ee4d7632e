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

from bay_salt.cluster import images
from tests.helpers import CHECKOUT


@pytest.mark.disruptive(order=98)
def test_bootstrap_playbook_joins_a_plain_server(cluster, tmp_path):
    server = cluster.plain_server("node4")
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
         "-e", f"bay_wheelhouse={wheels_tar}", "-e", f"bay_statsd={statsd_tar}"],
        cwd=CHECKOUT / "playbooks", capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PATH=f"{CHECKOUT / '.venv/bin'}:{os.environ['PATH']}"),
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]

    for master in cluster.masters():  # accepted on every master, and connected to each
        keys = yaml.safe_load(master.exec_run(["salt-key", "-L", "--out=yaml"]).output)
        assert "node4" in keys["minions"] and keys["minions_pre"] == [], master.name
        ping = master.exec_run(["salt", "node4", "test.ping", "--out=json", "--static", "-t", "10"]).output
        assert json.loads(ping) == {"node4": True}, (master.name, ping)
    out = server.exec_run(["consul", "members"], environment={"CONSUL_HTTP_TOKEN": cluster.consul_token()}).output.decode()
    alive = sorted(line.split()[0] for line in out.splitlines()[1:] if " alive " in line)
    assert alive == ["node1", "node2", "node3", "node4"], out
    for svc in ("salt-minion", "docker", "consul", "haproxy", "cadvisor", "bay-metrics", "bay-statsd"):
        assert server.exec_run(["systemctl", "is-active", svc]).exit_code == 0, svc
