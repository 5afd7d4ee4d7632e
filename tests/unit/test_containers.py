"""bay_salt.node.containers.wait_healthy: the start-up probe schedule (no clock
is read for a verdict: check and sleep are replaced)."""

import pytest

from bay_salt.host.sources import network_gateway
from bay_salt.model.services import Health
from bay_salt.node import containers

HEALTH = Health(http="/healthz", interval=1.0, timeout=0.5, rise=1, start_period=30.0)


@pytest.fixture
def probes(monkeypatch):
    """Answers the probes in turn from ``probes.answers``; records the sleeps."""
    state = {"answers": [], "sleeps": []}

    def check(address, port, health, timeout):
        return state["answers"].pop(0)

    monkeypatch.setattr(containers, "check", check)
    monkeypatch.setattr(containers.time, "sleep", state["sleeps"].append)
    return state


def test_probes_fast_at_first_then_back_off_to_the_cap(probes):
    probes["answers"] = [False] * 6 + [True]
    assert containers.wait_healthy("127.0.0.1", 8000, HEALTH)
    assert probes["sleeps"] == [0.02, 0.04, 0.08, 0.16, 0.25, 0.25]


def test_a_shorter_interval_caps_the_schedule(probes):
    probes["answers"] = [False] * 3 + [True]
    assert containers.wait_healthy("127.0.0.1", 8000, HEALTH.model_copy(update={"interval": 0.05}))
    assert probes["sleeps"] == [0.02, 0.04, 0.05]


def test_rise_counts_successes_at_the_starting_cadence(probes):
    probes["answers"] = [False, True, False, True, True]
    assert containers.wait_healthy("127.0.0.1", 8000, HEALTH.model_copy(update={"rise": 2}))
    # a success waits the cap before the next probe of its streak; a failure restarts it
    assert probes["sleeps"] == [0.02, 0.25, 0.25, 0.25]


def test_network_gateway_from_ipam_or_the_first_address_of_the_subnet():
    assert network_gateway({"IPAM": {"Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]}}) \
        == "172.18.0.1"
    # a fresh engine's default bridge names no gateway: Docker gives the bridge the subnet's first address
    assert network_gateway({"IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}}) == "172.17.0.1"
    with pytest.raises(ValueError, match="bridge has no gateway"):
        network_gateway({"Name": "bridge", "IPAM": {"Config": None}})
