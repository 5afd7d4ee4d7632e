"""Closed by default, tried from outside: a container on the cluster's network
that is not a node (no Salt key, no Consul token, no registry credentials)
tries every node's endpoints. Every write is refused, no read leaks routes,
instances or images; what should work for such a client (the services'
frontends) still does, and so do the nodes themselves."""

import json
import subprocess
import time

import pytest
import yaml

from bay_salt.cluster import images
from bay_salt.host.sources import network_gateway
from bay_salt.model import names
from tests.e2e.helpers import WEB, container_reach, demo_image_service, eventually, kv_get, reconcile_passes, restoring

ATTACKER = "bay-e2e-attacker"


@pytest.fixture(scope="module")
def attacker(cluster):
    """A container on the cluster's network that is not a node: the node
    image (curl, python3, Salt) without a node's keys or tokens."""
    name = f"{ATTACKER}-{cluster.name}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    image = images.ensure_node_image(cluster.client, cluster.progress)
    c = cluster.client.containers.run(image, ["sleep", "infinity"], name=name, detach=True, entrypoint=[],
                                      network=names.network_name(cluster.name),
                                      labels={names.LABEL_CLUSTER: cluster.name})
    yield c
    c.remove(force=True)


def curl(attacker, *args) -> tuple[int, str]:
    """(HTTP status or 0 when nothing answered, body) of a curl from the attacker."""
    res = attacker.exec_run(["curl", "-sk", "-m", "5", "-o", "/tmp/body", "-w", "%{http_code}", *args])
    body = attacker.exec_run(["cat", "/tmp/body"]).output.decode(errors="replace")
    attacker.exec_run(["rm", "-f", "/tmp/body"])
    code = res.output.decode().strip()
    return (int(code) if code.isdigit() else 0), body


def test_consul_refuses_anonymous_reads_and_writes(cluster, attacker):
    for n in cluster.nodes()[:3]:
        # a server's API is HTTPS on its address (the token never in clear); HTTP is on loopback only
        assert curl(attacker, f"http://{n.address}:8500/v1/status/leader")[0] == 0, n.id
        base = f"https://{n.address}:8501"
        st, body = curl(attacker, f"{base}/v1/kv/bay/?recurse")
        assert st in (403, 404) or body.strip() in ("", "[]"), (n.id, st, body[:200])
        assert "bay/instances" not in body and "bay/routes" not in body
        assert curl(attacker, "-X", "PUT", "-d", '{"listen":1}', f"{base}/v1/kv/bay/routes/evil/web")[0] == 403
        reg = json.dumps({"Node": "evil", "Address": "10.6.6.6", "Service": {"Service": "bay-registry"}})
        assert curl(attacker, "-X", "PUT", "-d", reg, f"{base}/v1/catalog/register")[0] == 403
        st, body = curl(attacker, "-X", "PUT", f"{base}/v1/acl/bootstrap")
        assert st != 200 and "SecretID" not in body, (st, body[:200])
        st, body = curl(attacker, f"{base}/v1/acl/tokens")
        assert st == 403 and "SecretID" not in body
    # nothing was written
    assert kv_get(cluster, "bay/routes/evil/web") == []


def test_the_registry_refuses_anonymous_and_wrong_credentials(cluster, attacker):
    for n in cluster.nodes()[:3]:
        for port in (5000, 5001) if n.id in ("node1", "node2") else (5000,):
            base = f"https://{n.address}:{port}"
            assert curl(attacker, f"{base}/v2/_catalog")[0] == 401
            assert curl(attacker, f"{base}/v2/bay/demo/tags/list")[0] == 401
            assert curl(attacker, "-X", "POST", f"{base}/v2/bay/demo/blobs/uploads/")[0] == 401
            assert curl(attacker, "-X", "DELETE", f"{base}/v2/bay/demo/manifests/1")[0] == 401
            assert curl(attacker, "-u", "bay-admin:guess", f"{base}/token?scope=repository:bay/demo:push")[0] == 401
            st, body = curl(attacker, f"{base}/token?scope=repository:bay/demo:pull,push")  # anonymous: nothing
            token = json.loads(body)["token"]
            assert curl(attacker, "-H", f"Authorization: Bearer {token}", f"{base}/v2/bay/demo/tags/list")[0] == 401
            forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
            assert curl(attacker, "-H", f"Authorization: Bearer {forged}", f"{base}/v2/bay/demo/tags/list")[0] == 401


