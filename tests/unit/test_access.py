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
