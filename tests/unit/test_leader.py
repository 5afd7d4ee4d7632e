"""A fenced store starts every transaction with its fence, and keeps each
under Consul's 64 operations; leader records read back or are nobody."""

import pytest

from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Leader, read_leader
from bay_salt.kv.store import Servers
from bay_salt.model import names
from tests.support.fakes import MemoryStore


class Recording(MemoryStore):
    def __init__(self):
        super().__init__()
        self.sent = []

    def txn(self, ops):
        self.sent.append(ops)
        super().txn([o for o in ops if o["KV"]["Verb"] != "check-session"])


def test_every_transaction_of_a_fenced_store_starts_with_the_fence():
    s = Recording()
    fence = {"KV": {"Verb": "check-session", "Key": names.kv_leader("controller"), "Session": "abc"}}
    s.fence = lambda: [fence]
    assert s.apply([kvstore.op_set(f"bay/x/{k}", "v") for k in range(130)]) == 3  # 63 + 63 + 4
    assert [len(t) for t in s.sent] == [64, 64, 5]
    assert all(t[0] == fence for t in s.sent)
    assert len(s.keys("bay/x/")) == 130


def test_a_store_whose_fence_refuses_writes_nothing():
    from bay_salt.master.leader import Lost

    s = Recording()

    def fence():
        raise Lost("this master does not lead the controller")

    s.fence = fence
    with pytest.raises(kvstore.TxnError, match="does not lead"):
        s.apply([kvstore.op_set("bay/x", "v")])
    assert s.sent == [] and s.keys() == []


def test_leader_records_round_trip_and_garbage_is_nobody():
    s = MemoryStore()
    assert read_leader(s, "controller") is None
    held = Leader("master2", "bay-default-master2", 10.0, 12.5)
    s.apply([kvstore.op_set(names.kv_leader("controller"), held.to_json())])
    assert read_leader(s, "controller") == held
    s.apply([kvstore.op_set(names.kv_leader("alerts"), "{not json")])
    assert read_leader(s, "alerts") is None
    with pytest.raises(ValueError, match="no leader role"):
        names.kv_leader("registry")


def test_a_standby_finds_consul_from_the_masters_own_pillar_without_asking_the_nodes(monkeypatch):
    """A master just started stands by at once: the lock's Consul comes from its own pillar (the
    backend's site), not from a node report its reconnecting minions would make it wait for."""
    from bay_salt.master.reports import NodeReports

    class SiteOnly:
        def consul_servers(self):
            return Servers(["10.0.0.2", "10.0.0.3"], 8500)

        def __getattr__(self, name):
            raise AssertionError(f"{name}: a node was asked")

    reports = NodeReports({"conf_file": "/nonexistent"})
    asked = []
    monkeypatch.setattr(reports, "backend", lambda: asked.append(1) or SiteOnly())
    assert reports.consul_servers() == Servers(["10.0.0.2", "10.0.0.3"], 8500)
    assert reports.consul_servers() == Servers(["10.0.0.2", "10.0.0.3"], 8500) and len(asked) == 1  # kept
