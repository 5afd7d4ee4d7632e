"""A service's life after its first deploy (revisions, rollback, scale of the
accepted spec, remove, restart, describe, the journal) over the in-memory
store and the recording backend of test_operations."""

import copy
import functools

import pytest

from bay_salt.control import history, journal, lifecycle, operations
from bay_salt.model import names
from bay_salt.scheduling.deployer import Deployer
from tests.unit.test_operations import DEMO, Backend


@pytest.fixture(autouse=True)
def no_drain_wait(monkeypatch):
    """The deployer's drain pause (1 s per batch) is not what these tests look at."""
    for mod in (operations, lifecycle):
        monkeypatch.setattr(mod, "Deployer", functools.partial(Deployer, drain_seconds=0))


class LifeBackend(Backend):
    def __init__(self, pillar):
        super().__init__(pillar)
        self.kept = {}

    def kept_all(self, service, group, timeout=5):
        return self.kept


def edited(**changes):
    raw = copy.deepcopy(DEMO)
    raw.update(changes)
    return raw


def test_each_deploy_that_changes_a_spec_is_a_revision_with_who_and_when():
    b = LifeBackend({"demo": edited(owners=["alice"])})
    operations.deploy(b, "demo", user="alice")
    operations.deploy(b, "demo", user="alice")  # nothing changed: no revision
    b.pillar["demo"] = edited(image="r/demo:2", owners=["alice"])
    operations.deploy(b, "demo", user="root-team")
    revs = lifecycle.revisions(b, "demo")
    assert [(r["revision"], r["action"], r["by"]) for r in revs] == [(1, "deploy", "alice"), (2, "deploy", "root-team")]
    assert revs[1]["groups"]["web"]["image"] == "r/demo:2" and revs[0]["at"] <= revs[1]["at"]


def test_rollback_brings_back_the_previous_spec_and_image_at_todays_count():
    b = LifeBackend({"demo": DEMO})
    operations.deploy(b, "demo")
    b.pillar["demo"] = edited(image="r/demo:2", env={"MODE": "new"})
    operations.deploy(b, "demo")
    operations.scale(b, "demo.web", 3)
    out = lifecycle.rollback(b, "demo", user="root-team")
    assert "rolled" in out["demo.web"]["summary"]
    acc = b.kv.accepted("demo", "web")
    assert acc.spec.image == "r/demo:1" and acc.spec.env == {} and acc.spec.instances == 3
    assert {i.image for i in b.kv.instances()} == {"r/demo:1"} and len(b.kv.instances()) == 3
    last = history.revisions(b.kv, "demo")[-1]
    assert (last.revision, last.action, last.source, last.by) == (3, "rollback", 1, "root-team")
    lifecycle.rollback(b, "demo", to=2)  # and forward again
    assert b.kv.accepted("demo", "web").spec.image == "r/demo:2"


def test_rollback_names_what_is_missing():
    b = LifeBackend({"demo": DEMO})
    with pytest.raises(ValueError, match="nothing to roll back to"):
        lifecycle.rollback(b, "demo")
    operations.deploy(b, "demo")
    with pytest.raises(ValueError, match=r"demo: no revision 7 \(kept: 1; bay history demo\)"):
        lifecycle.rollback(b, "demo", to=7)
    with pytest.raises(ValueError, match="a service name"):
        lifecycle.rollback(b, "../x")


def test_scale_changes_the_count_of_the_accepted_spec_only():
    b = LifeBackend({"demo": DEMO})
    operations.deploy(b, "demo")
    b.pillar["demo"] = edited(image="r/demo:9")  # edited, never deployed
    operations.scale(b, "demo.web", 4)
    acc = b.kv.accepted("demo", "web")
    assert acc.spec.instances == 4 and acc.spec.image == "r/demo:1"
    assert {i.image for i in b.kv.instances()} == {"r/demo:1"}
    with pytest.raises(ValueError, match=r"demo.api is not deployed \(demo runs web\)"):
        operations.scale(b, "demo.api", 2)
    with pytest.raises(ValueError, match="name a group as SERVICE.GROUP"):
        operations.scale(b, "demo", 2)


def test_remove_leaves_no_instance_record_route_or_spec_and_is_a_revision():
    b = LifeBackend({"demo": DEMO})
    operations.deploy(b, "demo")
    running = {c for _, cs in [(n, [i.container for i in b.kv.instances()]) for n in (1,)] for c in cs}
    out = lifecycle.remove(b, "demo", user="root-team")
    assert out["demo.web"]["summary"] == "demo.web: removed (-2)"
    assert b.kv.instances("demo") == [] and b.kv.accepted("demo", "web") is None
    assert b.kv.get(names.kv_route("demo", "web")) is None and b.kv.deploying() == {}
    assert {c for _, cs in b.stopped for c in cs} == running
    assert not [c for c in b.containers("node1") + b.containers("node2") if c.get("service") == "demo"]
    last = history.revisions(b.kv, "demo")[-1]
    assert (last.action, last.groups, last.removed) == ("remove", {}, ("web",))
    assert operations.status(b)["demo.web"]["pillar"].startswith("not deployed yet")
    with pytest.raises(ValueError, match="demo is not deployed"):
        lifecycle.remove(b, "demo")
    lifecycle.rollback(b, "demo", to=1)  # a removed service comes back from its history
    assert len(b.kv.instances("demo")) == 2