def test_node_endpoints_are_not_public(cluster, attacker):
    for n in cluster.nodes()[:3]:
        for port in (8080, 8404):  # cAdvisor, HAProxy stats: loopback only
            assert curl(attacker, f"http://{n.address}:{port}/")[0] == 0, (n.id, port)
    for n in cluster.nodes()[3:]:  # Consul clients (the playbook's joined server): their HTTP API is loopback only
        assert curl(attacker, f"http://{n.address}:8500/v1/status/leader")[0] == 0, n.id
        assert curl(attacker, f"https://{n.address}:8501/v1/status/leader")[0] == 0, n.id


def test_the_registrys_hdfs_answers_the_registry_nodes_only(cluster, attacker):
    """WebHDFS believes any user name: the host firewall lets only the
    registry nodes reach the cluster's HDFS."""
    details = json.loads((cluster.state_dir / "hdfs" / "details.json").read_text())
    gateway = network_gateway(cluster.client.networks.get(names.network_name(cluster.name)))
    url = f"http://{gateway}:{details['http_port']}/webhdfs/v1/bay-registry?op=LISTSTATUS&user.name=root"
    assert curl(attacker, url)[0] == 0
    assert curl(attacker, "-X", "PUT", f"http://{gateway}:{details['http_port']}/webhdfs/v1/evil?op=MKDIRS"
                          "&user.name=root")[0] == 0
    registry = cluster.client.containers.get(cluster.nodes()[0].container)
    res = registry.exec_run(["curl", "-sf", "-o", "/dev/null", url])
    assert res.exit_code == 0, res.output


def test_a_service_container_reaches_its_peers_and_nothing_of_the_platform(cluster):
    """The attacker is a service's own container (#24): from inside a demo
    container on node1, every TCP port listening on every node, on the
    masters and on the cluster network's gateway (the registry's HDFS, whose
    firewall lets node addresses in, and containers leave NATed to one) is
    tried. Only its node's frontends and relay and the instances registered
    in KV answer; what a service needs still works."""
    reach = container_reach(cluster)
    details = json.loads((cluster.state_dir / "hdfs" / "details.json").read_text())
    hdfs = network_gateway(cluster.client.networks.get(names.network_name(cluster.name)))
    tried = {p for a, p in reach["targets"]}
    # every daemon is tried: HDFS, Salt on both masters, Consul, bay-logs, Kafka, carbon, the registry
    assert (hdfs, details["http_port"]) in reach["targets"] and {4505, 4506, 8300, 8301, 8501, 8095, 9092, 2014,
                                                                 5000, 5001} <= tried, sorted(reach["targets"])
    extra = reach["open"] - reach["allowed"]
    assert not extra, f"{len(extra)} of {len(reach['targets'])} platform ports reachable: {sorted(extra)}"
    assert reach["open"] == reach["allowed"], sorted(reach["allowed"] - reach["open"])
    print(f"container on {reach['node']}: {len(reach['targets'])} ports tried, {len(extra)} got in "
          f"({len(reach['allowed'])} of them its peers' by design)")
    node = cluster.client.containers.get(cluster.nodes()[0].container)

    def get(host, port, path="/"):  # busybox-static's wget crashes: HTTP/1.0 by hand
        return node.exec_run(["docker", "exec", reach["container"], "sh", "-c",
                              f'printf "GET {path} HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {host} {port}']).output

    assert b"FileStatuses" not in get(hdfs, details["http_port"], "/webhdfs/v1/?op=LISTSTATUS&user.name=root")
    assert b"demo.web" in get(reach["gateway"], WEB)  # its node's frontend: its peers
    # node1's own root still reaches HDFS (it is a registry node): the sandbox is the containers' only
    assert node.exec_run(["curl", "-sf", "-o", "/dev/null", "-m", "5", f"http://{hdfs}:{details['http_port']}"
                          "/webhdfs/v1/?op=LISTSTATUS&user.name=root"]).exit_code == 0


