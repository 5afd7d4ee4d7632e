"""Who may operate a service: the one ownership check that deploys, logs and
alerts use (each had its own, and they disagreed about ``UNKNOWN`` and
``sudo_*``).

The platform team (``bay:admins``) and the master's own users (``salt-run``
as root, through sudo, by orchestration: ``LOCAL_USERS``, ``sudo_*``, or no
user at all) operate every service; anyone else only the services whose
owners name them, directly or through a team."""

from __future__ import annotations


class NotOwner(PermissionError):
    """The user may not operate this service; the message names who may."""


#: users that act on the master itself (salt-run as root, sudo, orchestration)
LOCAL_USERS = frozenset({"root", "UNKNOWN"})


def people(owners: list[str], teams: dict[str, list[str]]) -> set[str]:
    """The people ``owners`` names: people directly, and each team's members."""
    return {p for owner in owners for p in teams.get(owner, [owner])}


def is_platform(user: str | None, admins: list[str]) -> bool:
    """The platform team or the master's own users: they operate everything."""
    return user is None or user in LOCAL_USERS or user.startswith("sudo_") or user in admins


def may_operate(user: str | None, owners: list[str], admins: list[str], teams: dict[str, list[str]]) -> bool:
    """The platform team and the master's own users operate every service; others only those they own."""
    return is_platform(user, admins) or user in people(owners, teams)
