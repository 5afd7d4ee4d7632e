"""The service containers' sandbox: what a Bay container may reach.

A service container leaves its node NATed to the node's address, and the
platform trusts node addresses (HDFS, Kafka's firewall, the registry's
storage). So on every node an nftables table (``inet``
:data:`~bay_salt.model.names.SANDBOX_TABLE`) filters what comes in on
Docker's bridge, before Docker's own rules:

* to the node itself (``input``): its HAProxy frontends (the services'
  ``listen`` ports), the log relay, statsd, and the host ports of its own
  instances (Docker's proxy answers those); nothing else (Consul, bay-logs,
  the registry, Kafka, carbon, ...);
* onwards (``forward``): other containers on the bridge, the instances
  registered in KV (address and host port, exactly), then what the site
  (``bay:sandbox:egress``) and the container's own group (``egress:``, the
  container's label) allow, never an address of the platform (nodes,
  masters, Consul servers, Kafka, HDFS, ``bay:sandbox:platform``); anything
  else is refused (TCP reset).

Replies to connections made from outside (HAProxy to an instance, a health
check) pass as established. :func:`render` is pure; :class:`Sandbox` feeds it
from KV (bay-lb-sync's watch), Docker (every start of a Bay container) and
``/etc/bay/sandbox.json`` and replaces the table in one nft transaction when what it renders changes, and
every :data:`RESYNC` seconds anyway (a table flushed by hand comes back).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from bay_salt.model import names
from bay_salt.model.services import Egress

log = logging.getLogger("bay.sandbox")

#: the node file the SLS writes (:func:`node_config`) and :class:`Sandbox` reads
CONFIG = Path("/etc/bay/sandbox.json")
#: seconds after which the table is written again even if nothing changed
RESYNC = 30.0
#: services that are the platform's own, whose records open nothing to containers
PLATFORM_SERVICES = frozenset({"bay-registry"})


class SandboxError(RuntimeError):
    """nft refused the table; the message says what it printed."""


@dataclass(frozen=True)
class Container:
    """A Bay container on this node, as the sandbox sees it."""

    name: str
    address: str
    #: its host ports (published)
    ports: tuple[int, ...] = ()
    egress: tuple[Egress, ...] = ()


@dataclass
class View:
    """Everything :func:`render` needs."""

    bridge: str
    relay_port: int
    statsd_port: int
    frontends: set[int] = field(default_factory=set)
    peers: set[tuple[str, int]] = field(default_factory=set)
    platform: set[str] = field(default_factory=set)
    egress: list[Egress] = field(default_factory=list)
    containers: list[Container] = field(default_factory=list)


def _hosts(url: str) -> list[str]:
    """Hosts of ``scheme://HOST[:PORT][,HOST[:PORT]...]/PATH``."""
    m = re.match(r"^[a-z]+://([^/]+)", url or "")
    if not m:
        return []
    out = []
    for part in m.group(1).split(","):
        host = part.rsplit("]", 1)[0].lstrip("[") if part.startswith("[") else part.rsplit(":", 1)[0]
        if host:
            out.append(host)
    return out


def node_config(cfg: dict, masters: Iterable[str]) -> dict:
    """``/etc/bay/sandbox.json`` from a node's validated settings and its
    minion's masters: whether the sandbox is on, the relay's and statsd's
    ports, the site's egress, and every address (or host name) of the platform."""
    sb = cfg["sandbox"]
    platform = {v["address"] for v in cfg["nodes"].values() if v.get("address")}
    platform |= set(cfg["consul"]["server_addresses"]) | set(masters)
    platform |= {h for server in (cfg["kafka"]["bootstrap_servers"] or "").split(",") for h in _hosts(f"k://{server}/")}
    platform |= set(_hosts(cfg["registry"]["storage"])) | set(_hosts(cfg["logs"]["archive"]["hdfs"]))
    if cfg.get("node", {}).get("address"):
        platform.add(cfg["node"]["address"])
    platform |= set(sb["platform"])
    return {"enabled": sb["enabled"], "relay_port": cfg["logs"]["relay_port"],
            "statsd_port": cfg["monitoring"]["statsd_port"], "platform": sorted(p for p in platform if p),
            "egress": [Egress.model_validate(e).model_dump(mode="json") for e in sb["egress"]]}