def test_a_nodes_consul_agent_token_writes_its_own_node_only(cluster):
    """Root on node2 with its agent's token (its own, Consul's node identity)
    tries to deregister node3 (the controller would evacuate it): refused.
    (node2 is also a Consul server here, so its pillar holds the management
    token: a server's root is Consul's admin, as pillar/bay.sls says.)"""
    node = cluster.client.containers.get(cluster.nodes()[1].container)
    conf = json.loads(node.exec_run(["cat", "/etc/consul.d/bay.json"]).output)
    token = conf["acl"]["tokens"]["agent"]
    res = node.exec_run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-H",
                         f"X-Consul-Token: {token}", "-d", json.dumps({"Node": cluster.nodes()[2].id}),
                         "http://127.0.0.1:8500/v1/catalog/deregister"])
    assert res.output.decode() == "403", res.output
    catalog = node.exec_run(["curl", "-s", "-H", f"X-Consul-Token: {cluster.site.consul_token()}",
                             "--cacert", "/etc/consul.d/tls/ca.pem",
                             f"https://{cluster.nodes()[0].address}:8501/v1/catalog/nodes"]).output
    assert cluster.nodes()[2].id in [e["Node"] for e in json.loads(catalog)]
    me = cluster.nodes()[1].id
    pillar = cluster.state_dir / "pillar"

    def acl(name):
        return yaml.safe_load((pillar / name).read_text())["bay"]["consul"]["acl"]

    # its own (bay up's pillar file for it alone), not the shared agent token (which may write any node)
    assert acl(f"bay-secrets-node-{me}.sls")["node_tokens"] == {me: token}
    assert token != acl("bay-secrets-agent.sls")["tokens"]["agent"]


