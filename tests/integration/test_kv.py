"""Batched KV writes against a real Consul agent."""

import consul
import pytest

from bay_salt import kv, names


def instances(n, service="feed", group="read"):
    return [kv.Instance(service, group, f"i{k:04d}", f"node{k % 3 + 1}", f"127.0.0.{k % 3 + 1}", 31000 + k)
            for k in range(n)]


@pytest.fixture
def clean(consul_agent):
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
    yield consul_agent
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)


def test_thousand_instances_in_chunks_of_64(clean):
    batch = instances(1000)
    assert kv.apply(clean, kv.register_ops(batch)) == 16  # ceil(1000 / 64)
    _, found = kv.read_instances(clean, "feed", "read")
    assert sorted(found, key=lambda i: i.instance) == batch
    assert kv.apply(clean, kv.deregister_ops(batch[:500])) == 8
    assert len(kv.read_instances(clean, "feed")[1]) == 500


def test_65_operations_in_one_transaction_are_refused_by_consul(clean):
    with pytest.raises(consul.ConsulException):
        clean.txn.put(kv.register_ops(instances(65)))


def test_a_failed_chunk_applies_nothing(clean):
    good = instances(3)
    kv.apply(clean, kv.register_ops(good[:1]))
    index, _ = clean.kv.get(good[0].key)
    stale_cas = kv.op_set(good[0].key, "changed", cas=int(index) + 1000)  # wrong index: the txn must roll back
    with pytest.raises(kv.TxnError):
        kv.apply(clean, kv.register_ops(good[1:]) + [stale_cas])
    assert [i.instance for i in kv.read_instances(clean)[1]] == ["i0000"]
