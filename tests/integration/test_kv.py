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


def test_a_registry_node_writes_its_record_only_when_kv_lacks_it(clean, monkeypatch, capsys):
    """bay-registry-register, as its timer runs it: a record deleted or changed
    by anything comes back; one that is there is not written again (no
    watcher of the routes wakes)."""
    import socket

    from bay_salt.registry import register
    from tests.helpers import TOKENS

    monkeypatch.setenv("CONSUL_HTTP_TOKEN", TOKENS["management"])
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        consul_port = clean.http.base_uri.rsplit(":", 1)[1]
        argv = ["--consul", f"http://127.0.0.1:{consul_port}", "--node", "node1", "--address", "127.0.0.1",
                "--port", str(port), "--listen", "5000", "--wait", "5"]
        key = register.instance("node1", "127.0.0.1", port).key

        assert register.main(argv) == 0 and "wrote" in capsys.readouterr().out
        index = clean.kv.get(key)[1]["ModifyIndex"]
        assert register.main(argv) == 0 and "registered already" in capsys.readouterr().out
        assert clean.kv.get(key)[1]["ModifyIndex"] == index

        clean.kv.delete(key)
        assert register.main(argv) == 0 and capsys.readouterr().out.endswith(f"(wrote {key})\n")
        clean.kv.put(key, "{}")
        assert register.main(argv) == 0
        assert ConsulStore(clean).instances(names.REGISTRY_SERVICE) == [register.instance("node1", "127.0.0.1", port)]
    # the registry not answering: nothing written, one line naming why
    clean.kv.delete(key)
    assert register.main([*argv[:-1], "1"]) == 1 and "gave up" in capsys.readouterr().out
    assert clean.kv.get(key)[1] is None
