"""
Bay service containers on this node (docker SDK): start with limits and
labels and wait for health, stop, list. A thin adapter over
:mod:`bay_salt.containers`.
"""

import concurrent.futures

try:
    import docker

    from bay_salt import containers

    HAS_LIBS = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - depends on the minion's Python
    HAS_LIBS = False
    IMPORT_ERROR = str(exc)

__virtualname__ = "bay_docker"


def __virtual__():
    if not HAS_LIBS:
        return (False, f"the docker SDK and bay_salt must be installed in the minion's Python: {IMPORT_ERROR}")
    return __virtualname__


def _client():
    return docker.from_env(timeout=120)


def run(group, instances, wait=True):
    """
    Start ``instances`` (ids) of ``group`` (a group's effective settings, as
    ``bay_salt.services.ServiceSpec.groups()`` gives them) and, with ``wait``,
    probe each on this node's address until healthy or its start period ends.

    CLI Example:

    .. code-block:: bash

        salt node1 bay_docker.run '{"service": "web", "group": "api", ...}' '["a1b2c3d4"]'
    """
    cfg = __salt__["bay.settings"]()
    client = _client()
    started = [
        containers.run(client, group, i, cfg["docker"]["log_max_size"], cfg["docker"]["log_max_file"])
        for i in instances
    ]
    address = cfg["node"]["address"]

    def probe(c):
        healthy = bool(c["host_port"]) and (
            not wait or containers.wait_healthy(address, c["host_port"], group.get("health"), client, c["container"])
        )
        return dict(c, healthy=healthy, address=address)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
        return list(pool.map(probe, started))


def stop(names, timeout=10):
    """
    Stop and remove the named service containers.

    CLI Example:

    .. code-block:: bash

        salt node1 bay_docker.stop '["bay-web-api-a1b2c3d4"]'
    """
    client = _client()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return dict(zip(names, pool.map(lambda n: containers.stop(client, n, timeout), names)))


def instances():
    """
    Bay service containers on this node with their labels, state and host port.

    CLI Example:

    .. code-block:: bash

        salt '*' bay_docker.instances
    """
    return containers.list_instances(_client())
