import json

from bay_salt.kv.records import Health, Instance
from bay_salt.model.services import parse
from bay_salt.scheduling import placement
from bay_salt.scheduling.planning import fill, plan_group, short_by


def rec(i, spec="v1"):
    return Instance("web", "api", i, "node1", "127.0.0.1", 1000, "passing", spec=spec)


def test_unchanged_group_has_no_changes():
    p = plan_group([rec("a"), rec("b")], 2, "v1")
    assert not p.changes and p.keep == ["a", "b"]


def test_scale_up_and_down():
    assert plan_group([rec("a")], 3, "v1").start == 2
    p = plan_group([rec("a"), rec("b"), rec("c")], 1, "v1")
    assert p.keep == ["a"] and p.remove == ["b", "c"] and p.start == 0


def test_roll_replaces_every_outdated_instance():
    p = plan_group([rec("a", "v1"), rec("b", "v1")], 2, "v2")
    assert p.start == 2 and p.replace == ["a", "b"] and p.keep == []


def test_half_rolled_group_resumes():
    p = plan_group([rec("a", "v2"), rec("b", "v1"), rec("c", "v1")], 3, "v2")
    assert p.keep == ["a"] and p.start == 2 and p.replace == ["b", "c"]


def test_instance_records_from_a_newer_writer_still_read():
    """Master and nodes upgrade one at a time: fields a reader does not know are ignored."""
    rec = Instance("s", "g", "i1", "n1", "10.0.0.1", 1, "passing", restarts=(1.0, 2.0))
    data = json.loads(rec.to_json())
    assert data["health"] == "passing"  # the enum is written as its value
    assert Instance.from_json(json.dumps(dict(data, future_field={"x": 1}))) == rec
    assert rec.health is Health.PASSING
    del data["restarts"]  # and an older writer's record reads with no restarts
    assert Instance.from_json(json.dumps(data)).restarts == ()


def test_scale_down_keeps_the_spread():
    """Removed first from the node holding the most of the group."""
    recs = [Instance("web", "api", i, n, "127.0.0.1", 1000, "passing", spec="v1")
            for i, n in (("a", "node1"), ("b", "node1"), ("c", "node1"), ("d", "node2"), ("e", "node3"))]
    p = plan_group(recs, 3, "v1")
    assert sorted(p.remove) == ["b", "c"] and p.keep == ["a", "d", "e"]


def test_only_a_group_that_merely_lacks_instances_counts_as_short():
    assert short_by(plan_group([rec("a")], 3, "v1")) == 2
    assert short_by(plan_group([rec("a", "v1")], 2, "v2")) == 0  # a roll: the deploy's way
    assert short_by(plan_group([rec("a"), rec("b")], 1, "v1")) == 0  # too many


def test_fill_places_every_short_group_on_one_view_of_the_nodes_spread_and_whole():
    groups = parse({"s": {"image": "r/s:1", "owners": ["t"], "groups": {
        "a": {"instances": 3, "cpu": 1, "memory": 64, "port": 80, "listen": 10080},
        "b": {"instances": 2, "cpu": 1, "memory": 64, "port": 80, "listen": 10081}}}})["s"].groups()
    nodes = [placement.Node("n1", 2, 1024), placement.Node("n2", 2, 1024)]
    ids = iter(f"i{k}" for k in range(10))
    out = fill([(groups["a"], 2), (groups["b"], 3)], nodes, lambda: next(ids))
    # a's two spread over both nodes; b's three no longer fit in the two CPUs left: refused whole
    assert [(n, g.name, i) for n, g, i in out.starts] == [("n1", "s.a", ["i0"]), ("n2", "s.a", ["i1"])]
    assert list(out.refused) == ["s.b"]
    assert sum(n.used_cpus for n in nodes) == 2
