"""Docker's events about Bay containers, as the node agent (``bay-events``,
:mod:`bay_salt.node.events_agent`) forwards them to the master: a container died,
was OOM-killed, failed Docker's own health check, was paused (frozen: hung)
or started. Event driven: nothing waits for a polling interval."""

from __future__ import annotations

import logging

import docker

from bay_salt.model import names

log = logging.getLogger("bay.events")

#: Docker actions the node watcher forwards
ACTIONS = ("die", "oom", "kill", "health_status", "start", "pause")


def from_docker(event: dict, node: str) -> tuple[str, dict] | None:
    """``(tag, data)`` for a Docker event about a Bay container, else None."""
    if event.get("Type") != "container":
        return None
    attrs = (event.get("Actor") or {}).get("Attributes") or {}
    if names.LABEL_SERVICE not in attrs:
        return None
    action = event.get("Action", "")
    data = {
        "node": node,
        "service": attrs.get(names.LABEL_SERVICE),
        "group": attrs.get(names.LABEL_GROUP),
        "instance": attrs.get(names.LABEL_INSTANCE),
        "container": attrs.get("name"),
        "time_ns": event.get("timeNano"),
    }
    if action == "die":
        return names.TAG_CONTAINER_DIED, dict(data, exit_code=int(attrs.get("exitCode", -1)))
    if action == "oom":
        return names.TAG_CONTAINER_OOM, data
    if action.startswith("health_status") and action.endswith("unhealthy"):
        return names.TAG_CONTAINER_UNHEALTHY, data
    if action == "start":
        return names.TAG_CONTAINER_STARTED, data
    if action == "pause":
        return names.TAG_CONTAINER_PAUSED, data
    return None


def watch(client: docker.DockerClient, node: str, send) -> None:
    """Forward Bay container events with ``send(tag, data)`` until the stream ends."""
    stream = client.events(decode=True, filters={"type": "container", "label": [names.LABEL_SERVICE],
                                                  "event": list(ACTIONS)})
    for raw in stream:
        out = from_docker(raw, node)
        if out:
            tag, data = out
            send(tag, data)
            log.info("%s %s", tag, data.get("container"))
