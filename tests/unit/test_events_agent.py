"""The node agent: its checks' state machine, the checker over the in-memory
store with real probes against a local HTTP server, and the sender that keeps
events until the master has them."""

import http.server
import threading

import pytest

from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Instance, Route
from bay_salt.model import names
from bay_salt.node import checks
from bay_salt.node.events_agent import Checker
from bay_salt.node.sender import Sender
from tests.support.fakes import MemoryStore


def inst(health="passing", port=1):
    return Instance("demo", "web", "aaaa", "node1", "127.0.0.1", port, health, container="c-aaaa")


def test_readiness_needs_fall_failures_then_rise_successes():
    t = checks.Track.of(inst(), 0.0)
    assert checks.readiness(t, False, 2, 2) is None
    assert checks.readiness(t, False, 2, 2) == checks.UNREADY and not t.ready
    assert checks.readiness(t, False, 2, 2) is None  # reported once
    assert checks.readiness(t, True, 2, 2) is None
    assert checks.readiness(t, True, 2, 2) == checks.READY and t.ready
    assert not checks.Track.of(inst("critical"), 0.0).ready  # as KV has it


def test_liveness_reports_hung_once_past_the_threshold_and_the_initial_delay():
    t = checks.Track.of(inst(), 100.0)
    assert checks.liveness(t, False, 101.0, 2, initial_delay=5.0) is None  # too early to judge
    assert checks.liveness(t, False, 106.0, 2, 5.0) is None
    assert checks.liveness(t, True, 107.0, 2, 5.0) is None  # a success resets the count
    assert checks.liveness(t, False, 108.0, 2, 5.0) is None
    assert checks.liveness(t, False, 109.0, 2, 5.0) == checks.HUNG
    assert checks.liveness(t, False, 110.0, 2, 5.0) is None


class Answers(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.send_response(Answers.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Answers.status = 200
    yield srv.server_address[1]
    srv.shutdown()


def test_probes_over_http_and_tcp(server):
    assert checks.probe({"http": "/healthz", "timeout": 1}, "127.0.0.1", server)
    assert checks.probe({"tcp": True, "timeout": 1}, "127.0.0.1", server)
    Answers.status = 500
    assert not checks.probe({"http": "/healthz", "timeout": 1}, "127.0.0.1", server)
    assert not checks.probe({"exec": ["true"], "timeout": 1}, "127.0.0.1", server)  # no container: not alive


def test_the_checker_reports_unready_ready_and_hung(server):
    store, sent = MemoryStore(), []
    store.apply(kvstore.register_ops([inst(port=server)]) + [kvstore.op_put(Route(
        "demo", "web", 10080, {"http": "/healthz", "interval": 0.0, "timeout": 0.5, "rise": 1, "fall": 1},
        {"http": "/healthz", "interval": 0.0, "timeout": 0.5, "failure_threshold": 2}))])
    c = Checker("node1", store, lambda tag, data: sent.append((tag, data)), docker_client=lambda: None)

    clock = [0.0]

    def run(ticks):
        for _ in range(ticks):
            clock[0] += 1.0
            c.tick(clock[0])
            for f in list(c.pending.values()):
                f.result()
        clock[0] += 1.0
        c.tick(clock[0])

    run(3)
    assert sent == []
    Answers.status = 503
    run(4)
    tags = [t for t, _ in sent]
    assert tags[0] == names.TAG_INSTANCE_UNREADY and names.TAG_CONTAINER_UNHEALTHY in tags
    assert sent[0][1]["container"] == "c-aaaa" and sent[0][1]["node"] == "node1"
    Answers.status = 200
    run(2)
    assert [t for t, _ in sent][-1] == names.TAG_INSTANCE_READY
    # deregistered (replaced): no longer checked
    store.apply(kvstore.deregister_ops([inst(port=server)]))
    clock[0] += 10.0
    run(1)
    assert c.tracks == {}


def test_the_sender_keeps_events_until_the_master_takes_them():
    master_up, got, slept = [False], [], []

    def send(tag, data):
        if not master_up[0]:
            raise ConnectionError("master away")
        got.append(tag)

    s = Sender(send, capacity=3, sleep=lambda t: (slept.append(t), master_up.__setitem__(0, len(slept) >= 3)))
    for k in range(5):
        s.put(f"t{k}", {})
    s.drain(once=True)
    assert got == ["t2", "t3", "t4"]  # the two oldest went when the queue was full (counted)
    assert s.dropped == 2 and s.resent == 3 and slept == [0.25, 0.5, 1.0]


def test_events_go_to_the_master_whose_controller_leads():
    from bay_salt.node.sender import NoLeader, leader_of

    assert leader_of(["m1"], None)() == "m1"  # one master: no lock to read
    held = ["m2"]

    def read():
        if held[0] == "consul away":
            raise ConnectionError("no Consul")
        return held[0]

    target = leader_of(["m1", "m2"], read)
    assert target() == "m2"
    held[0] = "consul away"
    assert target() == "m2"  # the last leader known while KV cannot be read
    held[0] = None
    with pytest.raises(NoLeader, match="no master leads"):
        target()
    held[0] = "10.9.9.9"  # not one of this node's masters: never sent there
    with pytest.raises(NoLeader, match="not one of this node's masters"):
        target()
    with pytest.raises(NoLeader, match="cannot read"):
        leader_of(["m1", "m2"], lambda: (_ for _ in ()).throw(ConnectionError("x")))()


def test_a_lock_naming_a_master_by_dns_finds_the_address_the_minion_uses():
    from bay_salt.node.sender import leader_of

    assert leader_of(["10.9.9.8", "127.0.0.1"], lambda: "localhost")() == "127.0.0.1"