def test_remove_one_group_keeps_the_others():
    raw = edited(groups={"web": DEMO["groups"]["web"], "api": dict(DEMO["groups"]["web"], listen=10081)})
    b = LifeBackend({"demo": raw})
    operations.deploy(b, "demo")
    lifecycle.remove(b, "demo.api")
    assert b.kv.accepted("demo", "api") is None and len(b.kv.instances("demo", "web")) == 2
    assert set(history.revisions(b.kv, "demo")[-1].groups) == {"web"}
    with pytest.raises(ValueError, match="--purge removes a whole service"):
        lifecycle.remove(b, "demo.web", purge=True)


def test_only_owners_change_a_services_life():
    b = LifeBackend({"demo": edited(owners=["alice"])})
    operations.deploy(b, "demo", user="alice")
    for call in (lambda: lifecycle.remove(b, "demo", user="mallory"),
                 lambda: lifecycle.restart(b, "demo.web", user="mallory"),
                 lambda: lifecycle.rollback(b, "demo", user="mallory"),
                 lambda: lifecycle.describe(b, "demo.web", user="mallory"),
                 lambda: lifecycle.revisions(b, "demo", user="mallory"),
                 lambda: operations.scale(b, "demo.web", 5, user="mallory")):
        with pytest.raises(operations.NotOwner):
            call()
    assert len(b.kv.instances()) == 2
    lifecycle.remove(b, "demo", user="alice")
    with pytest.raises(operations.NotOwner):  # removed: still only its last owners
        lifecycle.rollback(b, "demo", to=1, user="mallory")


def test_restart_replaces_every_instance_as_a_roll():
    b = LifeBackend({"demo": DEMO})
    operations.deploy(b, "demo")
    before = {i.instance for i in b.kv.instances()}
    out = lifecycle.restart(b, "demo.web")
    after = {i.instance for i in b.kv.instances()}
    assert len(after) == 2 and not before & after
    assert "rolled" in out["demo.web"]["summary"]
    # the new ones run the current spec: the next deploy changes nothing
    assert operations.deploy(b, "demo")["demo.web"]["summary"] == "demo.web: 2 instances, unchanged"


def test_describe_and_the_journal():
    b = LifeBackend({"demo": edited(owners=["alice"])})
    operations.deploy(b, "demo", user="alice")
    b.kept = {"node1": [{"instance": "dead1", "exit_code": 137, "oom_killed": True, "finished_at": "2026-12-06T10:00:00Z",
                         "kept_at": 1.0}]}
    d = lifecycle.describe(b, "demo.web")
    assert d["desired"] == 2 and d["passing"] == 2 and d["revision"] == 1 and d["spec"]["image"] == "r/demo:1"
    assert d["exits"][0]["exit_code"] == 137 and d["exits"][0]["oom_killed"]
    assert any(e["tag"] == names.TAG_SERVICE_CHANGED for e in d["events"])
    one = d["instances"][0]["instance"]
    single = lifecycle.describe(b, f"demo.web/{one}")
    assert [i["instance"] for i in single["instances"]] == [one]
    assert single["passing"] == single["desired"] == 2  # one instance shown, the group's counts (not degraded)
    with pytest.raises(ValueError, match="no such instance"):
        lifecycle.describe(b, "demo.web/nope")
    journal.put(b.kv, names.TAG_NODE_LOST, {"node": "node2"})
    evs = lifecycle.events(b, user="root-team")
    assert [e["tag"] for e in evs][-1] == names.TAG_NODE_LOST
    mine = lifecycle.events(b, user="alice")  # an owner: no platform events, only services they operate
    assert mine == [] or all(journal.service_of(e["data"]) == "demo" for e in mine)
    newest = evs[-1]["key"]
    assert lifecycle.events(b, after=newest, user="root-team") == []
    with pytest.raises(ValueError, match="a key from an earlier answer"):
        lifecycle.events(b, after="bay/specs/x")


def test_the_journal_keeps_the_newest():
    b = LifeBackend({})
    for k in range(12):
        journal.put(b.kv, "bay/x", {"n": k}, now=1000.0 + k)
    assert journal.prune(b.kv, keep=5) == 7
    assert [e["data"]["n"] for e in journal.read(b.kv)] == [7, 8, 9, 10, 11]
    assert [e["data"]["n"] for e in journal.read(b.kv, limit=2)] == [10, 11]


def test_revisions_are_capped_and_plan_names_each_change():
    b = LifeBackend({"demo": DEMO})
    for k in range(history.KEEP + 3):
        b.pillar["demo"] = edited(image=f"r/demo:{k}")
        operations.deploy(b, "demo")
    kept = history.revisions(b.kv, "demo")
    assert len(kept) == history.KEEP and kept[-1].revision == history.KEEP + 3
    b.pillar["demo"] = edited(image="r/demo:new", env={"A": "1"})
    plan = operations.plan(b, "demo")["demo.web"]
    assert f"image: r/demo:{history.KEEP + 2} -> r/demo:new" in plan["changes"] and "env: A" in plan["changes"]
    assert b.kv.accepted("demo", "web").spec.image == f"r/demo:{history.KEEP + 2}"  # nothing changed
