"""The service containers' sandbox: the nft table rendered from what a node
knows, and when it is written (bay_salt.node.sandbox). The table itself is
tried for real from a service container in tests/e2e/test_closed.py."""

import json

import pytest

from bay_salt.kv.records import Instance, Route
from bay_salt.model import names
from bay_salt.model.services import Egress, SpecError, parse
from bay_salt.model.settings import SettingsError
from bay_salt.node import sandbox
from tests.unit.test_nodeconf import cfg_for

SPEC = {"image": "demo:1", "owners": ["alice"], "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": "64Mi",
                                                                      "port": 8000, "listen": 10080}}}


def view(**kw):
    base = dict(bridge="docker0", relay_port=5140, statsd_port=8125, frontends={10080},
                peers={("10.0.0.2", 32768)}, platform={"10.0.0.1", "10.0.0.2", "10.0.0.0/24", "10.9.0.1"})
    return sandbox.View(**{**base, **kw})


def chain(script: str, name: str) -> list[str]:
    body = script.split(f"  chain {name} {{\n", 1)[1].split("\n  }", 1)[0]
    return [line.strip() for line in body.splitlines()]


def test_the_table_is_replaced_in_one_transaction():
    script = sandbox.render(view())
    first = script.splitlines()[:3]
    assert first == [f"table inet {names.SANDBOX_TABLE}", f"delete table inet {names.SANDBOX_TABLE}",
                     f"table inet {names.SANDBOX_TABLE} {{"]


def test_the_node_itself_answers_containers_on_frontends_relay_statsd_and_its_instances_only():
    c = sandbox.Container("bay-demo-web-a", "172.17.0.5", ports=(32770,))
    rules = chain(sandbox.render(view(containers=[c])), "input")
    assert rules[1] == 'iifname != "docker0" accept'  # nothing but the bridge is touched
    assert "tcp dport { 5140, 10080, 32770 } accept" in rules
    assert "udp dport 8125 accept" in rules
    assert rules[-2].startswith("meta l4proto tcp counter reject with tcp reset")
    assert rules[-1].startswith("counter reject")


def test_onwards_peers_exactly_then_never_the_platform_then_what_is_declared():
    site = Egress(to="192.0.2.0/24", ports=[53], protocol="udp")
    own = Egress(to="198.51.100.7", ports=[5432])
    c = sandbox.Container("bay-demo-web-a", "172.17.0.5", egress=(own,))
    script = sandbox.render(view(egress=[site], containers=[c]))
    rules = chain(script, "forward")
    order = [next(i for i, r in enumerate(rules) if r.startswith(p)) for p in
             ("ct state established", 'oifname "docker0"', "ip daddr . tcp dport @peers", "ip daddr @platform",
              "jump egress", "meta l4proto tcp counter reject")]
    assert order == sorted(order)
    assert "elements = { 10.0.0.2 . 32768 }" in script
    # the platform's addresses merged (an interval set refuses overlaps)
    assert "elements = { 10.0.0.0/24, 10.9.0.1/32 }" in script
    assert chain(script, "egress") == ["ip daddr 192.0.2.0/24 udp dport { 53 } accept",
                                       "ip saddr 172.17.0.5 ip daddr 198.51.100.7/32 tcp dport { 5432 } accept"]


def test_empty_sets_render_without_elements():
    script = sandbox.render(view(peers=set(), platform=set()))
    assert "elements" not in script


def test_node_config_names_every_platform_address_it_knows():
    cfg = cfg_for("node2", registry={"storage": "hdfs://10.0.9.1:9870/bay"},
                  logs={"archive": {"hdfs": "hdfs://nn1:9870,nn2:9870/logs"}},
                  sandbox={"platform": ["10.7.0.0/16"], "egress": [{"to": "192.0.2.1", "ports": [443]}]})
    conf = sandbox.node_config(cfg, ["10.0.0.100", "salt.example"])
    assert set(conf["platform"]) >= {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.100", "salt.example",
                                     "10.0.9.1", "nn1", "nn2", "10.7.0.0/16"}
    assert conf["egress"] == [{"to": "192.0.2.1/32", "ports": [443], "protocol": "tcp"}]
    assert conf["enabled"] is True and conf["relay_port"] == 5140 and conf["statsd_port"] == 8125


