"""bay-events: the node's watcher of the Docker event stream.

Follows Docker's events for Bay containers (die, oom, kill, health_status,
start) and fires each as a Salt event to the master at once, through the
local salt-minion (``event.send``), so the master knows which minion sent it.
Event driven: nothing waits for a polling interval.

    bay-events [--config /etc/salt/minion]
"""

from __future__ import annotations

import argparse
import logging
import time

import docker

from bay_salt.model import names

log = logging.getLogger("bay.events")

#: Docker actions the node watcher forwards
ACTIONS = ("die", "oom", "kill", "health_status", "start")


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bay-events", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="/etc/salt/minion")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import salt.client

    caller = salt.client.Caller(args.config)
    node = caller.opts["id"]

    def send(tag, data):
        if not caller.cmd("event.send", tag, data):
            log.error("could not send %s to the master", tag)

    while True:  # dockerd restarts end the stream: follow the new one
        try:
            watch(docker.from_env(timeout=None), node, send)
        except (docker.errors.DockerException, OSError) as err:
            log.warning("docker event stream: %s", err)
        time.sleep(1)


if __name__ == "__main__":
    raise SystemExit(main())