def test_a_forged_salt_event_from_a_non_node_goes_nowhere(cluster, attacker):
    """A Salt minion that is not a node (its key unknown to the master) can
    send nothing: its key waits, unaccepted, and the controller acts on
    nothing it claims; claiming a node's id with another key is refused."""
    def instances():
        return sorted(e["Key"] for e in kv_get(cluster, "bay/instances/demo/web/", recurse=True))

    before = instances()
    master = cluster.master()
    master.reload()
    master_ip = next(iter(master.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    forged = json.dumps({"node": cluster.nodes()[0].id, "service": "demo", "group": "web", "container": "0" * 64})
    for minion_id in ("evil", cluster.nodes()[0].id):
        res = attacker.exec_run(["timeout", "40", f"{images.VENV}/bin/salt-call", "--master", master_ip, "--id",
                                 minion_id, "-l", "quiet", "event.send",
                                 names.TAG_CONTAINER_DIED, forged])
        assert res.exit_code != 0, res.output.decode()[-300:]
    keys = json.loads(master.exec_run(["salt-key", "-L", "--out=json"]).output)
    assert "evil" in keys["minions_pre"] and "evil" not in keys["minions"]
    assert cluster.nodes()[0].id in keys["minions"]
    master.exec_run(["salt-key", "-y", "-d", "evil"])
    # two reconciliation passes later (the controller has looked at everything since): nothing changed
    passes = reconcile_passes(cluster)
    eventually(lambda: reconcile_passes(cluster) >= passes + 2, 60, "two reconciliation passes")
    assert instances() == before


#: inside a node, as root: a PUT to the node's Consul agent with the registry's token; prints the HTTP status
REGISTRY_PUT = r"""
import json, sys, urllib.request
token = dict(line.strip().split("=", 1) for line in open("/etc/bay/consul-registry.env")
             if "=" in line)["CONSUL_HTTP_TOKEN"]
method, key, body = sys.argv[1], sys.argv[2], sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(f"http://127.0.0.1:8500/v1/kv/{key}", data=body, method=method,
                             headers={"X-Consul-Token": token})
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as err:
    print(err.code)
"""


def test_root_on_a_registry_node_cannot_steer_traffic_with_the_registrys_token(cluster):
    """The attacker is root on a registry node (#24): it holds the registry's
    Consul token. Outside the registry's own prefix Consul refuses every
    write; inside it, a record that claims another service or splices a
    HAProxy Runtime API command into its address is data that fails its
    schema: no node's HAProxy routes it, and HAProxy still serves."""
    from tests.e2e.helpers import haproxy_servers

    node = cluster.nodes()[0]
    box = cluster.client.containers.get(node.container)

    def put(key, record=None, method="PUT"):
        args = [method, key] + ([json.dumps(record)] if record is not None else [])
        res = box.exec_run(["/opt/bay/venv/bin/python", "-c", REGISTRY_PUT, *args])
        return int(res.output.decode().strip().splitlines()[-1])

    evil = {"service": "demo", "group": "web", "instance": "evil", "node": node.id, "port": 10099,
            "address": "10.9.9.9 check;shutdown sessions server demo.web", "health": "passing"}
    tried, got_in = 0, []
    for key in (names.kv_instance("demo", "web", "evil"), "bay/routes/demo/web", "bay/specs/demo",
                names.kv_leader("controller"), f"bay/nodes/{cluster.nodes()[1].id}"):
        tried += 1
        if put(key, evil) != 403:
            got_in.append(key)
    assert not got_in, f"the registry's token wrote {got_in}"
    before = {n.id: haproxy_servers(cluster, n) for n in cluster.nodes()[:3]}
    inside = names.kv_instance(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, "evil")
    assert put(inside, evil) == 200  # its own prefix: Consul lets it, the readers must not believe it
    try:
        time.sleep(5)  # lb-sync's watch fires within a second of a KV change
        for n in cluster.nodes()[:3]:
            tried += 1
            now = haproxy_servers(cluster, n)
            assert "error" not in now, now  # HAProxy's Runtime API still answers: no command was spliced in
            servers = [s[0] for b in now.values() for s in b]
            if any(s.startswith("10.9.9.9") for s in servers) or now.get("demo.web") != before[n.id].get("demo.web"):
                got_in.append(n.id)
    finally:
        put(inside, method="DELETE")
    assert not got_in, f"a forged registry record reached HAProxy on {got_in}"
    print(f"root on {node.id} with the registry's token: {tried} tried, 0 got in")


def test_an_owner_reaches_only_their_own_services_through_every_runner(cluster, spec):
    """The attacker is an owner (#24): alice operates tiny and tries the
    platform's demo through every runner an owner may call, and what only
    the platform team may. Each is refused (or shows nothing of demo); her
    own service still works."""
    from bay_salt.cluster.local import BayError

    cluster.add_user("alice", "alice-pw")
    owners = list(spec["bay"]["services"][TINY]["owners"])
    spec["bay"]["services"][TINY]["owners"] = ["alice"]
    cluster.set_services(spec)
    cluster.runner("bay.deploy", TINY)
    alice = ("alice", "alice-pw")
    attempts = [("bay.deploy", "demo"), ("bay.plan", "demo"), ("bay.scale", "demo.web", "1"),
                ("bay.logs", "demo.web"), ("bay.archived_logs", "demo"),
                ("bay.silence", "service=demo", "duration=1h", "reason=x"),
                ("bay.silence", "service=*", "duration=1h", "reason=x"),
                ("bay.rollback", "demo"), ("bay.remove", "demo"), ("bay.restart", "demo.web"),
                ("bay.describe", "demo.web"), ("bay.history", "demo"),
                ("bay.drain", "node1"), ("bay.undrain", "node1"), ("bay.dashboards",),
                ("bay.node_clean", "node1", "dry_run=False"),
                ("jobs.list_jobs",), ("state.orchestrate", "bay"), ("salt.cmd", "cmd.run", "id"),
                ("bay.archived_logs", TINY, "grep=" + "x" * 1000),  # bounded: a long grep is refused
                ("bay.archived_logs", TINY, "limit=0")]
    got_in = []
    for fun, *args in attempts:
        try:
            out = cluster.runner(fun, *args, login=alice, timeout=60)
        except BayError:
            continue
        got_in.append((fun, *args, str(out)[:200]))
    for fun in ("bay.status", "bay.alerts", "bay.silences"):  # answered, with nothing of demo in it
        attempts.append((fun,))
        if "demo" in json.dumps(cluster.runner(fun, login=alice, timeout=60)):
            got_in.append((fun, "shows demo"))
    attempts.append(("bay.events", "service=demo"))  # answered, empty: demo's events are not hers
    if cluster.runner("bay.events", "service=demo", login=alice, timeout=60)["events"]:
        got_in.append(("bay.events", "shows demo's events"))
    # the registry, with the same login (bay user-add's): her service's repository only
    cluster.add_registry_user("alice", "alice-pw")
    _user, _password, certs = cluster.site.registry_login()
    node = cluster.nodes()[2].address
    own = spec["bay"]["services"][TINY]["image"].split("/", 1)[1].rsplit(":", 1)[0]

    def push(ref: str) -> subprocess.CompletedProcess:
        return subprocess.run(["skopeo", "copy", "--quiet", "--dest-creds", "alice:alice-pw", "--dest-cert-dir",
                               str(certs), "docker-daemon:bay-busybox:latest", f"docker://{node}:5000/{ref}"],
                              capture_output=True, text=True, timeout=120)

    for ref in ("platform/tools:1", "e2e/busybox:alice"):
        attempts.append(("push", ref))
        if push(ref).returncode == 0:
            got_in.append(("push", ref))
    assert not got_in, got_in
    assert cluster.runner("bay.plan", TINY, login=alice) is not None  # her own service: allowed
    res = push(f"{own}:alice")
    assert res.returncode == 0, res.stderr  # and her own service's images
    # tiny's owners as they were, and the registry's grants with them (else the next state.apply
    # would change the registry nodes' grants, and a test of a second apply sees it)
    spec["bay"]["services"][TINY]["owners"] = owners
    cluster.set_services(spec)
    cluster.refresh_registry_grants()
    print(f"owner alice: {len(attempts)} tried, 0 got in")


def test_what_should_work_still_does(cluster, attacker):
    # the services' frontends are public by design
    assert curl(attacker, f"http://{cluster.nodes()[0].address}:{WEB}/")[0] == 200
    # the nodes read KV with their own token, and pull with their own login
    node = cluster.client.containers.get(cluster.nodes()[1].container)
    res = node.exec_run(["sh", "-c", ". /etc/bay/consul-reader.env && curl -sf -H \"X-Consul-Token: "
                                     "$CONSUL_HTTP_TOKEN\" http://127.0.0.1:8500/v1/kv/bay/routes/?keys"])
    assert res.exit_code == 0 and "bay/routes/demo/web" in res.output.decode()
    res = node.exec_run(["docker", "pull", "127.0.0.1:5000/bay/demo:2"])
    assert res.exit_code == 0, res.output.decode()[-300:]


#: a service of the demo's image for the tests that change a spec (one container to roll, not the demo's five)
TINY = "tiny"


@pytest.fixture(scope="module")
def tiny(cluster):
    body = {"health": "demo", "owners": ["platform-team"],
            "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": 10150}}}
    with demo_image_service(cluster, TINY, body, timeout=120):
        yield TINY


