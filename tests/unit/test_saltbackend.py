"""The master's Salt backend: a start is not published to a node whose
minion is away (a job published then never reaches it), and Salt's timeout
is its job check, not the start's whole duration."""

import pytest

from bay_salt.control.saltbackend import SaltBackend
from bay_salt.model.services import parse
from bay_salt.scheduling.backend import DeployError

GROUP = parse({"demo": {"image": "r/demo:1", "owners": ["t"], "groups": {
    "web": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 10080}}}})["demo"].groups()["web"]


class Local:
    def __init__(self):
        self.calls = []

    def cmd(self, tgt, fun, arg=(), timeout=None, **kwargs):
        self.calls.append((tgt, fun, timeout))
        return {tgt: [{"instance": "i1", "healthy": True}]}


def test_a_start_waits_for_the_nodes_minion_to_be_back():
    local, seen = Local(), iter([set(), {"node2"}, {"node1", "node2"}])
    b = SaltBackend(local, ["node1", "node2"], timeout=15, connected=lambda: next(seen), connect_wait=5)
    assert b.start("node1", GROUP, ["i1"]) == [{"instance": "i1", "healthy": True}]
    assert local.calls == [("node1", "bay_docker.run", 15)]


def test_a_start_on_a_node_whose_minion_stays_away_fails_in_one_line_without_publishing():
    local = Local()
    b = SaltBackend(local, ["node1"], connected=lambda: set(), connect_wait=0.5)
    with pytest.raises(DeployError, match=r"^demo.web on node1: its minion is not connected to the master"):
        b.start("node1", GROUP, ["i1"])
    assert local.calls == []
