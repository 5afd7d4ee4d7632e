"""The controller's decisions against a real Consul; the Salt/Docker side is a
recording backend here (named as such: Recorder). The whole path, with real
containers and every node's HAProxy, runs in tests/e2e/test_controller.py."""

import json

import pytest

from bay_salt import kv, names, reactive
from bay_salt.deploy import Deployer, NodeState
from bay_salt.services import parse
from tests.integration.conftest import node_settings


class Recorder:
    """``healthy``: True/False for every start, or a list consumed one start at a time."""

    def __init__(self, healthy=True):
        self.healthy = healthy
        self.started, self.stopped = [], []

    def _healthy(self):
        return self.healthy.pop(0) if isinstance(self.healthy, list) else self.healthy

    def start(self, node, group, ids):
        self.started.append((node, ids))
        return [{"instance": i, "container": f"c-{i}", "host_port": 32000, "address": "10.0.0.1",
                 "healthy": self._healthy()} for i in ids]

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


CONTROLLER = node_settings()["controller"]  # the formula's defaults


def make(store, healthy=True, backend=None):
    backend, fired = backend or Recorder(healthy), []
    dead = kv.Instance("demo", "web", "aaaa", "node1", "10.0.0.1", 31000, "passing", container="c-aaaa")
    kv.apply(store, kv.register_ops([dead]))
    ctl = reactive.Controller(backend, store, lambda t, d: fired.append((t, d)), lambda fresh=False: SERVICES, CONTROLLER,
                              clock=lambda: 1000.0, sleep=lambda s: ctl.slept.append(s))
    ctl.slept = []
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
    # how long each step took after the death (the event had no Docker time: from now)
    assert fired[-1][1]["seconds_after_death"] == {"detected": 0.0, "critical": 0.0, "healthy": 0.0,
                                                   "registered": 0.0}
    assert new.restarts == (1000.0,)  # its line's restarts go with it (the crash-loop back-off)


def test_replaced_event_times_each_step_from_the_death(store):
    backend, fired, ctl, dead = make(store)
    event = died("node1")
    event["data"]["time_ns"] = 998_500_000_000  # 1.5 s before the controller's clock
    assert ctl.handle(names.TAG_CONTAINER_DIED, event)
    assert fired[-1][1]["seconds_after_death"]["detected"] == 1.5


def test_forged_event_from_another_node_changes_nothing(store):
    backend, fired, ctl, dead = make(store)
    before = store.kv.get("bay/", recurse=True)[1]
    assert not ctl.handle(names.TAG_CONTAINER_DIED, died("node2", node="node2"))
    assert store.kv.get("bay/", recurse=True)[1] == before and backend.started == []
    assert fired == [(names.TAG_EVENT_REJECTED, fired[0][1])]
    assert "event from node2 about an instance on node1" in fired[0][1]["reason"]


def test_replacement_failing_its_health_check_is_retried_after_the_backoff(store):
    backend, fired, ctl, dead = make(store, healthy=[False, False, True])
    new = ctl.handle(names.TAG_CONTAINER_DIED, died("node1"))
    assert new and len(backend.started) == 3 and ctl.slept == [1.0, 2.0]  # 0 s, then 1 s, then 2 s
    (only,) = keys(store, "bay/instances/")
    assert kv.Instance.from_json(value(store, only)).instance == backend.started[-1][1][0]
    # the two that failed were removed, then the dead one
    assert [c for _, cs in backend.stopped for c in cs] == [f"c-{backend.started[0][1][0]}",
                                                            f"c-{backend.started[1][1][0]}", "c-aaaa"]
    assert keys(store, "bay/placements/") == []


def test_crash_loop_marks_the_group_failed_until_the_next_deploy(store):
    backend, fired, ctl, dead = make(store, healthy=False)
    ctl.handle(names.TAG_CONTAINER_DIED, died("node1"))
    n = CONTROLLER["crash_loop_restarts"]
    assert len(backend.started) == n  # every restart failed its health check; then it gave up
    assert ctl.slept == [min(CONTROLLER["restart_backoff_max"], 2.0 ** k) for k in range(n - 1)]
    assert fired[-1][0] == names.TAG_GROUP_FAILED and "crash loop" in fired[-1][1]["reason"]
    assert keys(store, "bay/instances/") == [] and keys(store, "bay/placements/") == []
    assert "crash loop" in value(store, names.kv_failed("demo", "web")).decode()
    # a restarted controller does not bring it back ...
    ctl.backend = NodeRecorder()
    ctl.resume({"node1", "node2"})
    assert ctl.backend.started == []
    # ... a deploy does, with a fresh back-off
    Deployer(ctl.backend, store, drain_seconds=0).deploy(parse(SERVICES)["demo"])
    assert len(ctl.backend.started) == 1
    assert keys(store, "bay/failed/") == []
    (fresh,) = keys(store, "bay/instances/")
    assert kv.Instance.from_json(value(store, fresh)).restarts == ()


def test_backoff_follows_the_instance_line_not_the_group(store):
    """Independent kills of different instances are no crash loop; the same
    line dying again is."""
    backend, fired, ctl, dead = make(store)
    other = kv.Instance("demo", "web", "cccc", "node1", "10.0.0.1", 31001, "passing", container="c-cccc")
    kv.apply(store, kv.register_ops([other]))
    ctl.handle(names.TAG_CONTAINER_DIED, died("node1"))
    first = fired[-1][1]["new"]
    ctl.handle(names.TAG_CONTAINER_DIED, died("node1", instance="cccc"))
    assert ctl.slept == []  # two lines, each restarted once: at once
    ctl.handle(names.TAG_CONTAINER_DIED, died("node1", instance=first))
    assert ctl.slept == [CONTROLLER["restart_backoff"]]  # the first line's second restart waits


