"""Events signed with the node's own minion key: only the node an event
names can have sent it (an events list may claim any id)."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bay_salt.control.engine import NodeKeys
from bay_salt.control.loop import ControlLoop
from bay_salt.model import envelope, names
from bay_salt.model.settings import Controller
from tests.support.fakes import MemoryStore

DATA = {"node": "node1", "service": "demo", "group": "web", "instance": "abc", "exit_code": 137}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    pki = tmp_path_factory.mktemp("pki")
    (pki / "minions").mkdir()
    out = {}
    for node in ("node1", "node2"):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        (pki / "minions" / node).write_bytes(pem)
        out[node] = envelope.load_private(k.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                                          serialization.NoEncryption()))
    return str(pki), out


def event(sender, data, sig):
    return {"id": sender, "tag": names.TAG_CONTAINER_DIED, "data": data, "cmd": "_minion_event", envelope.FIELD: sig}


def test_a_node_signs_for_itself_and_no_other(keys):
    pki, k = keys
    nk = NodeKeys(pki)
    tag = names.TAG_CONTAINER_DIED
    assert nk.authentic(tag, event("node1", DATA, envelope.sign(k["node1"], "node1", tag, DATA))) == (True, "")
    # root on node2 claims node1's id (an events list fires whatever id it holds)
    ok, why = nk.authentic(tag, event("node1", DATA, envelope.sign(k["node2"], "node1", tag, DATA)))
    assert not ok and "not node1's" in why
    # a signed event changed on the way: another tag, other data
    sig = envelope.sign(k["node1"], "node1", names.TAG_INSTANCE_READY, DATA)
    assert not nk.authentic(tag, event("node1", DATA, sig))[0]
    assert not nk.authentic(tag, event("node1", dict(DATA, instance="other"), envelope.sign(k["node1"], "node1",
                                                                                              tag, DATA)))[0]
    assert nk.authentic(tag, event("node1", DATA, None)) == (False, "event claiming to be from node1 is not signed")
    assert nk.authentic(tag, event("node1", DATA, "%%%"))[0] is False
    assert nk.authentic(tag, event("node9", DATA, "x")) == (False, "no accepted key for node9")
    assert "not a minion id" in nk.authentic(tag, event("../minions/node1", DATA, "x"))[1]


def test_the_loop_rejects_an_unsigned_event_and_says_so(keys):
    pki, _ = keys
    fired = []
    loop = ControlLoop(MemoryStore(), None, lambda t, d: fired.append((t, d)), lambda s, g: None,
                       lambda: Controller(), authentic=NodeKeys(pki).authentic)
    assert loop.handle(names.TAG_CONTAINER_DIED, event("node1", DATA, None)) is False
    assert fired and fired[0][0] == names.TAG_EVENT_REJECTED and "not signed" in fired[0][1]["reason"]
