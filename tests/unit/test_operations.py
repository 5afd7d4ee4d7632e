"""The runner's operations (deploy, scale, plan, status) over the in-memory
store and a recording backend: only the service deployed is validated, each
group is held while it is worked on and recorded as accepted afterwards, and
status says what pillar holds that was not deployed."""

import copy

import pytest

from bay_salt.control import operations
from bay_salt.control.autoscale_round import load_state
from bay_salt.model import names
from bay_salt.model.services import SpecError
from tests.support.fakes import MemoryStore, NodeRecorder

DEMO = {"image": "r/demo:1", "owners": ["t"], "health": {"http": "/healthz"},
        "groups": {"web": {"instances": 2, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 10080}}}


class Backend(NodeRecorder):
    """The recording backend with the pillar the nodes hold and a store."""

    def __init__(self, pillar):
        super().__init__(nodes=("node1", "node2"))
        self.pillar, self.kv = pillar, MemoryStore()

    def services(self):
        return self.pillar

    def access(self):
        return ["root-team"], {"team-demo": ["bob"]}

    def store(self):
        return self.kv


def test_deploy_records_what_it_deployed_and_holds_the_group_meanwhile():
    b = Backend({"demo": DEMO})
    held = []
    start = b.start
    b.start = lambda node, g, ids: (held.append(b.kv.deploying()), start(node, g, ids))[1]
    out = operations.deploy(b, "demo")
    assert out["demo.web"]["summary"] == "demo.web: scaled to 2 (+2 -0)"
    assert held and ("demo", "web") in held[0] and b.kv.deploying() == {}
    acc = b.kv.accepted("demo", "web")
    assert acc.spec.instances == 2 and acc.spec.image == "r/demo:1" and not acc.adopted


def test_another_services_bad_spec_is_not_this_deploys_problem():
    b = Backend({"demo": DEMO, "broken": {"owners": ["t"], "groups": {"x": {"memory": "lots"}}}})
    operations.deploy(b, "demo")
    with pytest.raises(SpecError, match=r"broken\.x: .*memory"):
        operations.deploy(b, "broken")
    st = operations.status(b)
    assert st["demo.web"]["passing"] == 2 and st["demo.web"]["pillar"] is None


def test_a_frontend_another_service_deployed_is_refused():
    b = Backend({"demo": DEMO})
    operations.deploy(b, "demo")
    other = copy.deepcopy(DEMO)
    b.pillar["other"] = other
    with pytest.raises(SpecError, match=r"other\.web: listen: port 10080 is already the frontend of demo\.web"):
        operations.deploy(b, "other")
    assert b.kv.accepted("other", "web") is None


def test_status_says_what_pillar_holds_that_is_not_deployed():
    b = Backend({"demo": DEMO})
    assert operations.status(b)["demo.web"]["pillar"].startswith("not deployed yet")
    operations.deploy(b, "demo")
    b.pillar["demo"] = dict(DEMO, image="r/demo:2")
    assert operations.status(b)["demo.web"]["pillar"].startswith("differs from what is deployed")
    b.pillar["demo"] = dict(DEMO, groups={"web": dict(DEMO["groups"]["web"], memory="lots")})
    st = operations.status(b)["demo.web"]
    assert "memory" in st["pillar"] and st["deployed"] and st["desired"] == 2  # still running as deployed


def test_scaling_an_autoscaled_group_by_hand_is_where_the_autoscaler_goes_on_from():
    auto = copy.deepcopy(DEMO)
    auto["groups"]["web"]["autoscale"] = {"min": 1, "max": 5, "target_cpu": 0.5}
    b = Backend({"demo": auto})
    operations.deploy(b, "demo")
    operations.scale(b, "demo.web", 4)
    state, _ = load_state(b.kv, "demo", "web")
    assert state.desired == 4 and b.kv.accepted("demo", "web").spec.instances == 4
    assert b.kv.get(names.kv_scale("demo", "web"))


def test_drain_moves_everything_off_a_node_and_nothing_new_goes_there():
    b = Backend({"demo": DEMO})
    operations.deploy(b, "demo")
    node = b.kv.instances()[0].node
    out = operations.drain(b, node)
    assert out["demo.web"]["started"] and node not in {i.node for i in b.kv.instances()}
    assert len(b.kv.instances()) == 2 and b.kv.drained() == {node}
    operations.scale(b, "demo.web", 3)
    assert node not in {i.node for i in b.kv.instances()}  # drained: placed elsewhere


def test_a_node_that_does_not_answer_cannot_be_drained():
    b = Backend({"demo": DEMO})
    with pytest.raises(ValueError, match="no node 'node9' answers"):
        operations.drain(b, "node9")


def test_owners_operate_their_own_services_only():
    b = Backend({"demo": dict(DEMO, owners=["alice", "team-demo"]),
                 "other": dict(DEMO, owners=["mallory"], groups={"web": dict(DEMO["groups"]["web"], listen=10090)})})
    operations.deploy(b, "demo", user="alice")
    operations.scale(b, "demo.web", 3, user="bob")  # through team-demo
    with pytest.raises(operations.NotOwner, match="mallory may not operate service demo: its owners are alice"):
        operations.deploy(b, "demo", user="mallory")
    with pytest.raises(operations.NotOwner):
        operations.plan(b, "demo", user="mallory")
    operations.deploy(b, "other", user="root-team")  # the platform team: every service
    assert set(operations.status(b, user="mallory")) == {"other.web"}
    assert set(operations.status(b, user="sudo_ops")) == {"demo.web", "other.web"}
    # a pillar edit naming mallory does not make her an owner of what runs
    b.pillar["demo"] = dict(b.pillar["demo"], owners=["mallory"])
    with pytest.raises(operations.NotOwner):
        operations.deploy(b, "demo", user="mallory")
    with pytest.raises(operations.NotOwner, match="may not drain nodes"):
        operations.drain(b, "node1", user="alice")


def test_capabilities_given_back_are_deployed_by_the_platform_team_only():
    raw = dict(DEMO, owners=["alice"], security={"cap_add": ["NET_RAW"]})
    b = Backend({"demo": raw})
    with pytest.raises(operations.NotOwner, match=r"alice may not deploy demo.web: its spec gives capabilities back"):
        operations.deploy(b, "demo", user="alice")
    assert b.kv.instances() == []  # nothing started
    operations.deploy(b, "demo", user="root-team")
    assert b.kv.instances()