@pytest.fixture
def spec(cluster, tiny):
    """The services pillar to change; restored, and tiny redeployed from it, after the test."""
    with restoring(cluster, tiny) as services:
        yield services


def test_owners_deploy_their_own_services_only(cluster, spec):
    """Salt external auth (PAM on the master): an owner runs bay.deploy for
    the services whose owners name them, and nothing else."""
    from bay_salt.cluster.local import BayError

    cluster.add_user("alice", "alice-pw")
    cluster.add_user("mallory", "mallory-pw")
    spec["bay"]["services"][TINY]["owners"] = ["alice"]
    cluster.set_services(spec)
    cluster.runner("bay.deploy", TINY)  # the platform (root) records alice as its owner
    assert cluster.runner("bay.deploy", TINY, login=("alice", "alice-pw"))
    with pytest.raises(BayError, match=f"mallory may not operate service {TINY}"):
        cluster.runner("bay.deploy", TINY, login=("mallory", "mallory-pw"))
    with pytest.raises(BayError, match="alice may not operate service demo"):
        cluster.runner("bay.deploy", "demo", login=("alice", "alice-pw"))
    with pytest.raises(BayError):
        cluster.runner("bay.drain", "node1", login=("alice", "alice-pw"))
    assert cluster.runner("bay.status", login=("mallory", "mallory-pw")) == {}
    with pytest.raises(BayError):  # Salt's own ACL: no other runner, no wrong password
        cluster.runner("jobs.list_jobs", login=("alice", "alice-pw"))
    with pytest.raises(BayError):
        cluster.runner("bay.status", login=("alice", "wrong"))
    res = cluster.master().exec_run(["salt", "-a", "pam", "--username", "alice", "--password", "alice-pw", "*",
                                     "cmd.run", "id"])
    assert res.exit_code != 0 or "uid=" not in res.output.decode()


