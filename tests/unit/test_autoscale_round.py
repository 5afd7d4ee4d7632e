"""The autoscaler's round over the in-memory KV store: decisions and windows
stored in KV (a restarted controller neither forgets nor scales twice),
graceful scale-down, partial metrics. The Salt/Docker side is the recording
backend (tests/support/fakes.py); metrics are given as cAdvisor would.
tests/integration/test_autoscaler.py runs these tests over a real Consul; the
live path, with a CPU-burning group under load, is tests/e2e/test_autoscale.py."""

import json

import pytest

from bay_salt.control.autoscale_round import Autoscaler, load_state
from bay_salt.kv import store as kvstore
from bay_salt.model import names
from bay_salt.model.services import parse
from bay_salt.scheduling.deployer import Deployer
from tests.support.fakes import MemoryStore, NodeRecorder

CPU = 0.25
SPEC = {"burn": {"image": "r/burn:1", "owners": ["t"], "health": {"tcp": True},
                 "groups": {"cpu": {"instances": 2, "cpu": CPU, "memory": 32, "port": 8000, "listen": 10090,
                                    "autoscale": {"min": 2, "max": 10, "target_cpu": 0.5,
                                                  "scale_down_window": "60s", "scale_down_step": 0.5}}}}}


@pytest.fixture
def store():
    return MemoryStore()


class Cluster:
    """Two nodes of a recording backend, and the cAdvisor view of what runs."""

    def __init__(self, store):
        self.store = store
        self.backend = NodeRecorder(nodes=("node1", "node2"))
        self.fired = []
        self.registered_at_stop = []  # containers still in KV when they were stopped
        stop = self.backend.stop

        def checked_stop(node, containers):
            recs = store.instances("burn", "cpu")
            self.registered_at_stop += [r.container for r in recs if r.container in containers]
            stop(node, containers)

        self.backend.stop = checked_stop
        Deployer(self.backend, store, drain_seconds=0).deploy(parse(SPEC)["burn"])

    def usage(self, per_instance_cpu, down=()):
        recs = self.store.instances("burn", "cpu")
        per_node = {"node1": {}, "node2": {}}
        for r in recs:
            per_node[r.node][r.container] = {"cpu": per_instance_cpu, "memory": 1}
        return {n: u for n, u in per_node.items() if n not in down}, {n: "timed out" for n in down}

    def tick(self, now, per_instance_cpu, down=()):
        scaler = Autoscaler(self.backend, self.store, lambda t, d: self.fired.append((t, d)),
                            lambda nodes: self.usage(per_instance_cpu, down), drain_seconds=0)
        return scaler.tick(now, list(parse(SPEC)["burn"].groups().values()), {"node1": "a", "node2": "b"})

    def count(self):
        return len(self.store.instances("burn", "cpu"))


def test_load_scales_up_at_once_and_down_after_the_window_gracefully(store):
    c = Cluster(store)
    assert c.count() == 2
    (d,) = c.tick(0.0, CPU)  # saturated: 100 % of what they reserve, target 50 %
    assert d["desired"] == 4 and c.count() == 4
    assert c.fired[-1][0] == names.TAG_SCALE_DECIDED and c.fired[-1][1]["utilisation"] == 1.0
    (d,) = c.tick(5.0, CPU * 0.5)  # on target now
    assert d["desired"] == 4 and d["reason"] == "within tolerance"
    stopped_before = len(c.backend.stopped)
    for t in range(10, 61, 5):  # idle, but inside the 60 s window
        (d,) = c.tick(float(t), 0.0)
        assert c.count() == 4, d
    (d,) = c.tick(66.0, 0.0)
    assert d["reason"] == "down" and d["desired"] == 2 and c.count() == 2
    removed = {x for _, cs in c.backend.stopped[stopped_before:] for x in cs}
    assert len(removed) == 2
    assert c.registered_at_stop == []  # each left KV (so every HAProxy) before it was stopped


def test_decisions_survive_a_restarted_controller(store):
    c = Cluster(store)
    c.tick(0.0, CPU)
    state, last = load_state(store, "burn", "cpu")
    assert state.desired == 4 and last["desired"] == 4 and state.recommendations
    c2 = Cluster.__new__(Cluster)  # a new controller: nothing in memory, the same KV
    c2.store, c2.backend, c2.fired = store, c.backend, []
    (d,) = c2.tick(10.0, 0.0)  # idle now, but the window remembers the peak
    assert d["desired"] == 4 and "deferred" in d["reason"] and c2.count() == 4
    # a deploy keeps the autoscaled count rather than resetting to pillar's 2
    Deployer(c.backend, store, drain_seconds=0).deploy(parse(SPEC)["burn"])
    assert c.count() == 4


def test_partial_metrics_mean_no_scaling(store):
    c = Cluster(store)
    (d,) = c.tick(0.0, CPU, down=("node2",))
    assert d["desired"] == d["current"] == 2 and "node2" in d["reason"] and c.count() == 2
    assert json.loads(store.get(names.kv_scale("burn", "cpu")))["last"]["missing"] == ["node2"]


def test_failed_group_is_not_scaled(store):
    c = Cluster(store)
    store.apply([kvstore.op_set(names.kv_failed("burn", "cpu"), "crash loop")])
    assert c.tick(0.0, CPU) == [] and c.count() == 2


def test_a_round_asks_the_nodes_once_and_places_each_group_against_what_the_last_one_took(store):
    spec = {"burn": {**SPEC["burn"], "groups": {
        name: {**SPEC["burn"]["groups"]["cpu"], "listen": 10090 + k} for k, name in enumerate(("a", "b"))}}}
    # 2 nodes of 0.75 core: 4 instances of 0.25 run; room for 2 more in all
    backend = NodeRecorder(nodes=("node1", "node2"), cpus=0.75)
    Deployer(backend, store, drain_seconds=0).deploy(parse(spec)["burn"])
    asked = []
    nodes = backend.nodes
    backend.nodes = lambda: asked.append(1) or nodes()

    def usage(_):
        per = {"node1": {}, "node2": {}}
        for r in store.instances():
            per[r.node][r.container] = {"cpu": CPU, "memory": 1}  # every instance saturated
        return per, {}

    scaler = Autoscaler(backend, store, lambda t, d: None, usage, drain_seconds=0)
    decided = scaler.tick(0.0, list(parse(spec)["burn"].groups().values()), {"node1": "a", "node2": "b"})
    assert [d["desired"] for d in decided] == [4, 4]  # both want twice as many
    assert len(asked) == 1
    assert len(store.instances()) == 6  # the first took the room; the second started what was left: none
    assert [d["applied"] for d in decided] == ["burn.a: scaled to 4 (+2 -0)",
                                                    "burn.b: 2 instances, unchanged"]
    for d in decided:  # the decisions and windows were stored for both
        assert json.loads(store.get(names.kv_scale("burn", d["group"].split(".")[1])))["last"]["desired"] == 4