def test_unhealthy_container_is_replaced_and_oom_only_noted(store):
    backend, fired, ctl, dead = make(store)
    assert not ctl.handle(names.TAG_CONTAINER_OOM, died("node1"))
    assert backend.started == []
    assert ctl.handle(names.TAG_CONTAINER_UNHEALTHY, died("node1"))
    assert fired[-1][0] == names.TAG_CONTAINER_REPLACED and fired[-1][1]["reason"] == "unhealthy"
    assert backend.stopped == [("node1", ["c-aaaa"])]


def test_instance_of_a_group_gone_from_pillar_is_removed_not_restarted(store):
    backend, fired, ctl, dead = make(store)
    ctl.services_source = lambda fresh=False: {}
    assert ctl.handle(names.TAG_CONTAINER_DIED, died("node1"))
    assert backend.started == [] and backend.stopped == [("node1", ["c-aaaa"])]
    assert keys(store, "bay/instances/") == [] and keys(store, "bay/placements/") == []
    assert "no longer in bay:services" in fired[-1][1]["reason"]


def test_unregistered_instance_is_ignored_quietly(store):
    backend, fired, ctl, dead = make(store)
    assert not ctl.handle(names.TAG_CONTAINER_DIED, died("node1", instance="zzzz"))
    assert fired == [] and backend.started == []


class NodeRecorder(Recorder):
    """Recorder that also answers nodes() and containers() (named stand-in for Salt)."""

    def __init__(self, containers=(), nodes=("node2",)):
        super().__init__()
        self._containers = list(containers)
        self._nodes = nodes

    def nodes(self):
        return [NodeState(n, "10.0.0.2", 4, 4096) for n in self._nodes]

    def containers(self, node):
        return [c for c in self._containers if c.get("node", "node1") == node]


def running(name, age=1000.0, node="node1"):
    return {"container": name, "status": "running", "age": age, "node": node}


def test_resume_handles_nodes_that_vanished_while_not_looking(store):
    backend, fired, ctl, dead = make(store)
    ctl.backend = NodeRecorder()
    assert ctl.resume({"node2"})["lost"] == ["node1"]
    inst = [kv.Instance.from_json(value(store, k)) for k in keys(store, "bay/instances/")]
    assert [i.node for i in inst] == ["node2"] and dead.key not in keys(store, "bay/instances/")
    assert (names.TAG_NODE_LOST, {"node": "node1", "instances": ["aaaa"]}) in fired


def test_node_back_removes_strays_only(store):
    backend, fired, ctl, dead = make(store)
    ctl.backend = NodeRecorder([{"container": "c-aaaa"}, {"container": "c-stray"}])
    assert ctl.node_back("node1") == ["c-stray"]
    assert ctl.backend.stopped == [("node1", ["c-stray"])]


def test_resume_after_a_restart_mid_replacement(store):
    """The controller died after it decided a replacement (dead one critical,
    placement recorded) and after the new container started, before it was
    registered: resume removes the half-started one and the dead one and
    restores the count once."""
    backend, fired, ctl, dead = make(store)
    kv.apply(store, kv.register_ops([kv.Instance(**{**dead.__dict__, "health": "critical"})]) + [
        kv.op_set(names.kv_placement("demo", "web", "bbbb"), json.dumps({"node": "node1", "replaces": "aaaa"}))])
    ctl.backend = NodeRecorder([running("c-aaaa"), running(names.service_container("demo", "web", "bbbb"), age=2)],
                               nodes=("node1",))
    out = ctl.resume({"node1"})
    assert out["deregistered"] == ["aaaa"] and out["restored"] == ["demo.web"]
    assert sorted(ctl.backend.stopped[0][1]) == ["bay-demo-web-bbbb", "c-aaaa"]
    assert len(ctl.backend.started) == 1  # exactly one instance again
    (only,) = keys(store, "bay/instances/")
    assert kv.Instance.from_json(value(store, only)).instance == ctl.backend.started[0][1][0]
    assert keys(store, "bay/placements/") == []
    assert fired[-1][0] == names.TAG_CONTROLLER_RESUMED


def test_resume_replaces_instances_that_died_unheard_and_removes_old_strays(store):
    backend, fired, ctl, dead = make(store)  # registered, but its container exited while nobody listened
    exited = dict(running("c-aaaa"), status="exited")
    ctl.backend = NodeRecorder([exited, running("c-old-stray"), running("c-young", age=5)], nodes=("node1",))
    out = ctl.resume({"node1"})
    assert out["deregistered"] == ["aaaa"]
    assert out["removed"] == {"node1": ["c-aaaa", "c-old-stray"]}  # the young one may be a deploy in flight
    assert len(ctl.backend.started) == 1 and len(keys(store, "bay/instances/")) == 1


def test_resume_with_nothing_to_do_changes_nothing(store):
    backend, fired, ctl, dead = make(store)
    before = store.kv.get("bay/", recurse=True)[1]
    ctl.backend = NodeRecorder([running("c-aaaa")], nodes=("node1",))
    out = ctl.resume({"node1"})
    assert out == {"lost": [], "deregistered": [], "removed": {}, "restored": []}
    assert store.kv.get("bay/", recurse=True)[1] == before and ctl.backend.started == ctl.backend.stopped == []