def _set(values: Iterable[str]) -> str:
    return "{ " + ", ".join(values) + " }"


def _egress_rule(e: Egress, source: str | None = None) -> str:
    src = f"ip saddr {source} " if source else ""
    return f"{src}ip daddr {e.to} {e.protocol} dport {_set(str(p) for p in e.ports)} accept"


def render(view: View) -> str:
    """The nft script that replaces the sandbox's table in one transaction."""
    t = names.SANDBOX_TABLE
    bridge = json.dumps(view.bridge)
    local = set(view.frontends) | {view.relay_port} | {p for c in view.containers for p in c.ports}
    lines = [f"table inet {t}", f"delete table inet {t}", f"table inet {t} {{"]
    lines += ["  set peers {", "    type ipv4_addr . inet_service"]
    if view.peers:
        lines.append("    elements = " + _set(f"{a} . {p}" for a, p in sorted(view.peers)))
    lines += ["  }", "  set platform {", "    type ipv4_addr", "    flags interval"]
    if view.platform:  # an interval set refuses overlapping elements: merged first
        merged = ipaddress.collapse_addresses(ipaddress.IPv4Network(a, strict=False) for a in view.platform)
        lines.append("    elements = " + _set(str(n) for n in merged))
    lines += ["  }"]
    lines += [
        "  chain input {",
        "    type filter hook input priority filter - 1; policy accept;",
        f"    iifname != {bridge} accept",
        "    ct state established,related accept",
        f"    tcp dport {_set(str(p) for p in sorted(local))} accept",
        f"    udp dport {view.statsd_port} accept",
        '    meta l4proto tcp counter reject with tcp reset comment "bay: the node\'s own ports"',
        '    counter reject with icmpx type admin-prohibited',
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter - 1; policy accept;",
        f"    iifname != {bridge} accept",
        "    ct state established,related accept",
        f"    oifname {bridge} accept",
        "    ip daddr . tcp dport @peers accept",
        '    ip daddr @platform meta l4proto tcp counter reject with tcp reset comment "bay: the platform"',
        "    ip daddr @platform counter reject with icmpx type admin-prohibited",
        "    jump egress",
        '    meta l4proto tcp counter reject with tcp reset comment "bay: not declared"',
        "    counter reject with icmpx type admin-prohibited",
        "  }",
        "  chain egress {",
    ]
    lines += [f"    {_egress_rule(e)}" for e in view.egress]
    for c in sorted(view.containers, key=lambda c: c.name):
        lines += [f"    {_egress_rule(e, c.address)}" for e in c.egress]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def removal() -> str:
    """The nft script that removes the table if it is there."""
    return f"table inet {names.SANDBOX_TABLE}\ndelete table inet {names.SANDBOX_TABLE}\n"


def nft(script: str) -> None:
    res = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if res.returncode != 0:
        raise SandboxError(f"nft refused the sandbox: {(res.stderr or res.stdout).strip()[:500]}")


