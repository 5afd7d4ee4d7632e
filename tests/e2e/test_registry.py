"""Bay's registry in a real `bay up` cluster: two stateless instances (node1,
node2) over a real HDFS (MiniDFSCluster on this machine), registered in KV and
served by every node's HAProxy on :5000; the nodes pulled the demo images from
it; with one instance stopped, pushes and pulls go on through the other."""

import base64
import json
import ssl
import subprocess
import urllib.error
import urllib.request

import yaml

from bay_salt.model import names
from tests.e2e.helpers import eventually, kv_delete, kv_get


def v2(cluster, address, port=5000):
    """The base endpoint over TLS (the cluster's CA), with the admin's credentials; its status."""
    user, password, certs = cluster.site.registry_login()
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    base = f"https://{address}:{port}"
    try:
        urllib.request.urlopen(f"{base}/v2/", timeout=3, context=ctx)
    except urllib.error.HTTPError as err:
        if err.code != 401:
            return err.code
    except OSError as err:
        return str(err)
    login = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        req = urllib.request.Request(f"{base}/token?service=bay-registry", headers={"Authorization": f"Basic {login}"})
        token = json.loads(urllib.request.urlopen(req, timeout=3, context=ctx).read())["token"]
        req = urllib.request.Request(f"{base}/v2/", headers={"Authorization": f"Bearer {token}"})
        return urllib.request.urlopen(req, timeout=3, context=ctx).status
    except OSError as err:
        return str(err)


def test_every_node_serves_the_registry_from_kv(cluster):
    for n in cluster.nodes()[:3]:
        assert v2(cluster, n.address) == 200, n.id
    for n in cluster.nodes()[3:]:  # joined after `bay up`: its Docker's address, which the certificate names
        res = cluster.client.containers.get(n.container).exec_run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", "/etc/bay/ca.pem",
             "https://127.0.0.1:5000/v2/"])
        assert res.output.decode() == "401", (n.id, res.output.decode())  # it answers, and asks who it is
    keys = kv_get(cluster, names.kv_instances_prefix(names.REGISTRY_SERVICE, names.REGISTRY_GROUP), recurse=True)
    assert sorted(k["Key"].rsplit("/", 1)[1] for k in keys) == ["node1", "node2"]


def test_an_instance_record_gone_from_kv_is_put_back_by_its_node(cluster):
    """Whatever took it out (an operator's slip, a KV restored from an old
    snapshot): its node's bay-registry-keep writes it again at once."""
    key = names.kv_instance(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, "node2")
    before = kv_get(cluster, key)[0]["Value"]
    node2 = cluster.client.containers.get(cluster.nodes()[1].container)
    assert node2.exec_run(["systemctl", "is-active", "bay-registry-keep"]).exit_code == 0
    kv_delete(cluster, key)
    back = eventually(lambda: kv_get(cluster, key), 10, "node2's record back in KV", interval=0.5)
    assert back[0]["Value"] == before


def test_storage_is_hdfs_and_the_nodes_pulled_the_demo_from_it(cluster):
    pillar = yaml.safe_load((cluster.state_dir / "pillar" / "bay.sls").read_text())["bay"]
    storage = pillar["registry"]["storage"]
    assert storage.startswith("hdfs://")
    hostport, _, root = storage[len("hdfs://"):].partition("/")
    listing = json.loads(urllib.request.urlopen(
        f"http://{hostport}/webhdfs/v1/{root}/blobs/sha256?op=LISTSTATUS&user.name=root", timeout=5).read())
    assert len(listing["FileStatuses"]["FileStatus"]) >= 3  # the demo's layers, configs and manifests
    st = cluster.runner("bay.status", "demo")
    running = {line.split("@")[1].split(":")[0] for g in st.values() for line in g["instances"]}
    assert running
    for n in (n for n in cluster.nodes() if n.id in running):  # every node that runs the demo pulled it
        out = cluster.client.containers.get(n.container).exec_run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"]).output.decode().split()
        assert any(ref.startswith("127.0.0.1:5000/bay/demo:") for ref in out), (n.id, out)


def test_push_and_pull_go_on_with_one_instance_stopped(cluster):
    node1 = cluster.client.containers.get(cluster.nodes()[0].container)
    node3 = cluster.nodes()[2]
    assert node1.exec_run(["systemctl", "stop", "bay-registry"]).exit_code == 0
    try:
        ref = f"{node3.address}:5000/e2e/busybox:1"
        user, password, certs = cluster.site.registry_login()
        push = subprocess.run(["skopeo", "copy", "--quiet", "--dest-creds", f"{user}:{password}", "--dest-cert-dir",
                               str(certs), "docker-daemon:bay-busybox:latest", f"docker://{ref}"], capture_output=True,
                              text=True, timeout=120)
        assert push.returncode == 0, push.stderr
        pull = cluster.client.containers.get(cluster.nodes()[1].container).exec_run(
            ["docker", "pull", "127.0.0.1:5000/e2e/busybox:1"])
        assert pull.exit_code == 0, pull.output.decode()[-500:]
    finally:
        node1.exec_run(["systemctl", "start", "bay-registry"])
    # back, and registered again by its unit; its keeper stopped with it and is back with it
    eventually(lambda: v2(cluster, cluster.nodes()[0].address, 5001) == 200, 60, "node1's registry instance back",
               interval=1)
    eventually(lambda: node1.exec_run(["systemctl", "is-active", "bay-registry-keep"]).exit_code == 0, 30,
               "node1's bay-registry-keep back with the registry")