@pytest.mark.parametrize("bad, field", [({"platform": ["not a host!"]}, "sandbox:platform"),
                                        ({"egress": [{"to": "10.0.0.0/33", "ports": [1]}]}, "sandbox:egress")])
def test_bad_sandbox_settings_are_named(bad, field):
    with pytest.raises(SettingsError, match=field):
        cfg_for("node1", sandbox=bad)


@pytest.mark.parametrize("egress, message", [([{"to": "example.com", "ports": [80]}], "not an IPv4"),
                                             ([{"to": "10.0.0.1", "ports": []}], "at least 1"),
                                             ([{"to": "10.0.0.1", "ports": [70000]}], "not in 1..65535"),
                                             ([{"to": "10.0.0.1", "ports": [1], "protocol": "icmp"}], "tcp")])
def test_a_bad_egress_is_refused_naming_the_group(egress, message):
    spec = json.loads(json.dumps(SPEC))
    spec["groups"]["web"]["egress"] = egress
    with pytest.raises(SpecError, match=f"(?s)demo.*egress.*{message}"):
        parse({"demo": spec})["demo"]


def test_egress_joins_the_spec_hash_only_when_set_and_a_group_replaces_the_services():
    plain = parse({"demo": SPEC})["demo"].groups()["web"]
    spec = json.loads(json.dumps(SPEC))
    spec["egress"] = [{"to": "10.1.0.0/16", "ports": [5432]}]
    spec["groups"]["api"] = {**spec["groups"]["web"], "listen": 10081, "egress": []}
    groups = parse({"demo": spec})["demo"].groups()
    assert [e.to for e in groups["web"].egress] == ["10.1.0.0/16"]
    assert groups["api"].egress == []
    assert groups["web"].spec_hash() != plain.spec_hash()
    assert groups["api"].with_instances(1).spec_hash() == groups["api"].spec_hash()
    no_egress = json.loads(json.dumps(SPEC))
    assert parse({"demo": no_egress})["demo"].groups()["web"].spec_hash() == plain.spec_hash()


class Docker:
    """A stand-in for the docker SDK's client: the bridge and Bay's containers."""

    def __init__(self, containers):
        self._containers = containers
        self.networks = self
        self.api = self
        self.lists = 0

    def get(self, name):
        return type("Net", (), {"attrs": {"Options": {"com.docker.network.bridge.name": "bay0"}}})()

    def containers(self, filters=None):  # GET /containers/json: what the list gives, no inspect
        self.lists += 1
        return list(self._containers)


def container(name, ip, host_port, egress=None):
    labels = {names.LABEL_SERVICE: "demo"}
    if egress is not None:
        labels[names.LABEL_EGRESS] = egress
    return {"Id": name + "-id", "Names": ["/" + name], "Labels": labels, "State": "running",
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 8000, "PublicPort": host_port, "Type": "tcp"}],
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": ip}}}}