def test_a_secret_in_a_spec_reaches_the_container_and_nothing_else(cluster, spec):
    """secret_env: the value is in the container's environment; KV, the
    runner's output, bay.status and Salt's job cache and logs on the master
    and the nodes carry its name only."""
    import secrets as random

    value = f"s3cret-{random.token_hex(8)}"
    spec["bay"]["services"][TINY]["secret_env"] = {"DEMO_PASSWORD": value}
    cluster.set_services(spec)
    out = cluster.runner("bay.deploy", TINY)
    assert value not in json.dumps(out)
    assert value not in json.dumps(cluster.runner("bay.status", TINY))
    assert value not in json.dumps(cluster.runner("bay.plan", TINY))
    envs = []  # every container of the service, on whichever node the deploy placed it
    for n in cluster.nodes()[:3]:
        node = cluster.client.containers.get(n.container)
        for cid in node.exec_run(["docker", "ps", "-q", "--filter", f"label={names.LABEL_SERVICE}={TINY}"]).output.split():
            envs.append(json.loads(node.exec_run(["docker", "inspect", "--format", "{{json .Config.Env}}",
                                                  cid.decode()]).output))
    assert envs and all(f"DEMO_PASSWORD={value}" in env for env in envs), len(envs)
    specs = kv_get(cluster, "bay/specs/", recurse=True)
    assert specs and all(value not in json.dumps(e) and value not in (
        __import__("base64").b64decode(e["Value"] or "").decode()) for e in specs)
    assert "DEMO_PASSWORD" in "".join(__import__("base64").b64decode(e["Value"] or "").decode() for e in specs)
    # Salt's job cache and logs (the pillar itself, and Salt's copy of each
    # minion's pillar, hold it by design: that copy is root's only)
    for c in cluster.masters() + [cluster.client.containers.get(n.container) for n in cluster.nodes()]:
        res = c.exec_run(["sh", "-c", f"grep -rl -- '{value}' /var/cache/salt /var/log /var/lib/bay 2>/dev/null "
                                      "| grep -Ev '/master/(pillar/[^/]+|minions/.*/data)\\.p$' || true"])
        assert res.output.decode().strip() == "", (c.name, res.output.decode())
    res = cluster.master().exec_run(["sh", "-c", "find /var/cache/salt/master/pillar /var/cache/salt/master/minions "
                                                 "-name '*.p' -perm /077 2>/dev/null"])
    assert res.output.decode().strip() == "", res.output.decode()


