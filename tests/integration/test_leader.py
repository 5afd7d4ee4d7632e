"""Leadership among masters against a real Consul: one lease holds the lock,
a silent holder is taken over, and a paused old leader's writes are fenced."""

import threading
import time

import pytest

from bay_salt.kv import store as kv
from bay_salt.kv.store import ConsulStore
from bay_salt.master import leader
from bay_salt.model import names

KEY = names.kv_leader("controller")
PROBE = f"{names.KV_PREFIX}/controller/probe"


@pytest.fixture
def consul_client(consul_agent):
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
    yield consul_agent
    for s in consul_agent.session.list()[1]:
        consul_agent.session.destroy(s["ID"])
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)

def lease(client, master, **kw):
    kw = {"beat": 0.2, "takeover": 1.5, **kw}
    return leader.Lease(lambda: ConsulStore(client), "controller", master, f"{master}.example", **kw)

def fenced(client, lease_):
    return ConsulStore(client, fence=lease_.fence)

def test_one_leads_the_other_stands_by_and_only_the_leader_writes(consul_client):
    a, b = lease(consul_client, "m1"), lease(consul_client, "m2")
    assert a.campaign()
    assert not b.try_acquire()
    assert leader.read(ConsulStore(consul_client), "controller").master == "m1"
    fenced(consul_client, a).apply([kv.op_set(PROBE, "from m1")])
    with pytest.raises(kv.TxnError):
        fenced(consul_client, b).apply([kv.op_set(PROBE, "from m2")])
    assert ConsulStore(consul_client).get(PROBE) == b"from m1"

def test_a_silent_leader_is_taken_over_and_its_late_writes_are_fenced(consul_client):
    a, b = lease(consul_client, "m1"), lease(consul_client, "m2")
    assert a.campaign()
    # a beats a few times, then goes silent (a paused process)
    for _ in range(3):
        time.sleep(0.2)
        a.beat()
    began = time.monotonic()
    assert b.campaign()
    took = time.monotonic() - began
    assert 1.5 <= took < 1.5 + leader.LOCK_DELAY + 3, took
    assert leader.read(ConsulStore(consul_client), "controller").master == "m2"
    # a wakes up: its writes do not land, and its next beat says it lost
    with pytest.raises(kv.TxnError):
        fenced(consul_client, a).apply([kv.op_set(PROBE, "late write of m1"), kv.op_delete(KEY)])
    assert ConsulStore(consul_client).get(PROBE) is None
    with pytest.raises(leader.Lost):
        a.beat()
    fenced(consul_client, b).apply([kv.op_set(PROBE, "from m2")])
    assert ConsulStore(consul_client).get(PROBE) == b"from m2"

def test_a_leader_keeps_the_lock_while_it_beats(consul_client):
    a, b = lease(consul_client, "m1"), lease(consul_client, "m2")
    assert a.campaign()
    stop = threading.Event()
    lost = []
    keeper = threading.Thread(target=a.keep, args=(lost.append, stop), daemon=True)
    keeper.start()
    try:
        stop_b = threading.Event()
        threading.Timer(4.0, stop_b.set).start()
        assert not b.campaign(stop_b)  # 4 s: more than twice the takeover, and the leader beat throughout
        assert lost == []
    finally:
        stop.set()
        keeper.join(5)

def test_a_leader_whose_session_is_ended_learns_it_within_a_beat(consul_client):
    a = lease(consul_client, "m1")
    assert a.campaign()
    lost = []
    keeper = threading.Thread(target=a.keep, args=(lost.append,), daemon=True)
    keeper.start()
    consul_client.session.destroy(a.session)
    keeper.join(5)
    assert lost and "session ended" in lost[0], lost

def test_a_restarted_master_takes_its_own_lock_back_at_once(consul_client):
    old = lease(consul_client, "m1")
    assert old.campaign()
    new = lease(consul_client, "m1", takeover=30)  # a silence would take 30 s
    began = time.monotonic()
    assert new.campaign()
    assert time.monotonic() - began < leader.LOCK_DELAY + 2
    with pytest.raises(kv.TxnError):
        fenced(consul_client, old).apply([kv.op_set(PROBE, "old")])

def test_end_hands_over_without_waiting(consul_client):
    a, b = lease(consul_client, "m1"), lease(consul_client, "m2", takeover=30)
    assert a.campaign()
    a.end()
    began = time.monotonic()
    assert b.campaign()
    assert time.monotonic() - began < leader.LOCK_DELAY + 2


def test_a_standby_outlasting_its_session_ttl_can_still_take_over(consul_client):
    a, b = lease(consul_client, "m1"), lease(consul_client, "m2")
    assert a.campaign()
    assert not b.try_acquire()
    consul_client.session.destroy(b.session)  # as Consul does 2 x TTL after a standby's last renewal
    consul_client.session.destroy(a.session)
    assert b.campaign()
    assert leader.read(ConsulStore(consul_client), "controller").master == "m2"
