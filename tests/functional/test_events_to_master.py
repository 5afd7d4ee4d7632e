"""The node agent's sender against a real salt-master and minion
(pytest-salt-factories): an event reaches the master's bus as the minion's
own (the master knows which node sent it), with the minion daemon stopped
too, and a master that does not answer makes a send fail at once rather
than hang (the sender keeps the event and tries again)."""

import time

import pytest

from bay_salt.node.sender import Sender, salt_master_sender


def test_an_event_reaches_the_master_as_the_minion(salt_master, salt_minion, event_listener):
    node, send = salt_master_sender(salt_minion.config_file, timeout=10)
    assert node == salt_minion.id
    start = time.time()
    send("bay/test/hello", {"node": node, "n": 1})
    matched = event_listener.wait_for_events([(salt_master.id, "bay/test/hello")], timeout=30, after_time=start)
    assert matched.found_all_events, matched
    event = next(iter(matched))
    assert event.data["id"] == salt_minion.id and event.data["data"] == {"node": node, "n": 1}


def test_the_minion_daemon_down_loses_nothing(salt_master, salt_minion, event_listener):
    node, send = salt_master_sender(salt_minion.config_file, timeout=10)
    start = time.time()
    with salt_minion.stopped():
        s = Sender(send)
        s.put("bay/test/while-down", {"node": node})
        s.drain(once=True)
    matched = event_listener.wait_for_events([(salt_master.id, "bay/test/while-down")], timeout=30, after_time=start)
    assert matched.found_all_events


def test_a_master_that_does_not_answer_fails_the_send_quickly(salt_minion, tmp_path):
    import yaml

    from tests.support.daemons import free_port

    with open(salt_minion.config_file) as fh:
        conf = yaml.safe_load(fh)
    conf["master_port"] = free_port()  # nobody listens there
    cfg = tmp_path / "minion"
    cfg.write_text(yaml.safe_dump(conf))
    node, send = salt_master_sender(str(cfg), timeout=2)
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - Salt's timeout or connection error, whichever comes
        send("bay/test/nowhere", {"node": node})
    assert time.monotonic() - started < 30
