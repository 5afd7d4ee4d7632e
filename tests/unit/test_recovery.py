"""Recovery decisions (bay_salt.control.recovery) and node liveness
(bay_salt.control.nodes): pure functions, plain inputs."""

from bay_salt.control import recovery
from bay_salt.control.nodes import node_changes
from bay_salt.kv.records import Health, Instance, Placement
from bay_salt.model import names, settings
from bay_salt.model.services import parse
from tests.helpers import CHECKOUT

CONTROLLER = settings.Controller.model_validate(settings.formula_defaults(CHECKOUT)["controller"])
SPEC = parse({"demo": {"image": "r/demo:1", "owners": ["t"], "groups": {
    "web": {"instances": 2, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 10080}}}})["demo"].groups()["web"]


def inst(i="aaaa", node="node1", health="passing", restarts=(), container=None):
    return Instance("demo", "web", i, node, "10.0.0.1", 31000, health, container=container or f"c-{i}",
                    restarts=restarts)


def test_trust_only_the_node_the_event_is_about():
    payload = {"node": "node1", "instance": "ab12"}
    assert recovery.trusted("node1", payload, "node1") == (True, "")
    ok, why = recovery.trusted("node2", payload, "node1")
    assert not ok and "node2 names node 'node1'" in why
    ok, why = recovery.trusted("node2", dict(payload, node="node2"), "node1")
    assert not ok and "event from node2 about an instance on node1" in why
    assert not recovery.trusted(None, payload, "node1")[0]
    assert not recovery.trusted("node1", payload, None)[0]


def test_backoff_grows_caps_resets_and_fails():
    assert recovery.backoff([], 100) == (0.0, False)
    assert recovery.backoff([99], 100) == (1.0, False)
    assert recovery.backoff([97, 98, 99], 100) == (4.0, False)
    assert recovery.backoff([90 + k for k in range(7)], 100, cap=10) == (10.0, False)
    assert recovery.backoff([90 + k for k in range(8)], 100) == (0.0, True)
    assert recovery.backoff([1, 2, 3], 1000, reset_after=300) == (0.0, False)  # a long run resets it


def test_node_changes_from_serf_health():
    checks = [{"Node": "node1", "CheckID": "serfHealth", "Status": "passing"},
              {"Node": "node2", "CheckID": "serfHealth", "Status": "critical"},
              {"Node": "node2", "CheckID": "service:x", "Status": "passing"}]
    now, lost, back = node_changes({"node1": "passing", "node2": "passing", "node3": "passing"}, checks)
    assert lost == ["node2", "node3"] and back == [] and now["node3"] == "critical"
    now, lost, back = node_changes(now, [{"Node": n, "CheckID": "serfHealth", "Status": "passing"}
                                                for n in ("node1", "node2", "node3")])
    assert lost == [] and back == ["node2", "node3"]
    assert node_changes(None, checks)[1:] == (["node2"], [])  # first look: critical nodes are lost
    # a node reaped from the list while down, then passing again: back
    assert node_changes({"node1": "passing"}, checks[:1] + [
        {"Node": "node9", "CheckID": "serfHealth", "Status": "passing"}])[2] == ["node9"]


def kinds(actions):
    return [type(a).__name__ for a in actions]


def test_container_event_verdicts():
    rec = inst()
    ev = {"node": "node1", "service": "demo", "group": "web", "instance": "aaaa", "exit_code": 137}
    v = recovery.container_event(names.TAG_CONTAINER_DIED, "node1", ev, rec)
    assert v.replace and v.reason == "exit 137" and v.actions == ()
    assert recovery.container_event(names.TAG_CONTAINER_UNHEALTHY, "node1", ev, rec).reason == "unhealthy"
    assert not recovery.container_event(names.TAG_CONTAINER_OOM, "node1", ev, rec).replace
    assert not recovery.container_event(names.TAG_CONTAINER_DIED, "node1", ev, inst(health="critical")).replace
    forged = recovery.container_event(names.TAG_CONTAINER_DIED, "node2", ev, rec)
    assert not forged.replace and forged.actions[0].tag == names.TAG_EVENT_REJECTED
    gone = recovery.container_event(names.TAG_CONTAINER_DIED, "node1", ev, None)
    assert not gone.replace and gone.actions == ()  # a replaced instance's own die event: nothing to say


def test_replacement_marks_critical_first_then_starts_on_the_same_node():
    actions = recovery.replacement(inst(), SPEC, CONTROLLER, 1000.0, "bbbb", "exit 1")
    assert kinds(actions) == ["MarkCritical", "StartReplacement"]
    mark, start = actions
    assert mark.instance.health == Health.CRITICAL and mark.instance.restarts == (1000.0,)
    assert mark.placement == Placement("demo", "web", "bbbb", "node1", "aaaa", "c-aaaa")
    assert start.placement == mark.placement and start.group == SPEC


def test_replacement_backs_off_along_the_line_and_fails_a_crash_loop():
    again = recovery.replacement(inst(restarts=(998.0, 999.0)), SPEC, CONTROLLER, 1000.0, "b", "exit 1")
    assert kinds(again) == ["MarkCritical", "BackOff", "StartReplacement"] and again[1].seconds == 2.0
    many = tuple(990.0 + k for k in range(CONTROLLER.crash_loop_restarts))
    failed = recovery.replacement(inst(restarts=many), SPEC, CONTROLLER, 1000.0, "b", "exit 1")
    assert kinds(failed) == ["MarkCritical", "FailGroup"] and failed[0].placement is None
    assert f"{CONTROLLER.crash_loop_restarts} restarts in a row" in failed[1].reason


def test_replacement_of_a_group_gone_retires_it():
    actions = recovery.replacement(inst(), None, CONTROLLER, 1000.0, "b", "exit 1")
    assert kinds(actions) == ["MarkCritical", "Retire"] and "no longer in bay:services" in actions[1].reason


def test_node_lost_deregisters_and_restores_its_groups():
    records = [inst("a", "node1"), inst("b", "node2")]
    actions = recovery.node_lost("node1", records)
    assert kinds(actions) == ["Announce", "Deregister", "Restore"]
    assert [i.instance for i in actions[1].instances] == ["a"] and actions[2].groups == (("demo", "web"),)
    assert kinds(recovery.node_lost("node3", records)) == ["Announce"]


def test_node_back_removes_only_containers_kv_does_not_list():
    actions = recovery.node_back("node1", [{"container": "c-a"}, {"container": "c-x"}], [inst("a")])
    assert actions[0] == recovery.RemoveContainers("node1", ("c-x",))
    assert actions[-1].tag == names.TAG_NODE_BACK


def test_resume_spares_young_strays_and_host_services():
    registry = Instance(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, "node1", "node1", "10.0.0.1", 5001, "passing")
    found = {"node1": [{"container": "c-a", "status": "running"}, {"container": "young", "status": "running",
                                                                    "age": 3}]}
    assert recovery.resume({"node1"}, [inst("a"), registry], [], found, CONTROLLER.stray_age) == []
    assert recovery.lost_nodes([inst("a", "node9")], {"node1"}) == ["node9"]
