"""Recovery decisions (bay_salt.control.recovery) and node liveness
(bay_salt.master.nodes): pure functions, plain inputs."""

from bay_salt.control import recovery
from bay_salt.kv.records import Health, Instance, Placement
from bay_salt.master.nodes import node_changes
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
    assert not recovery.container_event(names.TAG_CONTAINER_DIED, "node1", ev, inst(health="replacing")).replace
    # not ready is no reason not to replace it when it dies
    assert recovery.container_event(names.TAG_CONTAINER_DIED, "node1", ev, inst(health="critical")).replace
    assert recovery.container_event(names.TAG_CONTAINER_PAUSED, "node1", ev, rec).reason == "paused (hung)"
    forged = recovery.container_event(names.TAG_CONTAINER_DIED, "node2", ev, rec)
    assert not forged.replace and forged.actions[0].tag == names.TAG_EVENT_REJECTED
    gone = recovery.container_event(names.TAG_CONTAINER_DIED, "node1", ev, None)
    assert not gone.replace and gone.actions == ()  # a replaced instance's own die event: nothing to say


def test_replacement_marks_critical_first_then_starts_on_the_same_node():
    actions = recovery.replacement(inst(), SPEC, CONTROLLER, 1000.0, "bbbb", "exit 1")
    assert kinds(actions) == ["MarkReplacing", "StartReplacement"]
    mark, start = actions
    assert mark.instance.health == Health.REPLACING and mark.instance.restarts == (1000.0,)
    assert mark.placement == Placement("demo", "web", "bbbb", "node1", "aaaa", "c-aaaa")
    assert start.placement == mark.placement and start.group == SPEC


def test_replacement_backs_off_along_the_line_and_fails_a_crash_loop():
    again = recovery.replacement(inst(restarts=(998.0, 999.0)), SPEC, CONTROLLER, 1000.0, "b", "exit 1")
    assert kinds(again) == ["MarkReplacing", "BackOff", "StartReplacement"] and again[1].seconds == 2.0
    many = tuple(990.0 + k for k in range(CONTROLLER.crash_loop_restarts))
    failed = recovery.replacement(inst(restarts=many), SPEC, CONTROLLER, 1000.0, "b", "exit 1")
    assert kinds(failed) == ["MarkReplacing", "FailGroup"] and failed[0].placement is None
    assert f"{CONTROLLER.crash_loop_restarts} restarts in a row" in failed[1].reason


def test_replacement_of_a_group_gone_retires_it():
    actions = recovery.replacement(inst(), None, CONTROLLER, 1000.0, "b", "exit 1")
    assert kinds(actions) == ["MarkReplacing", "Retire"] and "no longer in bay:services" in actions[1].reason


def test_node_lost_deregisters_and_restores_its_groups():
    records = [inst("a", "node1"), inst("b", "node2")]
    actions = recovery.node_lost("node1", records)
    assert kinds(actions) == ["Announce", "Deregister", "Restore"]
    assert [i.instance for i in actions[1].instances] == ["a"] and actions[2].groups == (("demo", "web"),)
    assert kinds(recovery.node_lost("node3", records)) == ["Announce"]


def test_node_lost_leaves_its_host_services_registration_to_the_node():
    registry = Instance(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, "node1", "node1", "10.0.0.1", 5001, "passing")
    actions = recovery.node_lost("node1", [inst("a", "node1"), registry])
    assert [i.instance for i in actions[1].instances] == ["a"] and actions[2].groups == (("demo", "web"),)
    assert actions[0].data["instances"] == ["a"]
    assert kinds(recovery.node_lost("node1", [registry])) == ["Announce"]


def test_node_back_removes_only_containers_kv_does_not_list():
    actions = recovery.node_back("node1", [{"container": "c-a"}, {"container": "c-x"}], [inst("a")])
    assert actions[0] == recovery.RemoveContainers("node1", ("c-x",))
    assert actions[-1].tag == names.TAG_NODE_BACK


def test_readiness_reports_set_the_health_of_the_instance_they_speak_of():
    ev = {"node": "node1", "service": "demo", "group": "web", "instance": "aaaa", "container": "c-aaaa"}
    v = recovery.container_event(names.TAG_INSTANCE_UNREADY, "node1", ev, inst())
    assert not v.replace and v.actions == (recovery.SetHealth(inst(), Health.CRITICAL),)
    back = recovery.container_event(names.TAG_INSTANCE_READY, "node1", ev, inst(health="critical"))
    assert back.actions[0].health == Health.PASSING
    assert recovery.container_event(names.TAG_INSTANCE_READY, "node1", ev, inst()).actions == ()  # nothing new
    # about a container the instance no longer is (a late report): nothing
    assert recovery.container_event(names.TAG_INSTANCE_UNREADY, "node1", dict(ev, container="c-old"), inst()).actions == ()
    assert recovery.container_event(names.TAG_INSTANCE_UNREADY, "node1", ev, inst(health="replacing")).actions == ()


# --- reconciliation: every difference found, every one healed -----------------------------

def accepted(instances=2, **kw):
    from bay_salt.kv.records import Accepted
    return {("demo", "web"): Accepted(SPEC.with_instances(instances).model_copy(update=kw))}