def containers_of(client) -> tuple[str, list[Container]]:
    """(the bridge's interface, Bay's running containers on it), in one list call to Docker (no
    inspect per container: this runs on every container start)."""
    bridge = client.networks.get("bridge")
    iface = (bridge.attrs.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    out = []
    for c in client.api.containers(filters={"label": names.LABEL_SERVICE}):
        net = ((c.get("NetworkSettings") or {}).get("Networks") or {}).get("bridge") or {}
        if not net.get("IPAddress"):
            continue
        name = ((c.get("Names") or ["/"])[0]).lstrip("/")
        ports = tuple(sorted({int(p["PublicPort"]) for p in c.get("Ports") or [] if p.get("PublicPort")}))
        labels = c.get("Labels") or {}
        try:
            egress = tuple(Egress.model_validate(e) for e in json.loads(labels.get(names.LABEL_EGRESS) or "[]"))
        except ValueError as err:  # labels are set by the node from accepted specs: a bad one opens nothing
            log.warning("%s: egress label ignored: %s", name, err)
            egress = ()
        out.append(Container(name, net["IPAddress"], ports, egress))
    return iface, out


def resolve(hosts: Iterable[str]) -> set[str]:
    """IPv4 addresses of ``hosts`` (addresses and networks as they are; a
    name that does not resolve is left out, and logged)."""
    out = set()
    for h in hosts:
        try:
            out.add(str(ipaddress.IPv4Network(h, strict=False)))
            continue
        except ValueError:
            pass
        try:
            out |= {a[4][0] for a in socket.getaddrinfo(h, None, socket.AF_INET)}
        except OSError as err:
            log.warning("platform address %s does not resolve (%s): left out of the sandbox", h, err)
    return out


class Sandbox:
    """Keeps the table in line with KV (:meth:`update`, from bay-lb-sync's
    watch), Docker and the node's config file."""

    def __init__(self, docker_client, config: Path = CONFIG, apply=nft, clock=time.monotonic, events=None):
        self.docker = docker_client
        #: a client without a read timeout for the event stream (quiet for minutes on an idle node)
        self.events = events or docker_client
        self.config = config
        self.apply = apply
        self.clock = clock
        self.last = ""
        self.at = float("-inf")
        self.routes: list = []
        self.instances: list = []
        self._lock = threading.Lock()
        self._conf_text: str | None = None
        self._conf: dict = {}
        self._platform: set[str] = set()

    def follow_starts(self, stop: threading.Event) -> None:
        """Write the table again as Bay containers start (their egress opens
        then, before they are healthy or registered: a service may need what
        it declared to become healthy); a new event stream after a dockerd
        restart. Starts that come while a write is under way make one more
        write, not one each (a node starting 100 containers writes a few times)."""
        started = threading.Event()
        threading.Thread(target=self._write_on, args=(started, stop), name="sandbox-writes", daemon=True).start()
        while not stop.is_set():
            try:
                for _ in self.events.events(decode=True, filters={"type": "container", "event": "start",
                                                                   "label": names.LABEL_SERVICE}):
                    started.set()
            except (docker.errors.DockerException, OSError, ValueError) as err:
                log.warning("sandbox: docker events: %s", err)
            stop.wait(1)

    def _write_on(self, started: threading.Event, stop: threading.Event) -> None:
        while not stop.is_set():
            if not started.wait(1):
                continue
            started.clear()
            try:
                self.update()
            except (docker.errors.DockerException, OSError, SandboxError, ValueError) as err:
                log.warning("sandbox: %s", err)
                started.set()  # tried again
                stop.wait(1)

    def update(self, routes: list | None = None, instances: list | None = None) -> bool:
        """Render from the latest KV (``None``: as last seen) and what Docker
        runs now; True if the table was written."""
        with self._lock:
            return self._update(routes, instances)

    def _update(self, routes: list | None, instances: list | None) -> bool:
        if routes is not None:
            self.routes, self.instances = routes, instances or []
        try:
            text = self.config.read_text()
        except FileNotFoundError:
            return False  # the node's state has not written it yet: nothing to enforce from
        if text != self._conf_text:  # host names resolved once per version of the file, not on every KV change
            conf = json.loads(text)
            self._conf, self._conf_text = conf, text
            self._platform = resolve(conf.get("platform", []))
        conf = self._conf
        peers: set[tuple[str, int]] = set()
        if not conf.get("enabled", True):
            script = removal()
        else:
            bridge, containers = containers_of(self.docker)
            peers = {(i.address, i.port) for i in self.instances
                     if i.service not in PLATFORM_SERVICES and _ipv4(i.address)}
            view = View(bridge=bridge, relay_port=conf["relay_port"], statsd_port=conf["statsd_port"],
                        frontends={r.listen for r in self.routes if r.service not in PLATFORM_SERVICES},
                        peers=peers, platform=self._platform | {a for a, _ in peers},
                        egress=[Egress.model_validate(e) for e in conf.get("egress", [])], containers=containers)
            script = render(view)
        if script == self.last and self.clock() - self.at < RESYNC:
            return False
        self.apply(script)
        if script != self.last:
            log.info("sandbox %s", "removed (bay:sandbox:enabled is false)" if script == removal()
                     else f"written: {len(peers)} peers' instances, {script.count(' saddr ')} egress rules")
        self.last, self.at = script, self.clock()
        return True


def _ipv4(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv4Address)
    except ValueError:
        return False