def test_sandbox_writes_on_change_and_every_resync_and_ignores_the_registrys_records(tmp_path):
    conf = tmp_path / "sandbox.json"
    conf.write_text(json.dumps({"enabled": True, "relay_port": 5140, "statsd_port": 8125,
                                "platform": ["10.0.0.1"], "egress": []}))
    written, now = [], [0.0]
    box = sandbox.Sandbox(Docker([container("bay-demo-web-a", "172.17.0.5", 32770, '[{"to":"10.5.0.1","ports":[80]}]'),
                                  container("bay-demo-web-b", "172.17.0.6", 32771, "not json")]),
                          config=conf, apply=written.append, clock=lambda: now[0])
    routes = [Route("demo", "web", 10080), Route("bay-registry", "registry", 5000)]
    insts = [Instance("demo", "web", "a", "node2", "10.0.0.2", 32768),
             Instance("bay-registry", "registry", "r", "node1", "10.0.9.9", 5001)]
    assert box.update(routes, insts) is True
    script = written[-1]
    assert 'iifname != "bay0" accept' in script
    assert "10.0.0.2 . 32768" in script and "10.0.9.9" not in script  # the registry's record opens nothing
    assert "5000" not in script
    assert "ip saddr 172.17.0.5 ip daddr 10.5.0.1/32 tcp dport { 80 } accept" in script
    assert "172.17.0.6" not in script  # a label that does not parse opens nothing
    assert box.update() is False  # nothing changed
    now[0] += sandbox.RESYNC
    assert box.update() is True and len(written) == 2  # written again all the same
    conf.write_text(json.dumps({"enabled": False}))
    assert box.update() is True and written[-1] == sandbox.removal()


def test_no_config_file_yet_writes_nothing(tmp_path):
    box = sandbox.Sandbox(Docker([]), config=tmp_path / "absent.json", apply=pytest.fail)
    assert box.update([], []) is False


def test_each_container_start_writes_the_table_before_kv_knows_it(tmp_path):
    """A container's egress opens at its start: a service may need what it
    declared before it is healthy (and registered)."""
    import threading

    from tests.support.daemons import wait_for

    conf = tmp_path / "sandbox.json"
    conf.write_text(json.dumps({"enabled": True, "relay_port": 5140, "statsd_port": 8125, "platform": []}))
    running, stop, written = [], threading.Event(), []
    fake = Docker(running)

    def events(decode, filters):
        assert filters["event"] == "start" and filters["label"] == names.LABEL_SERVICE
        running.append(container("bay-demo-web-a", "172.17.0.5", 32770, '[{"to":"10.5.0.1","ports":[80]}]'))
        yield {"status": "start"}
        wait_for(lambda: len(written) == 1, 5, "the table written for the first start")
        running.append(container("bay-demo-web-b", "172.17.0.6", 32771, '[{"to":"10.6.0.1","ports":[80]}]'))
        yield {"status": "start"}
        wait_for(lambda: len(written) == 2, 5, "the table written for the second start")
        stop.set()

    fake.events = events
    sandbox.Sandbox(fake, config=conf, apply=written.append).follow_starts(stop)
    assert len(written) == 2
    assert "172.17.0.5" in written[0] and "172.17.0.6" not in written[0]
    assert "ip saddr 172.17.0.6 ip daddr 10.6.0.1/32" in written[1]


def test_a_burst_of_starts_is_written_a_few_times_not_once_each(tmp_path):
    """100 containers starting on a node: each start came with a write of the
    table and a look at every container (10,000 looks); starts that come while a
    write is under way now make one more write, whose look sees them all."""
    import threading

    from tests.support.daemons import wait_for

    conf = tmp_path / "sandbox.json"
    conf.write_text(json.dumps({"enabled": True, "relay_port": 5140, "statsd_port": 8125, "platform": []}))
    running, stop, written = [], threading.Event(), []
    fake = Docker(running)
    burst = threading.Event()

    def apply(script):  # nft takes its time: the starts meanwhile pile up (all of them, whatever the machine's load)
        burst.wait(10)
        written.append(script)

    def events(decode, filters):
        for i in range(100):
            running.append(container(f"bay-demo-web-{i}", f"172.17.1.{i}", 33000 + i, '[]'))
            yield {"status": "start"}
        burst.set()
        wait_for(lambda: written and "33099" in written[-1], 10, "the last start in the table")
        stop.set()

    fake.events = events
    sandbox.Sandbox(fake, config=conf, apply=apply).follow_starts(stop)
    assert all(str(33000 + i) in written[-1] for i in range(100))  # every container's published port
    assert len(written) <= 3 and fake.lists == len(written), (len(written), fake.lists)
