"""The master's Salt backend: a start is not published to a node whose
minion is away (a job published then never reaches it), and Salt's timeout
is its job check, not the start's whole duration."""

import pytest

from bay_salt.kv.store import Servers
from bay_salt.master.saltbackend import SaltBackend
from bay_salt.model.services import parse
from bay_salt.scheduling.backend import DeployError

GROUP = parse({"demo": {"image": "r/demo:1", "owners": ["t"], "groups": {
    "web": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 10080}}}})["demo"].groups()["web"]


class Event:
    cpub = False

    def close_pub(self):
        pass


class Local:
    """Salt's LocalClient as far as the backend uses it: ``cmd``, and ``run_job``
    then ``get_cli_event_returns`` (each call recorded, in order)."""

    def __init__(self, answers=None):
        self.calls, self.order = [], []
        self.event = Event()
        self.answers = answers or {}

    def cmd(self, tgt, fun, arg=(), timeout=None, **kwargs):
        self.calls.append((tgt, fun, timeout))
        return {tgt: [{"instance": "i1", "healthy": True}]}

    def run_job(self, tgt, fun, arg=(), timeout=None, listen=False, **kwargs):
        self.calls.append((tgt, fun, timeout))
        self.order.append(("publish", tgt))
        return {"jid": f"j-{tgt}", "minions": [tgt]}

    def get_cli_event_returns(self, jid, minions, timeout=None, tgt="*", **kwargs):
        node = minions[0]
        self.order.append(("wait", node))
        ret = self.answers.get(node, [{"instance": "i1", "healthy": True}])
        yield {node: {"ret": ret}} if ret is not None else {}


def test_a_start_waits_for_the_nodes_minion_to_be_back():
    local, seen = Local(), iter([set(), {"node2"}, {"node1", "node2"}])
    b = SaltBackend(local, ["node1", "node2"], timeout=15, connected=lambda: next(seen), connect_wait=5)
    assert b.start("node1", GROUP, ["i1"]) == [{"instance": "i1", "healthy": True}]
    assert local.calls == [("node1", "bay_docker.run", 15)]


def test_a_start_on_a_node_whose_minion_stays_away_fails_in_one_line_without_publishing():
    local = Local()
    b = SaltBackend(local, ["node1"], connected=lambda: set(), connect_wait=0.5)
    with pytest.raises(DeployError, match=r"^demo.web on node1: its minion is not connected to the master"):
        b.start("node1", GROUP, ["i1"])
    assert local.calls == []


def test_starts_on_several_nodes_are_all_published_before_any_is_waited_for():
    local = Local({"node2": "ERROR: docker: no space left on device", "node3": None})
    b = SaltBackend(local, ["node1", "node2", "node3"], timeout=15)
    out = b.start_all([("node1", GROUP, ["a"]), ("node2", GROUP, ["b"]), ("node3", GROUP, ["c"])])
    assert local.order == [("publish", "node1"), ("publish", "node2"), ("publish", "node3"),
                           ("wait", "node1"), ("wait", "node2"), ("wait", "node3")]
    assert out[0] == [{"instance": "i1", "healthy": True}]
    assert isinstance(out[1], DeployError) and str(out[1]) == ("demo.web on node2: the start failed: "
                                                               "ERROR: docker: no space left on device")
    assert isinstance(out[2], DeployError) and "node3: the node did not answer the start" in str(out[2])


def test_stops_on_several_nodes_are_all_published_before_any_is_waited_for():
    local = Local({"node2": None})  # node2 never answers: the others are stopped all the same
    b = SaltBackend(local, ["node1", "node2", "node3"], timeout=15)
    b.stop_all({"node1": ["c1", "c2"], "node2": ["c3"], "node3": ["c4"]})
    assert local.order == [("publish", "node1"), ("publish", "node2"), ("publish", "node3"),
                           ("wait", "node1"), ("wait", "node2"), ("wait", "node3")]
    assert [c[1] for c in local.calls] == ["bay_docker.stop"] * 3


class Reporting(Local):
    """Nodes that answer bay.node_report (a node's root chooses what its report says)."""

    def __init__(self, report):
        super().__init__()
        self.report = report

    def cmd(self, tgt, fun, arg=(), timeout=None, **kwargs):
        self.calls.append((tgt, fun, timeout))
        return {n: self.report for n in tgt.split(",")} if fun == "bay.node_report" else {}


