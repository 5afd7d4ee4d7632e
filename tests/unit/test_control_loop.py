"""The control loop (decide, then act) over the in-memory KV store and a
recording backend (tests/support/fakes.py: named stand-ins behind the real
interfaces). tests/integration/test_control_loop.py runs these same tests
over a real Consul; tests/e2e/test_controller.py runs the whole path with
real containers and every node's HAProxy."""

import json

import pytest

from bay_salt.control.loop import ControlLoop
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Accepted, Health, Instance, Placement
from bay_salt.model import names, settings
from bay_salt.model.services import parse
from bay_salt.scheduling.deployer import Deployer
from tests.helpers import CHECKOUT
from tests.support.fakes import MemoryStore, NodeRecorder, Recorder, running

SERVICES = {"demo": {"image": "r/demo:1", "owners": ["t"], "health": {"http": "/healthz"},
                     "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 10080}}}}
#: the formula's defaults
CONTROLLER = settings.Controller.model_validate(settings.formula_defaults(CHECKOUT)["controller"])


@pytest.fixture
def store():
    return MemoryStore()


def keys(store, prefix):
    return sorted(store.items(prefix))


def accept(store, services):
    """What a deploy of ``services`` records: each group's accepted spec."""
    for spec in parse(services).values():
        store.apply([kvstore.op_put(Accepted(g, at=1.0)) for g in spec.groups().values()])


def make(store, healthy=True, backend=None, services=SERVICES):
    backend, fired = backend or Recorder(healthy), []
    accept(store, services)
    spec = parse(SERVICES)["demo"].groups()["web"].spec_hash()
    dead = Instance("demo", "web", "aaaa", "node1", "10.0.0.1", 31000, "passing", container="c-aaaa", spec=spec)
    store.apply(kvstore.register_ops([dead]))
    slept = []
    loop = ControlLoop(store, backend, lambda t, d: fired.append((t, d)), None, lambda: CONTROLLER,
                       clock=lambda: 1000.0, sleep=slept.append)
    loop.slept = slept
    return backend, fired, loop, dead


def died(source, node="node1", instance="aaaa"):
    return {"id": source, "data": {"node": node, "service": "demo", "group": "web", "instance": instance,
                                   "exit_code": 137}}


def test_dead_container_is_replaced_on_its_node(store):
    backend, fired, loop, dead = make(store)
    assert loop.handle(names.TAG_CONTAINER_DIED, died("node1"))
    assert backend.started and backend.started[0][0] == "node1"
    assert backend.stopped == [("node1", ["c-aaaa"])]
    inst = keys(store, "bay/instances/")
    assert len(inst) == 1 and dead.key not in inst
    new = store.instances()[0]
    assert new.health == Health.PASSING and new.node == "node1"
    assert keys(store, "bay/placements/") == []
    assert fired[-1][0] == names.TAG_CONTAINER_REPLACED
    # how long each step took after the death (the event had no Docker time: from now)
    assert fired[-1][1]["seconds_after_death"] == {"detected": 0.0, "critical": 0.0, "healthy": 0.0,
                                                   "registered": 0.0}
    assert new.restarts == (1000.0,)  # its line's restarts go with it (the crash-loop back-off)


def test_replaced_event_times_each_step_from_the_death(store):
    backend, fired, loop, dead = make(store)
    event = died("node1")
    event["data"]["time_ns"] = 998_500_000_000  # 1.5 s before the controller's clock
    assert loop.handle(names.TAG_CONTAINER_DIED, event)
    assert fired[-1][1]["seconds_after_death"]["detected"] == 1.5


def test_forged_event_from_another_node_changes_nothing(store):
    backend, fired, loop, dead = make(store)
    before = store.items("bay/")
    assert not loop.handle(names.TAG_CONTAINER_DIED, died("node2", node="node2"))
    assert store.items("bay/") == before and backend.started == []
    assert fired == [(names.TAG_EVENT_REJECTED, fired[0][1])]
    assert "event from node2 about an instance on node1" in fired[0][1]["reason"]


def test_replacement_failing_its_health_check_is_retried_after_the_backoff(store):
    backend, fired, loop, dead = make(store, healthy=[False, False, True])
    new = loop.handle(names.TAG_CONTAINER_DIED, died("node1"))
    assert new and len(backend.started) == 3 and loop.slept == [1.0, 2.0]  # 0 s, then 1 s, then 2 s
    (only,) = store.instances()
    assert only.instance == backend.started[-1][1][0]
    # the two that failed were removed, then the dead one
    assert [c for _, cs in backend.stopped for c in cs] == [f"c-{backend.started[0][1][0]}",
                                                            f"c-{backend.started[1][1][0]}", "c-aaaa"]
    assert keys(store, "bay/placements/") == []


def test_crash_loop_marks_the_group_failed_until_the_next_deploy(store):
    backend, fired, loop, dead = make(store, healthy=False)
    loop.handle(names.TAG_CONTAINER_DIED, died("node1"))
    n = CONTROLLER.crash_loop_restarts
    assert len(backend.started) == n  # every restart failed its health check; then it gave up
    assert loop.slept == [min(CONTROLLER.restart_backoff_max, 2.0 ** k) for k in range(n - 1)]
    assert fired[-1][0] == names.TAG_GROUP_FAILED and "crash loop" in fired[-1][1]["reason"]
    assert keys(store, "bay/instances/") == [] and keys(store, "bay/placements/") == []
    assert "crash loop" in store.failed("demo", "web")
    # its last lines are kept for the group's alert (the container itself is removed)
    assert store.get(names.kv_failed_output("demo", "web")) == f"last words of {backend.stopped[-1][1][0]}".encode()
    # a restarted controller does not bring it back ...
    loop.backend = loop.executor.backend = NodeRecorder()
    loop.resume({"node1", "node2"})
    assert loop.backend.started == []
    # ... a deploy does, with a fresh back-off
    Deployer(loop.backend, store, drain_seconds=0).deploy(parse(SERVICES)["demo"])
    assert len(loop.backend.started) == 1
    assert keys(store, "bay/failed/") == []
    (fresh,) = store.instances()
    assert fresh.restarts == ()


def test_backoff_follows_the_instance_line_not_the_group(store):
    """Independent kills of different instances are no crash loop; the same
    line dying again is."""
    backend, fired, loop, dead = make(store)
    other = Instance("demo", "web", "cccc", "node1", "10.0.0.1", 31001, "passing", container="c-cccc")
    store.apply(kvstore.register_ops([other]))
    loop.handle(names.TAG_CONTAINER_DIED, died("node1"))
    first = fired[-1][1]["new"]
    loop.handle(names.TAG_CONTAINER_DIED, died("node1", instance="cccc"))
    assert loop.slept == []  # two lines, each restarted once: at once
    loop.handle(names.TAG_CONTAINER_DIED, died("node1", instance=first))
    assert loop.slept == [CONTROLLER.restart_backoff]  # the first line's second restart waits


def test_unhealthy_container_is_replaced_and_oom_only_noted(store):
    backend, fired, loop, dead = make(store)
    assert not loop.handle(names.TAG_CONTAINER_OOM, died("node1"))
    assert backend.started == []
    assert loop.handle(names.TAG_CONTAINER_UNHEALTHY, died("node1"))
    assert fired[-1][0] == names.TAG_CONTAINER_REPLACED and fired[-1][1]["reason"] == "unhealthy"
    assert backend.stopped == [("node1", ["c-aaaa"])]


def test_instance_of_a_group_gone_from_the_specs_is_removed_not_restarted(store):
    backend, fired, loop, dead = make(store, services={})
    assert loop.handle(names.TAG_CONTAINER_DIED, died("node1"))
    assert backend.started == [] and backend.stopped == [("node1", ["c-aaaa"])]
    assert keys(store, "bay/instances/") == [] and keys(store, "bay/placements/") == []
    assert "no longer in bay:services" in fired[-1][1]["reason"]


def test_unregistered_instance_is_ignored_quietly(store):
    backend, fired, loop, dead = make(store)
    assert not loop.handle(names.TAG_CONTAINER_DIED, died("node1", instance="zzzz"))
    assert fired == [] and backend.started == []


def with_backend(loop, backend):
    loop.backend = loop.executor.backend = backend
    return backend


def test_resume_handles_nodes_that_vanished_while_not_looking(store):
    backend, fired, loop, dead = make(store)
    with_backend(loop, NodeRecorder())
    out = loop.resume({"node2"})
    assert any("node node1 is not alive" in f for f in out["found"]) and out["restored"] == ["demo.web"]
    assert [i.node for i in store.instances()] == ["node2"] and dead.key not in keys(store, "bay/instances/")


def test_node_back_removes_strays_only(store):
    backend, fired, loop, dead = make(store)
    with_backend(loop, NodeRecorder([{"container": "c-aaaa"}, {"container": "c-stray"}]))
    assert loop.node_back("node1") == ["c-stray"]
    assert loop.backend.stopped == [("node1", ["c-stray"])]


def test_resume_after_a_restart_mid_replacement(store):
    """The controller died after it decided a replacement (dead one replacing,
    placement recorded) and after the new container started, before it was
    registered: resume removes the half-started one and the dead one and
    restores the count once."""
    backend, fired, loop, dead = make(store)
    store.apply(kvstore.register_ops([dead.replace(health=Health.REPLACING)])
                + [kvstore.op_put(Placement("demo", "web", "bbbb", "node1", "aaaa"))])
    with_backend(loop, NodeRecorder([running("c-aaaa"), running(names.service_container("demo", "web", "bbbb"),
                                                                age=2)], nodes=("node1",)))
    out = loop.resume({"node1"})
    assert out["restored"] == ["demo.web"] and "left half done" in out["found"][0]
    assert sorted(loop.backend.stopped[0][1]) == ["bay-demo-web-bbbb", "c-aaaa"]
    assert len(loop.backend.started) == 1  # exactly one instance again
    (only,) = store.instances()
    assert only.instance == loop.backend.started[0][1][0]
    assert keys(store, "bay/placements/") == []
    assert fired[-1][0] == names.TAG_CONTROLLER_RESUMED


def test_resume_replaces_instances_that_died_unheard_and_removes_old_strays(store):
    backend, fired, loop, dead = make(store)  # registered, but its container exited while nobody listened
    exited = dict(running("c-aaaa"), status="exited")
    with_backend(loop, NodeRecorder([exited, running("c-old-stray"), running("c-young", age=5)], nodes=("node1",)))
    out = loop.resume({"node1"})
    assert out["replaced"] == ["aaaa"] and len(out["found"]) == 2
    assert [c for _, cs in loop.backend.stopped for c in cs] == ["c-aaaa", "c-old-stray"]  # not the young one
    (new,) = store.instances()
    assert new.instance != "aaaa" and new.restarts == (1000.0,)  # a restart of its line, with the back-off
    assert (names.TAG_CONTAINER_REPLACED, fired[[t for t, _ in fired].index(names.TAG_CONTAINER_REPLACED)][1]) in fired


def test_resume_with_nothing_to_do_changes_nothing(store):
    backend, fired, loop, dead = make(store)
    before = store.items("bay/instances/")
    with_backend(loop, NodeRecorder([running("c-aaaa")], nodes=("node1",)))
    out = loop.resume({"node1"})
    assert out["found"] == [] and out["restored"] == [] and out["replaced"] == []
    assert store.items("bay/instances/") == before and loop.backend.started == loop.backend.stopped == []
    assert json.loads(store.get(names.KV_RECONCILE))["found"] == 0  # the pass is on record


def test_a_refused_spec_in_pillar_does_not_touch_recovery(store):
    """The controller works from the accepted spec in KV: pillar is not read at all."""
    backend, fired, loop, dead = make(store)
    assert loop.handle(names.TAG_CONTAINER_DIED, died("node1"))
    (new,) = store.instances()
    assert new.image == "r/demo:1" and new.spec == dead.spec


def test_readiness_reports_go_into_kv_and_back(store):
    backend, fired, loop, dead = make(store)
    unready = {"id": "node1", "data": {"node": "node1", "service": "demo", "group": "web", "instance": "aaaa",
                                       "container": "c-aaaa"}}
    assert loop.handle(names.TAG_INSTANCE_UNREADY, unready)
    assert store.instance("demo", "web", "aaaa").health == Health.CRITICAL
    assert loop.handle(names.TAG_INSTANCE_READY, unready)
    assert store.instance("demo", "web", "aaaa").health == Health.PASSING
    assert [t for t, _ in fired] == [names.TAG_INSTANCE_MARKED] * 2 and backend.started == []


def test_an_event_and_a_reconciliation_never_replace_the_same_instance_twice(store):
    backend, fired, loop, dead = make(store)
    assert loop.hands.claim("instance:" + dead.key)  # a handler is on it
    assert not loop.handle(names.TAG_CONTAINER_DIED, died("node1"))
    with_backend(loop, NodeRecorder([dict(running("c-aaaa"), status="exited")], nodes=("node1",)))
    assert loop.reconcile({"node1"})["replaced"] == [] and loop.backend.started == []


def test_adopting_a_group_deployed_before_specs_were_recorded(store):
    backend, fired, loop, dead = make(store, services={})
    assert loop.adopt({"demo": {**SERVICES["demo"], "image": "r/demo:9"}}) == []  # not what runs: left alone
    assert loop.adopt(SERVICES) == ["demo.web"]
    assert store.accepted("demo", "web").adopted and loop.group_spec("demo", "web").image == "r/demo:1"


def test_placement_records_keep_the_layout_earlier_versions_wrote(store):
    p = Placement("demo", "web", "bbbb", "node1", "aaaa", "c-aaaa")
    assert json.loads(p.to_json()) == {"node": "node1", "replaces": "aaaa", "container": "c-aaaa"}
    assert Placement.from_kv(p.key, p.to_json()) == p


TWO_GROUPS = {"demo": {"image": "r/demo:1", "owners": ["t"], "groups": {
    "web": {"instances": 2, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 10080},
    "api": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 8001, "listen": 10081}}}}


class ParallelRecorder(NodeRecorder):
    """Records each start_all call (a restore's starts, published together)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.batches, self.asked = [], 0

    def nodes(self):
        self.asked += 1
        return super().nodes()

    def start_all(self, starts):
        self.batches.append([(node, g.name, len(ids)) for node, g, ids in starts])
        return super().start_all(starts)


def lost_node_with_two_groups(store, backend):
    groups = parse(TWO_GROUPS)["demo"].groups()
    accept(store, TWO_GROUPS)
    gone = [Instance("demo", "web", "w1", "node1", "10.0.0.1", 31000, "passing", container="c-w1",
                     spec=groups["web"].spec_hash()),
            Instance("demo", "web", "w2", "node1", "10.0.0.1", 31001, "passing", container="c-w2",
                     spec=groups["web"].spec_hash()),
            Instance("demo", "api", "a1", "node1", "10.0.0.1", 31002, "passing", container="c-a1",
                     spec=groups["api"].spec_hash())]
    store.apply(kvstore.register_ops(gone))
    fired = []
    loop = ControlLoop(store, backend, lambda t, d: fired.append((t, d)), None, lambda: CONTROLLER,
                       clock=lambda: 1000.0, sleep=lambda s: None)
    return loop, fired


def test_a_lost_nodes_groups_are_placed_together_and_started_in_one_parallel_batch(store):
    backend = ParallelRecorder(nodes=("node2", "node3"))
    loop, fired = lost_node_with_two_groups(store, backend)
    loop.node_lost("node1")
    assert backend.asked == 1  # one look at the nodes for every group
    (batch,) = backend.batches
    assert sorted(batch) == [("node2", "demo.api", 1), ("node2", "demo.web", 1), ("node3", "demo.web", 1)]
    assert sorted((i.group, i.node) for i in store.instances()) == [("api", "node2"), ("web", "node2"),
                                                                    ("web", "node3")]
    replaced = [d for t, d in fired if t == names.TAG_CONTAINER_REPLACED]
    assert sorted(d["group"] for d in replaced) == ["demo.api", "demo.web"]
    assert all(d["node_lost"] == "node1" for d in replaced)


def test_a_group_that_does_not_fit_is_left_and_the_others_are_restored(store):
    backend = ParallelRecorder(nodes=("node2",), memory_mb=64)  # room for two 32 MiB instances
    loop, fired = lost_node_with_two_groups(store, backend)
    loop.node_lost("node1")
    # groups are placed in name order: api takes half the room, web's two do not fit in the rest
    # (a group is placed whole or not at all); the next reconciliation tries web again
    assert [i.group for i in store.instances()] == ["api"]
    assert [d["group"] for t, d in fired if t == names.TAG_CONTAINER_REPLACED] == ["demo.api"]


def test_a_restored_instance_failing_its_health_check_is_stopped_and_not_registered(store):
    backend = ParallelRecorder(nodes=("node2",), healthy=[True, False, True])
    loop, fired = lost_node_with_two_groups(store, backend)
    loop.node_lost("node1")
    assert len(store.instances()) == 2
    assert any(node == "node2" and len(c) == 1 for node, c in backend.stopped)
    assert all(c["container"] != backend.stopped[-1][1][0] for c in backend.containers("node2"))
