"""
Bay runner: deploy, scale and inspect services declared in pillar under
``bay:services``. A thin adapter over :mod:`bay_salt.controller`.
"""

import logging

import salt.client
import salt.utils.minions
from salt.exceptions import SaltInvocationError

try:
    import consul

    from bay_salt import controller
    from bay_salt.deploy import DeployError
    from bay_salt.services import SpecError

    HAS_BAY = True
except ImportError:  # pragma: no cover
    HAS_BAY = False

log = logging.getLogger(__name__)

__virtualname__ = "bay"


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs the salt-master")
    return __virtualname__


def _backend():
    # only the minions connected now: a call never waits out a dead node's timeout
    connected = sorted(salt.utils.minions.CkMinions(__opts__).connected_ids())
    return controller.SaltBackend(salt.client.get_local_client(__opts__["conf_file"]), connected or "*")


def _event(tag, data):
    log.info("%s %s", tag, data)
    __salt__["event.send"](tag, data)


def deploy(name):
    """
    Deploy service ``name``: every group to its declared instances and spec
    (scale, roll). An invalid spec or a group that does not fit changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run bay.deploy web
    """
    try:
        return controller.deploy(_backend(), name, event=_event)
    except (SpecError, ValueError, DeployError) as exc:
        raise SaltInvocationError(str(exc)) from None
    except consul.ConsulException as exc:
        raise SaltInvocationError(f"Consul: {exc}") from None


def plan(name):
    """
    What ``bay.deploy NAME`` would do, changing nothing (per group: instances
    to start and stop, whether it is a roll). Fails like deploy would.

    CLI Example:

    .. code-block:: bash

        salt-run bay.plan web
    """
    try:
        return controller.plan(_backend(), name)
    except (SpecError, ValueError, DeployError) as exc:
        raise SaltInvocationError(str(exc)) from None
    except consul.ConsulException as exc:
        raise SaltInvocationError(f"Consul: {exc}") from None


def scale(target, count):
    """
    Scale one group (``SERVICE.GROUP``) to ``count`` instances now. Pillar
    keeps its declared count for the next ``bay.deploy``.

    CLI Example:

    .. code-block:: bash

        salt-run bay.scale web.api 5
    """
    service, _, group = str(target).partition(".")
    try:
        count = int(count)
        if not group or count < 0:
            raise ValueError(f"usage: bay.scale SERVICE.GROUP COUNT (got {target!r} {count})")
        return controller.deploy(_backend(), service, {group: count}, event=_event)
    except (SpecError, ValueError, DeployError) as exc:
        raise SaltInvocationError(str(exc)) from None
    except consul.ConsulException as exc:
        raise SaltInvocationError(f"Consul: {exc}") from None


def status(name=None):
    """
    Desired and registered instances of every group (or of service ``name``).

    CLI Example:

    .. code-block:: bash

        salt-run bay.status
        salt-run bay.status web
    """
    try:
        return controller.status(_backend(), name)
    except (SpecError, DeployError) as exc:
        raise SaltInvocationError(str(exc)) from None
    except consul.ConsulException as exc:
        raise SaltInvocationError(f"Consul: {exc}") from None
