"""Alerts in the `bay up` cluster: the bay_alerts engine on the master tells
a real SMTP server (aiosmtpd) and a real HTTP receiver on this machine,
reached on the cluster network's gateway.

* a single container kill sends nothing, nor does a silenced group kept down;
* every instance of a group killed and kept down past ``for`` sends its
  owners exactly one firing and one resolved notification, and the platform
  team nothing, though the salt-master (the alert process) restarts meanwhile;
* a stopped node component tells the platform team once.
"""

import threading
import time

import pytest

from bay_salt.model import names
from tests.e2e.helpers import converges, demo_image_service, eventually, leading_master
from tests.support.receivers import Receivers, gateway

SERVICE, GROUP, LISTEN = "alarm", "web", 10120  # its own frontends (other e2e services hold 10090, 10095)
#: the silence test's own group: its restarts do not add to web's crash-loop count
QUIET = "quiet"
FOR = 15
#: the rounds and the group wait of the alerts settings the tests give the cluster (Receivers.settings)
INTERVAL, GROUP_WAIT = 2, 2
#: ComponentDown's `for` in the tests (30 s by default: the rule is the same, the wait shorter)
COMPONENT_FOR = 5
#: after which a notification that should not come would have come: `for`, the group wait, three rounds
QUIET_AFTER = FOR + GROUP_WAIT + 3 * INTERVAL
OWNER = "owner-a"


@pytest.fixture(scope="module")
def inbox(cluster):
    with Receivers(gateway(cluster)) as r:
        cluster.set_alerts(r.settings([OWNER], interval=INTERVAL, group_wait=GROUP_WAIT,
                                      rules={"ComponentDown": {"for": COMPONENT_FOR}}))
        try:
            yield r.inbox
        finally:
            cluster.set_alerts({})


@pytest.fixture(scope="module")
def alarm(cluster, inbox):
    """A service of the demo's image owned by OWNER: alerted after FOR seconds
    below all of its instances (and not for its restarts: the tests make them)."""
    body = {"health": "demo", "liveness": "demo", "owners": [OWNER],
            "alerts": {"GroupUnhealthy": {"for": FOR, "threshold": 1}, "RestartsHigh": {"threshold": 1000}},
            "groups": {GROUP: {"instances": 2, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": LISTEN},
                       QUIET: {"instances": 1, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": LISTEN + 1}}}
    with demo_image_service(cluster, SERVICE, body, timeout=90):
        yield f"{SERVICE}.{GROUP}"


def kill(cluster, group=GROUP, everything=True):
    """Kill the group's running containers (all, or the first found)."""
    for n in cluster.nodes():
        node = cluster.client.containers.get(n.container)
        ids = node.exec_run(["docker", "ps", "-q", "--filter", f"label={names.LABEL_SERVICE}={SERVICE}",
                             "--filter", f"label={names.LABEL_GROUP}={group}"]).output.split()
        for cid in ids if everything else ids[:1]:
            node.exec_run(["docker", "kill", cid.decode()])
            if not everything:
                return


class Killer:
    """Keeps every instance of the group down (kills what comes up) until stopped."""

    def __init__(self, cluster, group=GROUP):
        self.cluster, self.group, self.stop = cluster, group, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            kill(self.cluster, self.group)
            self.stop.wait(0.5)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


def test_a_single_kill_and_a_silenced_outage_send_nothing(cluster, inbox, alarm):
    """One of web's two containers killed (replaced long before ``for``) and,
    at the same time, every instance of quiet kept down past ``for`` under a
    silence: nobody is told of either (one wait serves both)."""
    (sid,) = cluster.runner("bay.silence", f"service={SERVICE}", f"group={QUIET}", "duration=10m",
                            "reason=moving the database")
    began = time.time()
    try:
        kill(cluster, everything=False)
        with Killer(cluster, QUIET):  # down past the point where it would have fired, not silenced
            time.sleep(QUIET_AFTER)
        converges(cluster, 120, services=("demo", SERVICE))
        time.sleep(2 * INTERVAL)
        assert inbox.about(since=began, service=SERVICE) == []
        shown = cluster.runner("bay.alerts")
        assert any(s["id"] == sid and s["active"] for s in shown["silences"])
    finally:
        cluster.runner("bay.unsilence", sid)


def test_a_group_kept_down_tells_its_owners_once_and_a_restart_repeats_nothing(cluster, inbox, alarm):
    began = time.time()
    master = leading_master(cluster, "alerts")
    with Killer(cluster):
        eventually(lambda: inbox.about(since=began, receiver=OWNER, channel="webhook", status="firing"), FOR + 60,
                   f"{SERVICE}'s owners told it fires")
        told = time.time()
    # the alert process restarts while the alert fires (it is a salt-master engine): the group is
    # still down, its next start waits out the crash-loop back-off (by now 8 s or more). The kills
    # stop first: each restart they cause counts towards `crash_loop_restarts` (8), and a loaded
    # machine that takes long to fire and to restart the master would have the group failed
    # (it then never resolves; seen in CI at 6339ae3)
    assert master.exec_run(["systemctl", "restart", "salt-master"]).exit_code == 0
    took = told - began
    try:
        eventually(lambda: inbox.about(since=began, receiver=OWNER, channel="webhook", status="resolved"), 180,
                   f"{SERVICE}'s owners told it is resolved")
    except AssertionError as err:  # say what the group went through
        events = cluster.runner("bay.events", f"service={SERVICE}", "limit=30")
        raise AssertionError(f"{err}; told: {inbox.about(since=began, receiver=OWNER)}; events: {events}") from None
    converges(cluster, 90, services=("demo", SERVICE))
    time.sleep(10)  # a late duplicate would be here by now
    got = [(r["channel"], r["alertname"], r["status"]) for r in inbox.about(since=began, receiver=OWNER)]
    assert sorted(got) == [("email", "GroupUnhealthy", "firing"), ("email", "GroupUnhealthy", "resolved"),
                           ("webhook", "GroupUnhealthy", "firing"), ("webhook", "GroupUnhealthy", "resolved")], got
    assert inbox.about(since=began, receiver="platform", service=SERVICE) == []
    assert took < FOR + 2 + 30, f"told {took:.0f} s after the kills began"


def test_a_stopped_component_tells_the_platform_team_once(cluster, inbox):
    node3 = cluster.client.containers.get(cluster.nodes()[2].container)
    began = time.time()
    assert node3.exec_run(["systemctl", "stop", "cadvisor"]).exit_code == 0
    try:
        eventually(lambda: inbox.about(since=began, receiver="platform", alertname="ComponentDown", status="firing",
                                       channel="webhook"), 150, "the platform team told cadvisor is down")
        time.sleep(4 * INTERVAL)  # rounds later: still once
    finally:
        assert node3.exec_run(["systemctl", "start", "cadvisor"]).exit_code == 0
    eventually(lambda: inbox.about(since=began, receiver="platform", alertname="ComponentDown", status="resolved",
                                   channel="webhook"), 150, "the platform team told cadvisor is back")
    firing = inbox.about(since=began, alertname="ComponentDown", status="firing")
    assert sorted((r["channel"], r["receiver"]) for r in firing) == [("email", "platform"), ("webhook", "platform")]


