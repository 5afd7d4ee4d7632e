"""Batched KV writes against a real Consul agent."""

import consul
import pytest

from bay_salt.kv import store as kv
from bay_salt.kv.records import Instance
from bay_salt.kv.store import ConsulStore
from bay_salt.model import names


def instances(n, service="feed", group="read"):
    return [Instance(service, group, f"i{k:04d}", f"node{k % 3 + 1}", f"127.0.0.{k % 3 + 1}", 31000 + k)
            for k in range(n)]


@pytest.fixture
def clean(consul_agent):
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
    yield consul_agent
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)


def test_thousand_instances_in_chunks_of_64(clean):
    batch = instances(1000)
    store = ConsulStore(clean)
    assert store.apply(kv.register_ops(batch)) == 16  # ceil(1000 / 64)
    found = store.instances("feed", "read")
    assert sorted(found, key=lambda i: i.instance) == batch
    assert store.apply(kv.deregister_ops(batch[:500])) == 8
    assert len(store.instances("feed")) == 500


def test_65_operations_in_one_transaction_are_refused_by_consul(clean):
    with pytest.raises(consul.ConsulException):
        clean.txn.put(kv.register_ops(instances(65)))


def test_a_failed_chunk_applies_nothing(clean):
    good = instances(3)
    store = ConsulStore(clean)
    store.apply(kv.register_ops(good[:1]))
    index, _ = clean.kv.get(good[0].key)
    stale_cas = kv.op_set(good[0].key, "changed", cas=int(index) + 1000)  # wrong index: the txn must roll back
    with pytest.raises(kv.TxnError):
        store.apply(kv.register_ops(good[1:]) + [stale_cas])
    assert [i.instance for i in store.instances()] == ["i0000"]


def test_consul_not_answering_is_one_line_naming_it():
    from tests.support.daemons import free_port

    store = ConsulStore(kv.client("127.0.0.1", free_port(), timeout=1))
    with pytest.raises(kv.Unavailable, match=r"Consul at 127\.0\.0\.1:\d+ does not answer"):
        store.instances()
    with pytest.raises(kv.Unavailable, match=r"^no Consul server answered \(127\.0\.0\.1: connection refused or "
                                             r"unreachable\)$"):
        kv.first_answering(["127.0.0.1"], free_port(), timeout=1)
