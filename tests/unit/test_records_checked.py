"""Records are data: a record that is not what its key says (written with a
token that may write only some keys, or by hand) is ignored by every reader,
and nothing in it reaches HAProxy's Runtime API or a container's exec."""

import json

import pytest

from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Instance, Route, instance_at, route_at
from bay_salt.model import names
from tests.support.fakes import MemoryStore

GOOD = Instance("demo", "web", "c3f50d4e", "node1", "10.0.0.1", 31000, "passing", container="ab12")
REG = names.kv_instances_prefix(names.REGISTRY_SERVICE, names.REGISTRY_GROUP)


def raw(**changes):
    d = json.loads(GOOD.to_json())
    d.update(changes)
    return json.dumps(d)


@pytest.mark.parametrize("key,value,why", [
    # the registry's token writes under bay/instances/bay-registry/: a record there naming demo.web
    (f"{REG}node1", raw(), "stored at"),
    (GOOD.key, raw(address="10.0.0.1 weight 0; shutdown frontend demo-web"), "not an IP address"),
    (GOOD.key, raw(port="31000;x"), "not a TCP port"),
    (GOOD.key, raw(port=0), "not a TCP port"),
    (GOOD.key, raw(node="../node2"), "not a minion id"),
    (GOOD.key, raw(container="x; rm -rf /"), "not a container id"),
    (names.kv_instance("demo", "web", "a b"), raw(instance="a b"), "not an instance id"),
    (names.kv_instance("Demo;", "web", "c3f50d4e"), raw(service="Demo;"), "not a service or group name"),
])
def test_an_instance_record_that_is_not_what_its_key_says_is_refused(key, value, why):
    with pytest.raises(ValueError, match=why):
        instance_at(key, value)


def test_a_route_is_checked_against_its_key():
    r = Route("demo", "web", 10080, {"http": "/"}, {"exec": ["true"]})
    assert route_at(r.key, r.to_json()) == r
    reg = names.kv_route(names.REGISTRY_SERVICE, names.REGISTRY_GROUP)
    with pytest.raises(ValueError, match="stored at"):  # a liveness exec for demo.web through the registry's key
        route_at(reg, r.to_json())
    with pytest.raises(ValueError, match="not a mapping"):
        route_at(r.key, json.dumps({"service": "demo", "group": "web", "listen": 10080, "health": "x"}))


def test_every_reader_ignores_what_is_not_what_its_key_says():
    store = MemoryStore()
    forged = json.loads(GOOD.to_json())
    store.apply([kvstore.op_put(GOOD), kvstore.op_set(f"{REG}node1", json.dumps(forged)),
                 kvstore.op_set(names.kv_route(names.REGISTRY_SERVICE, names.REGISTRY_GROUP),
                                Route("demo", "web", 10080).to_json()),
                 kvstore.op_put(Route("demo", "web", 10080))])
    assert store.instances() == [GOOD]
    assert store.instance(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, "node1") is None
    assert store.routes() == [Route("demo", "web", 10080)]
    routes, instances = store.routing()
    assert instances == [GOOD] and routes == [Route("demo", "web", 10080)]
