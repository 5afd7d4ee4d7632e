"""The controller's decisions against a real Consul; the Salt/Docker side is a
recording backend here (named as such: Recorder). The whole path, with real
containers and every node's HAProxy, runs in tests/e2e/test_controller.py."""

import json

import pytest

from bay_salt import kv, names, reactive


class Recorder:
    def __init__(self, healthy=True):
        self.healthy = healthy
        self.started, self.stopped = [], []

    def start(self, node, group, ids):
        self.started.append((node, ids))
        return [{"instance": i, "container": f"c-{i}", "host_port": 32000, "address": "10.0.0.1",
                 "healthy": self.healthy} for i in ids]

    def stop(self, node, containers):
        self.stopped.append((node, containers))


SERVICES = {"demo": {"image": "r/demo:1", "owners": ["t"], "health": {"http": "/healthz"},
                     "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 10080}}}}


@pytest.fixture
def store(consul_agent):
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
    yield consul_agent
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)


def keys(store, prefix):
    return [i["Key"] for i in store.kv.get(prefix, recurse=True)[1] or []]


def value(store, key):
    return store.kv.get(key)[1]["Value"]


def make(store, healthy=True):
    backend, fired = Recorder(healthy), []
    dead = kv.Instance("demo", "web", "aaaa", "node1", "10.0.0.1", 31000, "passing", container="c-aaaa")
    kv.apply(store, kv.register_ops([dead]))
    ctl = reactive.Controller(backend, store, lambda t, d: fired.append((t, d)), lambda: SERVICES, clock=lambda: 1000.0)
    return backend, fired, ctl, dead


def died(source, node="node1", instance="aaaa"):
    return {"id": source, "data": {"node": node, "service": "demo", "group": "web", "instance": instance,
                                   "exit_code": 137}}


def test_dead_container_is_replaced_on_its_node(store):
    backend, fired, ctl, dead = make(store)
    assert ctl.handle(names.TAG_CONTAINER_DIED, died("node1"))
    assert backend.started and backend.started[0][0] == "node1"
    assert backend.stopped == [("node1", ["c-aaaa"])]
    inst = keys(store, "bay/instances/")
    assert len(inst) == 1 and dead.key not in inst
    new = kv.Instance.from_json(value(store, inst[0]))
    assert new.health == "passing" and new.node == "node1"
    assert keys(store, "bay/placements/") == []
    assert fired[-1][0] == names.TAG_CONTAINER_REPLACED
    assert json.loads(value(store, names.kv_restarts("demo", "web"))) == [1000.0]


def test_forged_event_from_another_node_changes_nothing(store):
    backend, fired, ctl, dead = make(store)
    before = store.kv.get("bay/", recurse=True)[1]
    assert not ctl.handle(names.TAG_CONTAINER_DIED, died("node2", node="node2"))
    assert store.kv.get("bay/", recurse=True)[1] == before and backend.started == []
    assert fired == [(names.TAG_EVENT_REJECTED, fired[0][1])]
    assert "event from node2 about an instance on node1" in fired[0][1]["reason"]


def test_failed_replacement_deregisters_the_dead_one(store):
    backend, fired, ctl, dead = make(store, healthy=False)
    ctl.handle(names.TAG_CONTAINER_DIED, died("node1"))
    assert keys(store, "bay/instances/") == []
    assert fired[-1][1]["new"] is None and "failed its health check" in fired[-1][1]["reason"]


def test_crash_loop_marks_the_group_failed(store):
    backend, fired, ctl, dead = make(store)
    store.kv.put(names.kv_restarts("demo", "web"), json.dumps([990.0 + k for k in range(8)]))
    ctl.handle(names.TAG_CONTAINER_DIED, died("node1"))
    assert backend.started == []
    assert fired[-1][0] == names.TAG_GROUP_FAILED and "crash loop" in fired[-1][1]["reason"]
    assert kv.Instance.from_json(value(store, dead.key)).health == "critical"  # out of HAProxy


def test_unregistered_instance_is_ignored_quietly(store):
    backend, fired, ctl, dead = make(store)
    assert not ctl.handle(names.TAG_CONTAINER_DIED, died("node1", instance="zzzz"))
    assert fired == [] and backend.started == []


class NodeRecorder(Recorder):
    """Recorder that also answers nodes() and containers() (named stand-in for Salt)."""

    def __init__(self, containers=()):
        super().__init__()
        self._containers = list(containers)

    def nodes(self):
        from bay_salt.deploy import NodeState

        return [NodeState("node2", "10.0.0.2", 4, 4096)]

    def containers(self, node):
        return self._containers


def test_resume_handles_nodes_that_vanished_while_not_looking(store):
    backend, fired, ctl, dead = make(store)
    ctl.backend = NodeRecorder()
    assert ctl.resume({"node2"}) == ["node1"]
    inst = [kv.Instance.from_json(value(store, k)) for k in keys(store, "bay/instances/")]
    assert [i.node for i in inst] == ["node2"] and dead.key not in keys(store, "bay/instances/")
    assert (names.TAG_NODE_LOST, {"node": "node1", "instances": ["aaaa"]}) in fired


def test_node_back_removes_strays_only(store):
    backend, fired, ctl, dead = make(store)
    ctl.backend = NodeRecorder([{"container": "c-aaaa"}, {"container": "c-stray"}])
    assert ctl.node_back("node1") == ["c-stray"]
    assert ctl.backend.stopped == [("node1", ["c-stray"])]