def test_a_groups_egress_opens_what_it_declares_and_nothing_else(cluster, spec, attacker):
    """``egress:`` in a spec: its containers reach the declared address and
    port (a machine on the cluster's network that is not the platform), the
    demo's containers (none declared) do not, and a declared platform address
    stays closed."""
    attacker.reload()
    outside = next(iter(attacker.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    attacker.exec_run(["sh", "-c", "nohup python3 -m http.server 9999 >/dev/null 2>&1 &"], detach=True)
    first = cluster.nodes()[0]
    spec["bay"]["services"][TINY]["egress"] = [{"to": outside, "ports": [9999]},
                                               {"to": first.address, "ports": [8501]}]
    cluster.set_services(spec)
    cluster.runner("bay.deploy", TINY)

    def reach(service, host, port):
        """Whether an HTTP server answers (Consul's HTTPS answers a plain request with a 400)."""
        for n in cluster.nodes()[:3]:
            node = cluster.client.containers.get(n.container)
            for cid in node.exec_run(["docker", "ps", "-q", "--filter", f"label={names.LABEL_SERVICE}={service}"]
                                     ).output.split()[:1]:
                out = node.exec_run(["docker", "exec", cid.decode(), "sh", "-c",
                                     f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {host} {port}']).output
                return b"HTTP/1." in out
        raise AssertionError(f"no {service} container")

    eventually(lambda: reach(TINY, outside, 9999), 10, "tiny reaching what it declared")
    assert not reach("demo", outside, 9999)  # declared by tiny only
    assert not reach(TINY, first.address, 8501)  # Consul: the platform, whatever is declared


def test_graphite_takes_no_points_and_shows_nothing_to_a_stranger(cluster, attacker):
    """carbon and graphite-web listen on node1's loopback; its HAProxy takes
    points only with a certificate the cluster's CA signed, and shows graphs
    only with the password."""
    from bay_salt.metrics.render import RenderClient
    from tests.helpers import non_null

    monitor = cluster.nodes()[0]
    # both carbon-caches' receivers and cache queries, graphite-web: loopback only
    for port in (2003, 2004, 7002, 2103, 2104, 7102, 8180):
        assert curl(attacker, f"http://{monitor.address}:{port}/")[0] == 0, port
    send = ("import pickle,socket,ssl,struct,sys,time\n"
            "msg=pickle.dumps([('bay.evil.x',(time.time(),6.0))],protocol=2)\n"
            "data=struct.pack('!L',len(msg))+msg\n"
            "for port, wrap in ((2014, False), (2014, True), (2015, False), (2015, True)):\n"
            "  try:\n"
            "    s=socket.create_connection((sys.argv[1],port),timeout=5)\n"
            "    if wrap:\n"
            "      c=ssl.create_default_context(); c.check_hostname=False; c.verify_mode=ssl.CERT_NONE\n"
            "      s=c.wrap_socket(s)\n"
            "    s.sendall(data); print('refused: closed' if not s.recv(1) else 'answered')\n"
            "  except OSError as e: print('refused', type(e).__name__)\n")
    res = attacker.exec_run([f"{images.VENV}/bin/python", "-c", send, monitor.address])
    assert res.output.decode().count("refused") == 4, res.output.decode()
    for auth in ((), ("-u", "bay:guess")):
        assert curl(attacker, *auth, f"https://{monitor.address}:8088/render?target=bay.*.*&format=json")[0] == 401
    url, user, password, ca = cluster.graphite()
    render = RenderClient(url, user, password, str(ca))
    # what node1's agent sent after the attack is in Graphite: a point the attacker had got in would be too
    sent = time.time()
    control = names.metric_node(cluster.name, monitor.id, "cpu_percent")
    eventually(lambda: any(v is not None and ts > sent for series in render.series(control, since="-5min").values()
                           for v, ts in series or []), 60, f"a point of {control} stamped after the attack")
    assert not any(non_null(s) for s in render.series("bay.evil.x").values())


def test_logs_and_kafka_show_nothing_to_a_stranger(cluster, attacker):
    """Every node's log endpoint wants a token the master signed; Kafka wants
    Bay's password; the relay is not reachable from outside a node."""
    node1 = cluster.nodes()[0]
    for n in cluster.nodes():
        code, body = curl(attacker, f"https://{n.address}:8095{names.log_path('demo', 'web')}")
        assert code == 401 and "bearer token" in body, (n.id, code, body)
        assert curl(attacker, f"http://{n.address}:5140/")[0] == 0  # the relay: Docker's bridge inside the node
    forged = ("import jwt,time\nfrom cryptography.hazmat.primitives.asymmetric import ec\n"
              "k=ec.generate_private_key(ec.SECP256R1())\n"
              "print(jwt.encode({'iss':'bay-master','aud':'bay-logs','sub':'x','exp':int(time.time())+60,"
              "'services':['*']},k,algorithm='ES256'))")
    token = attacker.exec_run([f"{images.VENV}/bin/python", "-c", forged]).output.decode().strip()
    code, _ = curl(attacker, "-H", f"Authorization: Bearer {token}",
                   f"https://{node1.address}:8095{names.log_path('demo', 'web')}")
    assert code == 401
    probe = ("import sys\nfrom confluent_kafka.admin import AdminClient\n"
             "guess={'sasl.mechanism':'SCRAM-SHA-512','sasl.username':'bay','sasl.password':'guess'}\n"
             "for extra in ({}, {'security.protocol':'SASL_PLAINTEXT',**guess}, {'security.protocol':'SASL_SSL',"
             "'enable.ssl.certificate.verification':False,**guess}):\n"
             "  try:\n"
             "    md=AdminClient({'bootstrap.servers':sys.argv[1],'log_level':0,**extra}).list_topics(timeout=8)\n"
             "    print('answered', sorted(md.topics))\n"
             "  except Exception as e: print('refused', type(e).__name__)\n")
    res = attacker.exec_run([f"{images.VENV}/bin/python", "-c", probe, f"{node1.address}:9092"])
    assert res.output.decode().count("refused") == 3, res.output.decode()  # plain, SASL in clear, SASL over TLS

