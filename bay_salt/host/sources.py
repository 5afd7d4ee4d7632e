"""Docker's view of Bay's service containers on this host: which container
(service, group, instance) has a bridge address, and a network's gateway.
The metrics agent's statsd relay and the log relay name their senders by it."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time

import docker

from bay_salt.model import names

log = logging.getLogger("bay.containers")


def network_gateway(network) -> str:
    """The gateway address of a Docker network (``network``: the SDK's
    Network or its ``attrs``): the one its IPAM config names, or, where the
    engine names none (a fresh engine's default ``bridge``), the first
    address of its subnet, which Docker gives the bridge itself."""
    attrs = network if isinstance(network, dict) else network.attrs
    configs = (attrs.get("IPAM") or {}).get("Config") or []
    for conf in configs:
        if conf.get("Gateway"):
            return conf["Gateway"].split("/")[0]
    for conf in configs:
        if conf.get("Subnet"):
            return str(next(ipaddress.ip_network(conf["Subnet"], strict=False).hosts()))
    raise ValueError(f"Docker network {attrs.get('Name', '?')} has no gateway and no subnet in its IPAM config")


class ContainerSources:
    """Which Bay container (service, group, instance) has a bridge address,
    from the Docker API; looked up again on a miss, at most every ``refresh``
    seconds. The metrics agent's statsd relay and the log relay name senders by it.

    An address is forgotten as soon as its container dies (Docker's event
    stream, with ``follow``): Docker gives a freed address to the next
    container it starts, which must not be taken for the one that had it."""

    def __init__(self, refresh: float = 5.0, follow: bool = True):
        self.client = docker.from_env(timeout=10)
        self.refresh = refresh
        self.by_ip: dict[str, tuple[str, str, str]] = {}
        self.ids: dict[str, str] = {}  # address -> container id
        self.loaded = 0.0
        self._lock = threading.Lock()
        if follow:
            threading.Thread(target=self._follow, name="container-ends", daemon=True).start()

    def gateway(self) -> str:
        return network_gateway(self.client.networks.get("bridge"))

    def owner(self, ip: str, fresh: bool = False) -> tuple[str, str, str] | None:
        """(service, group, instance) of the container at ``ip`` (``fresh``:
        ask Docker again on a miss even if it was asked a moment ago)."""
        with self._lock:
            if ip not in self.by_ip and (fresh or time.monotonic() - self.loaded > self.refresh):
                self.load()
            return self.by_ip.get(ip)

    def lookup(self, ip: str) -> tuple[str, str] | None:
        found = self.owner(ip)
        return found[:2] if found else None

    def forget(self, container_id: str) -> None:
        """``container_id`` ended: its address is nobody's until Docker lists it again."""
        with self._lock:
            for ip in [ip for ip, cid in self.ids.items() if cid == container_id]:
                self.by_ip.pop(ip, None)
                self.ids.pop(ip, None)

    def _follow(self) -> None:
        """Forget each container's address as it dies; a new stream after a dockerd
        restart, and everything forgotten then (ends may have been missed)."""
        events = docker.from_env(timeout=None)  # quiet for minutes on an idle node: no read timeout
        while True:
            try:
                for e in events.events(decode=True, filters={"type": "container", "event": ["die", "destroy"],
                                                             "label": names.LABEL_SERVICE}):
                    self.forget(e.get("id") or e.get("Actor", {}).get("ID", ""))
            except (docker.errors.DockerException, OSError, ValueError) as err:
                log.warning("container addresses: docker events: %s", err)
            with self._lock:
                self.by_ip, self.ids = {}, {}
            time.sleep(1)

    def load(self) -> None:
        self.loaded = time.monotonic()
        found, ids = {}, {}
        for c in self.client.api.containers(filters={"label": names.LABEL_SERVICE}):  # one call, no inspects
            lab = c.get("Labels") or {}
            for net in ((c.get("NetworkSettings") or {}).get("Networks") or {}).values():
                if net.get("IPAddress"):
                    found[net["IPAddress"]] = (lab[names.LABEL_SERVICE], lab.get(names.LABEL_GROUP, "_"),
                                               lab.get(names.LABEL_INSTANCE, "_"))
                    ids[net["IPAddress"]] = c["Id"]
        self.by_ip, self.ids = found, ids