def test_the_site_comes_from_the_masters_view_not_from_a_nodes_report():
    forged = {"admins": ["mallory"], "teams": {}, "services": {"evil": {}}, "controller": {},
              "consul": {"servers": ["10.9.9.9"], "http_port": 8500}}
    local, looked = Reporting(forged), []

    def view():
        looked.append(1)
        return {"admins": ["platform"], "teams": {"shop": ["alice"]}, "services": {"demo": {}}, "controller": {},
                "consul": {"servers": ["10.0.0.2"], "http_port": 8500}}

    b = SaltBackend(local, ["node1", "node2"], site=view)
    assert b.access() == (["platform"], {"shop": ["alice"]})
    assert set(b.services()) == {"demo"} and b.consul_servers() == Servers(["10.0.0.2"], 8500)
    assert local.calls == [] and looked == [1]  # no node asked; the master's pillar read once per backend


def test_without_a_masters_view_the_first_report_and_servers_without_addresses_from_the_nodes():
    report = {"admins": ["a"], "teams": {}, "consul": {"servers": ["10.0.0.3"], "http_port": 8501}}
    b = SaltBackend(Reporting(report), ["node1"], refresh_pillar=False)
    assert b.access() == (["a"], {})
    b = SaltBackend(Reporting(report), ["node1"], refresh_pillar=False,
                    site=lambda: {"consul": {"servers": [], "http_port": 8501}})
    assert b.consul_servers() == Servers(["10.0.0.3"], 8501)


def test_with_consul_tls_the_master_reaches_the_servers_by_https_checked_against_its_own_ca():
    site = {"consul": {"servers": ["10.0.0.2"], "http_port": 8500, "https_port": 8501}}
    b = SaltBackend(Reporting({}), ["node1"], site=lambda: site, ca_file="/etc/bay/ca.pem")
    assert b.consul_servers() == Servers(["10.0.0.2"], 8501, "/etc/bay/ca.pem")


def test_node_addresses_come_from_the_masters_pillar_without_asking_a_node_when_it_names_them_all():
    """A node cut off would make a node report wait out Salt's timeouts (143 s seen for `bay logs`)."""
    site = {"addresses": {"node1": "10.0.0.1", "node2": "10.0.0.2", "node3": "10.0.0.3"}}
    local = Reporting({"node": {"address": "10.9.9.9"}})
    b = SaltBackend(local, ["node1", "node3"], site=lambda: site)
    assert b.node_addresses() == {"node1": "10.0.0.1", "node3": "10.0.0.3"} and local.calls == []
    # a node the pillar gives no address: the nodes are asked
    b = SaltBackend(local, ["node1", "node4"], site=lambda: site)
    assert b.node_addresses()["node4"] == "10.9.9.9" and local.calls
    # no master's view: a node's report is not believed for the others' addresses
    local = Reporting({"node": {"address": "10.9.9.9"}, "addresses": {"node1": "10.6.6.6"}})
    assert SaltBackend(local, ["node1"]).node_addresses() == {"node1": "10.9.9.9"}


class Missing(Local):
    """A node whose minion misses Salt's job check ``missed`` times (Salt answers its "did not return" text)."""

    def __init__(self, missed):
        super().__init__()
        self.missed = missed

    def cmd(self, tgt, fun, arg=(), timeout=None, **kwargs):
        self.calls.append((tgt, fun, timeout))
        if self.missed:
            self.missed -= 1
            return {tgt: "Minion did not return. [No response]\n...\n\nsalt-run jobs.lookup_jid 2026"}
        return {tgt: {"topic": "bay-logs-demo", "created": False}}


def test_a_topic_asked_again_when_the_kafka_node_missed_the_job_check_once():
    local = Missing(1)
    assert SaltBackend(local, ["node1"]).ensure_log_topic(["node1"], "demo", 3, 60.0)["topic"] == "bay-logs-demo"
    assert [c[1] for c in local.calls] == ["bay_logs.ensure_topic"] * 2


def test_a_kafka_node_that_never_answers_is_named_in_one_line():
    local = Missing(5)
    with pytest.raises(DeployError, match=r"^demo: its log topic: node1: no answer$"):
        SaltBackend(local, ["node1"]).ensure_log_topic(["node1"], "demo", 3, 60.0)
    assert len(local.calls) == 2