def running_spec(i="aaaa", node="node1", health="passing"):
    return inst(i, node, health).replace(spec=SPEC.spec_hash())


def view(instances, containers, alive=("node1", "node2"), **kw):
    kw.setdefault("accepted", accepted(len([i for i in instances if i.is_container])))
    return recovery.View(now=10_000.0, alive=frozenset(alive), containers=containers, instances=tuple(instances),
                         placements=tuple(kw.pop("placements", ())), settings=CONTROLLER, **kw)


def up(name, status="running", age=1000.0, **extra):
    return {"container": name, "status": status, "age": age, **extra}


def test_a_converged_cluster_needs_nothing():
    a, b = running_spec("a"), running_spec("b", "node2")
    assert recovery.reconcile(view([a, b], {"node1": [up("c-a")], "node2": [up("c-b")]})) == ([], [])


def test_a_death_nobody_reported_is_replaced_with_the_back_off():
    a, b = running_spec("a"), running_spec("b", "node2")
    for containers, why in (({"node1": [], "node2": [up("c-b")]}, "container is gone"),
                            ({"node1": [up("c-a", "exited")], "node2": [up("c-b")]}, "container is exited"),
                            ({"node1": [up("c-a", "paused")], "node2": [up("c-b")]}, "paused (hung)")):
        actions, found = recovery.reconcile(view([a, b], containers))
        assert actions == [recovery.Replace(a, actions[0].reason)] and why in actions[0].reason, found
        assert len(found) == 1 and "demo.web a on node1" in found[0]


def test_what_a_handler_holds_or_a_deploy_holds_is_left_alone():
    a, b = running_spec("a"), running_spec("b", "node2")
    dead = {"node1": [], "node2": [up("c-b")]}
    assert recovery.reconcile(view([a, b], dead, in_hand=frozenset({recovery.instance_hand(a)}))) == ([], [])
    assert recovery.reconcile(view([a, b], dead, deploying={("demo", "web"): 9_990.0})) == ([], [])
    stale = recovery.reconcile(view([a, b], dead, deploying={("demo", "web"): 10_000.0 - CONTROLLER.deploy_timeout}))
    assert stale[0], "a hold older than deploy_timeout is taken for dead"


def test_a_node_that_did_not_answer_is_not_judged():
    a, b = running_spec("a"), running_spec("b", "node2")
    assert recovery.reconcile(view([a, b], {"node2": [up("c-b")]})) == ([], [])


def test_instances_on_a_node_that_is_not_alive_are_deregistered_and_restored():
    a, b = running_spec("a"), running_spec("b", "node2")
    actions, found = recovery.reconcile(view([a, b], {"node1": [up("c-a")]}, alive=("node1",)))
    assert kinds(actions) == ["Deregister", "Restore"] and actions[0].instances == (b,)
    assert actions[1].groups == (("demo", "web"),) and "node node2 is not alive" in found[0]


def test_strays_older_than_stray_age_are_removed():
    a, b = running_spec("a"), running_spec("b", "node2")
    containers = {"node1": [up("c-a"), up("old"), up("young", age=5)], "node2": [up("c-b")]}
    actions, found = recovery.reconcile(view([a, b], containers))
    assert actions == [recovery.RemoveContainers("node1", ("old",))] and "old is not registered" in found[0]


def test_a_group_short_or_over_its_count_or_on_another_spec_is_brought_to_it():
    a, b = running_spec("a"), running_spec("b", "node2")
    both = {"node1": [up("c-a")], "node2": [up("c-b")]}
    for acc, why in ((accepted(3), "2 instances for 3 deployed"), (accepted(1), "2 instances for 1 deployed"),
                     (accepted(2, image="r/demo:2"), "2 not running the deployed spec")):
        actions, found = recovery.reconcile(view([a, b], both, accepted=acc))
        assert kinds(actions) == ["Restore"] and why in found[0], found
    # failed groups are not restored; nor groups with no accepted spec (left as they run)
    assert recovery.reconcile(view([a, b], both, accepted=accepted(3), failed=frozenset({("demo", "web")}))) == ([], [])
    assert recovery.reconcile(view([a, b], both, accepted={})) == ([], [])


def test_a_replacement_left_half_done_is_cleaned_up_once_its_start_job_ended():
    dead = running_spec("a", health="replacing")
    b = running_spec("b", "node2")
    p = Placement("demo", "web", "new1", "node1", "a", "c-a")
    containers = {"node1": [up("c-a", "exited"), up(p.new_container, age=3)], "node2": [up("c-b")]}
    assert recovery.reconcile(view([dead, b], containers, placements=[p], busy=frozenset({"node1"}))) == ([], [])
    actions, found = recovery.reconcile(view([dead, b], containers, placements=[p]))
    assert kinds(actions) == ["Deregister", "DropPlacements", "RemoveContainers", "Restore"]
    assert actions[0].instances == (dead,) and sorted(actions[2].containers) == sorted(["c-a", p.new_container])
    assert "left half done" in found[0]


def test_host_services_are_not_containers_to_reconcile():
    registry = Instance(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, "node1", "node1", "10.0.0.1", 5001, "passing")
    a, b = running_spec("a"), running_spec("b", "node2")
    assert recovery.reconcile(view([a, b, registry], {"node1": [up("c-a")], "node2": [up("c-b")]})) == ([], [])
