"""Deploying a group (bay_salt.scheduling.deployer) over the in-memory KV store
and a recording backend: scale up and down, rolls, failed health checks,
placement refusals; what KV holds after each. The same code runs for real
in tests/e2e/test_services.py."""

import pytest

from bay_salt.kv.records import Route
from bay_salt.model import names
from bay_salt.model.services import parse
from bay_salt.scheduling.backend import DeployError
from bay_salt.scheduling.deployer import Deployer
from bay_salt.scheduling.placement import PlacementError
from tests.support.fakes import MemoryStore, NodeRecorder

RAW = {"image": "r/web:1", "owners": ["t"], "health": {"http": "/healthz"}, "max_surge": 1,
       "groups": {"api": {"instances": 3, "cpu": 0.5, "memory": 64, "port": 8000, "listen": 10080}}}


def spec(**group):
    raw = {**RAW, "groups": {"api": {**RAW["groups"]["api"], **group}}}
    return parse({"web": raw})["web"]


@pytest.fixture
def env():
    store, backend, events = MemoryStore(), NodeRecorder(nodes=("node1", "node2", "node3")), []
    return store, backend, Deployer(backend, store, drain_seconds=0, log_event=lambda t, d: events.append(t)), events


def test_scale_up_spreads_and_registers_after_health(env):
    store, backend, d, events = env
    (report,) = d.deploy(spec())
    assert report.summary() == "web.api: scaled to 3 (+3 -0)"
    assert sorted(i.node for i in store.instances()) == ["node1", "node2", "node3"]
    assert Route.from_json(store.get(names.kv_route("web", "api"))).listen == 10080
    assert events == [names.TAG_DEPLOY_STARTED]
    assert d.deploy(spec())[0].summary() == "web.api: 3 instances, unchanged"


def test_scale_down_deregisters_before_it_stops(env):
    store, backend, d, events = env
    d.deploy(spec(instances=4))
    registered_at_stop = []
    stop = backend.stop

    def checked(node, containers):
        registered_at_stop.extend(i.container for i in store.instances() if i.container in containers)
        stop(node, containers)

    backend.stop = checked
    d.deploy(spec(instances=2))
    assert len(store.instances()) == 2 and registered_at_stop == []
    assert len({i.node for i in store.instances()}) == 2  # the spread stays


def test_every_node_starts_and_stops_its_share_at_once(env):
    """One start_all (and one stop_all) per step, naming every node: the nodes
    work in parallel, not one after another."""
    store, backend, d, events = env
    calls = []
    start_all, stop_all = backend.start_all, backend.stop_all
    backend.start_all = lambda starts: calls.append(("start", sorted(n for n, _g, _ids in starts))) or start_all(starts)
    backend.stop_all = lambda stops: calls.append(("stop", sorted(stops))) or stop_all(stops)
    d.deploy(spec(instances=9))
    d.deploy(spec(instances=3))
    assert calls == [("start", ["node1", "node2", "node3"]), ("stop", ["node1", "node2", "node3"])]
    assert len(store.instances()) == 3


def test_roll_replaces_max_surge_at_a_time(env):
    store, backend, d, events = env
    d.deploy(spec())
    old = {i.instance for i in store.instances()}
    (report,) = d.deploy(parse({"web": {**RAW, "image": "r/web:2"}})["web"])
    assert report.rolled and sorted(report.stopped) == sorted(old)
    assert [len(ids) for _, ids in backend.started[-3:]] == [1, 1, 1]
    assert {i.image for i in store.instances()} == {"r/web:2"} and not old & {i.instance for i in store.instances()}


def test_failing_new_version_stops_the_roll_and_old_ones_keep_serving(env):
    store, backend, d, events = env
    d.deploy(spec())
    before = store.items("bay/instances/")
    backend.healthy = False
    with pytest.raises(DeployError, match="did not pass the health check; roll stopped"):
        d.deploy(parse({"web": {**RAW, "image": "r/web:2"}})["web"])
    assert store.items("bay/instances/") == before


def test_a_group_that_does_not_fit_changes_nothing(env):
    store, backend, d, events = env
    d.deploy(spec())
    before = store.items("bay/")
    with pytest.raises(PlacementError, match=r"web\.api: cannot place \d+ of \d+ instances"):
        d.deploy(spec(instances=40))
    assert store.items("bay/") == before


def test_deploy_clears_a_failed_mark(env):
    store, backend, d, events = env
    from bay_salt.kv import store as kvstore

    store.apply([kvstore.op_set(names.kv_failed("web", "api"), "crash loop")])
    d.deploy(spec())
    assert store.failed("web", "api") is None
