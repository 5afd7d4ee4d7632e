"""One ownership rule for deploys, logs and alerts."""

from bay_salt.alerts import operations as alert_ops
from bay_salt.model import access

TEAMS = {"team-shop": ["alice"]}


def test_the_platform_and_the_masters_own_users_operate_everything():
    for user in (None, "root", "UNKNOWN", "sudo_bob", "carol"):
        assert access.may_operate(user, ["team-shop"], ["carol"], TEAMS), user


def test_owners_directly_or_by_team_and_nobody_else():
    assert access.may_operate("alice", ["team-shop"], [], TEAMS)
    assert access.may_operate("dave", ["dave"], [], TEAMS)
    assert not access.may_operate("mallory", ["team-shop"], [], TEAMS)


def test_alerts_follow_the_same_rule():
    owners = {"shop": ["team-shop"]}
    platform_alert = {"alertname": "NodeLost", "node": "node2"}
    for user in ("UNKNOWN", "sudo_bob", "carol"):  # UNKNOWN and sudo_* saw no platform alert before
        assert alert_ops._sees(user, platform_alert, owners, ["carol"], TEAMS), user
    assert alert_ops._sees("alice", {"service": "shop"}, owners, ["carol"], TEAMS)
    assert not alert_ops._sees("alice", platform_alert, owners, ["carol"], TEAMS)
    assert not alert_ops._sees("mallory", {"service": "shop"}, owners, ["carol"], TEAMS)


def test_silences_follow_the_same_rule():
    """A silence of every service (``service=*``) is the platform's (and so are failed deliveries):
    sudo_* and UNKNOWN (the master's own users) are the platform too, as for deploys and logs."""
    import pytest

    from tests.support.fakes import MemoryStore

    class Backend:
        def __init__(self):
            self.kv = MemoryStore()

        def services(self):
            return {"shop": {"owners": ["team-shop"]}}

        def access(self):
            return ["carol"], TEAMS

        def store(self):
            return self.kv

    b = Backend()
    for user in ("sudo_bob", "UNKNOWN", "carol", None):
        assert alert_ops.silence(b, ["service=*"], "1h", "maintenance", user), user
    with pytest.raises(access.NotOwner):
        alert_ops.silence(b, ["service=*"], "1h", "maintenance", "alice")
    assert alert_ops.silence(b, ["service=shop"], "1h", "deploying", "alice")
