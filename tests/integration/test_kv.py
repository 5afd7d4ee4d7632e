"""Batched KV writes against a real Consul agent."""

import contextlib
import socket

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
    """bay-registry-register as the unit's start runs it: a record that is
    there is not written again (no watcher of the routes wakes); one missing
    or changed is; the registry not answering, nothing is."""
    from bay_salt.registry import register
    from tests.helpers import TOKENS

    monkeypatch.setenv("CONSUL_HTTP_TOKEN", TOKENS["management"])
    with listening() as port:
        argv = ["--consul", f"http://127.0.0.1:{consul_port(clean)}", "--node", "node1", "--address", "127.0.0.1",
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
    clean.kv.delete(key)
    assert register.main([*argv[:-1], "1"]) == 1 and "gave up" in capsys.readouterr().out
    assert clean.kv.get(key)[1] is None


def test_the_keeper_puts_a_record_back_at_once_and_otherwise_writes_nothing(clean, monkeypatch, capsys):
    """bay-registry-keep: whatever takes the instance's record out or changes
    it, it is back within a second or two; the route too, by the next wait."""
    import threading
    import time

    from bay_salt.kv.store import client
    from bay_salt.registry import register
    from tests.helpers import TOKENS
    from tests.support.daemons import wait_for

    store = ConsulStore(client("127.0.0.1", int(consul_port(clean)), timeout=20, token=TOKENS["management"]))
    with listening() as port:
        records = [register.route(5000), register.instance("node1", "127.0.0.1", port)]
        route, inst = (r.key for r in records)
        stop = threading.Event()
        keeper = threading.Thread(target=register.keep, args=(store, records, lambda: register.probe(
            None, "127.0.0.1", port), stop), kwargs={"wait": 3, "pause": 0.5})
        keeper.start()
        try:
            wait_for(lambda: clean.kv.get(inst)[1] and clean.kv.get(route)[1], 10, "the first registration")
            index = clean.kv.get(inst)[1]["ModifyIndex"]
            time.sleep(4)  # a blocking query ran out: nothing was written
            assert clean.kv.get(inst)[1]["ModifyIndex"] == index

            t = time.monotonic()
            clean.kv.delete(inst)
            wait_for(lambda: clean.kv.get(inst)[1], 5, "the instance put back")
            assert time.monotonic() - t < 2
            clean.kv.put(inst, "{}")
            wait_for(lambda: clean.kv.get(inst)[1]["Value"] == records[1].to_json().encode(), 5, "changed back")
            clean.kv.delete(route)
            wait_for(lambda: clean.kv.get(route)[1], 8, "the route put back, by the next wait")
        finally:
            stop.set()
            keeper.join(10)
    assert not keeper.is_alive()
    assert "put back" in capsys.readouterr().out


def consul_port(c) -> str:
    return c.http.base_uri.rsplit(":", 1)[1]


@contextlib.contextmanager
def listening():
    """A port that accepts connections (a registry instance that answers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]
