"""``bay-metrics``: the node's metrics agent.

Every ``interval`` seconds (the finest Graphite retention) it reads the
node's containers from cAdvisor (named by Bay's labels), the server's CPU,
memory, disks and network, the state of the node's components and the
traffic of every group frontend in HAProxy, and hands the points to a
:class:`~bay_salt.metrics.carbon.Shipper` (bounded: when carbon is down the
oldest points go, the agent's memory does not grow).

It also carries services' own statsd metrics: it listens for statsd's UDP
protocol on the address containers reach their node at (Docker's bridge
gateway), puts ``SERVICE.GROUP.NODE.`` in front of each metric by the
sender's address (a service cannot write into another's names), and forwards
them to the node's statsd on loopback; statsd flushes into this agent's line
receiver on loopback, and the agent ships those points with its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import socket
import socketserver
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from bay_salt.host.sources import ContainerSources
from bay_salt.metrics import carbon, collect, graphite
from bay_salt.model import names
from bay_salt.util import periodic

log = logging.getLogger("bay.metrics")


@dataclass
class Config:
    cluster: str
    node: str
    carbon: carbon.Target
    interval: float = 10.0
    #: Bay's carbon-caches on the monitoring node (HAProxy serves the k-th on carbon's port + k)
    carbon_caches: int = 1
    cadvisor_port: int = 8080
    haproxy_socket: str = "/run/haproxy/admin.sock"
    disks: list[str] = field(default_factory=lambda: ["/"])
    components: list[str] = field(default_factory=lambda: list(collect.COMPONENTS))
    buffer_points: int = 100_000
    #: statsd: where containers send (empty host: Docker's bridge gateway), and the node's statsd on loopback
    statsd_listen_port: int = 8125
    statsd_listen_host: str = ""
    statsd_port: int = 8126
    #: the line receiver statsd flushes into (loopback)
    relay_port: int = 2013

    @classmethod
    def load(cls, path: str) -> Config:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        data["carbon"] = carbon.Target(**data["carbon"])
        return cls(**data)


def read_server(disks: list[str]) -> dict:
    """The server's cumulative CPU seconds, load, memory, disks and network (psutil)."""
    import psutil

    cpu = psutil.cpu_times()
    idle = cpu.idle + getattr(cpu, "iowait", 0.0)
    total = sum(cpu)
    mem = psutil.virtual_memory()
    net = psutil.net_io_counters(pernic=True)
    rx = sum(v.bytes_recv for k, v in net.items() if k != "lo")
    tx = sum(v.bytes_sent for k, v in net.items() if k != "lo")
    out_disks = {}
    for mount in disks:
        try:
            du = psutil.disk_usage(mount)
            out_disks[mount] = (du.used, du.total)
        except OSError:
            pass
    return {"cpu_busy": total - idle, "cpu_total": total, "load1": os.getloadavg()[0],
            "mem_used": mem.total - mem.available, "mem_total": mem.total, "disks": out_disks,
            "net_rx": rx, "net_tx": tx}


def read_components(units: list[str]) -> dict[str, bool]:
    """``systemctl is-active`` of each unit (one call for all)."""
    try:
        res = subprocess.run(["systemctl", "is-active", *units], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = res.stdout.split()
    return {u: s == "active" for u, s in zip(units, states)} if len(states) == len(units) else {}


def read_cadvisor(port: int, timeout: float = 3.0) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1.3/docker/", timeout=timeout) as resp:
        return json.load(resp)


def read_hygiene(path: str = names.HYGIENE_STATE) -> dict | None:
    """bay-events' last hygiene round (:mod:`bay_salt.node.hygiene`), or None."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read_haproxy(socket_path: str) -> list[dict]:
    from bay_salt.host.haproxy_runtime import RuntimeAPI

    return collect.parse_stat(RuntimeAPI(socket_path, timeout=3.0).execute("show stat"))


class Agent:
    def __init__(self, cfg: Config, shipper: carbon.Shipper | carbon.Shards | None = None):
        self.cfg = cfg
        self.shipper = shipper or carbon.open_shipper(graphite.cache_targets(cfg.carbon, cfg.carbon_caches),
                                                      capacity=cfg.buffer_points)
        self.rates = collect.Rates()
        self.failing: dict[str, str] = {}
        self.relayed = 0
        self.statsd_dropped = 0

    def _guard(self, source: str, fn):
        """A source that fails gives no points this round, and one log line per change."""
        try:
            out = fn()
        except Exception as err:  # noqa: BLE001 - one source never stops the others
            msg = str(err) or type(err).__name__
            if self.failing.get(source) != msg:
                log.warning("%s: %s (no %s metrics until it answers)", source, msg, source)
            self.failing[source] = msg
            return None
        if source in self.failing:
            log.info("%s answers again", source)
            del self.failing[source]
        return out

    def collect(self, now: float) -> list[collect.Point]:
        c = self.cfg
        t0 = time.process_time()
        w0 = time.monotonic()
        points: list[collect.Point] = []
        payload = self._guard("cAdvisor", lambda: read_cadvisor(c.cadvisor_port))
        if payload is not None:
            points += collect.containers(c.cluster, payload, now)
        rows = self._guard("HAProxy", lambda: read_haproxy(c.haproxy_socket))
        if rows is not None:
            points += collect.traffic(c.cluster, c.node, rows, self.rates, now)
        sample = self._guard("server", lambda: read_server(c.disks))
        if sample is not None:
            points += collect.server(c.cluster, c.node, sample, self.rates, now)
        states = self._guard("systemd", lambda: read_components(c.components))
        if states:
            points += collect.components(c.cluster, c.node, states, now)
        last = read_hygiene()  # what bay-events found and removed last (none before its first round)
        if last:
            points += collect.hygiene(c.cluster, c.node, last, now)
        self.rates.prune(now)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        own = {"agent.collect_ms": (time.monotonic() - w0) * 1000, "agent.collect_cpu_ms": (time.process_time() - t0) * 1000,
               "agent.cpu_seconds": usage.ru_utime + usage.ru_stime, "agent.rss_bytes": _rss_bytes(),
               "agent.queued": self.shipper.pending(), "agent.sent": self.shipper.sent,
               "agent.dropped": self.shipper.dropped, "agent.statsd_relayed": self.relayed,
               "agent.statsd_dropped": self.statsd_dropped, "agent.points": len(points)}
        points += [(names.metric_node(c.cluster, c.node, k), (now, float(v))) for k, v in own.items()]
        return points

    def run_forever(self) -> None:
        self.shipper.start()
        iv = self.cfg.interval
        while True:
            # on the interval's boundaries: one point per whisper slot
            now = periodic.sleep_to_next(iv)
            self.shipper.put(self.collect(now))

    # --- statsd ---------------------------------------------------------
    def statsd_relay(self, sources) -> threading.Thread:
        """Listen for statsd on the bridge gateway, prefix by sender, forward to statsd."""
        c = self.cfg
        host = c.statsd_listen_host or sources.gateway()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((host, c.statsd_listen_port))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        log.info("statsd for containers on %s:%d (UDP), forwarded to statsd on 127.0.0.1:%d",
                 host, c.statsd_listen_port, c.statsd_port)

        def loop():
            while True:
                data, (addr, _) = rx.recvfrom(65535)
                owner = sources.lookup(addr)
                if owner is None:
                    self.statsd_dropped += 1
                    continue
                out = prefix_statsd(data, owner + (c.node,))
                if out:
                    tx.sendto(out, ("127.0.0.1", c.statsd_port))
                    self.relayed += 1

        t = threading.Thread(target=loop, name="bay-statsd-relay", daemon=True)
        t.start()
        return t

    def line_receiver(self) -> socketserver.ThreadingTCPServer:
        """carbon's line protocol on loopback (statsd flushes here)."""
        agent = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                batch = []
                for raw in self.rfile:
                    p = carbon.parse_plaintext(raw.decode(errors="replace"))
                    if p is not None:
                        batch.append(p)
                    if len(batch) >= 1000:
                        agent.shipper.put(batch)
                        batch = []
                agent.shipper.put(batch)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        srv = socketserver.ThreadingTCPServer(("127.0.0.1", self.cfg.relay_port), Handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, name="bay-line-receiver", daemon=True).start()
        return srv


def prefix_statsd(packet: bytes, owner: tuple[str, ...]) -> bytes:
    """Each ``name:value|type`` line of a statsd packet with ``SERVICE.GROUP.NODE.``
    in front of its name; lines that are not statsd are dropped."""
    prefix = ".".join(names.metric_part(p) for p in owner) + "."
    out = []
    for line in packet.decode(errors="replace").splitlines():
        name, sep, rest = line.strip().partition(":")
        if not sep or not name or "|" not in rest:
            continue
        clean = ".".join(names.metric_part(p) for p in name.split(".") if p)
        out.append(prefix + clean + ":" + rest)
    return "\n".join(out).encode()


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return float(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bay-metrics", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="/etc/bay/metrics.json")
    ap.add_argument("--no-statsd", action="store_true", help="no statsd relay (no Docker on this host)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = Config.load(args.config)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise SystemExit(f"bay-metrics: {args.config}: {err}") from None
    agent = Agent(cfg)
    agent.line_receiver()
    if not args.no_statsd:
        # Docker's bridge may not be there yet at boot: retried until it is
        while True:
            try:
                agent.statsd_relay(ContainerSources())
                break
            except Exception as err:  # noqa: BLE001 - Docker not up yet
                log.warning("statsd relay not started yet: %s", err)
                time.sleep(5)
    log.info("bay-metrics on %s: every %ss to carbon at %s", cfg.node, cfg.interval, cfg.carbon)
    agent.run_forever()


if __name__ == "__main__":  # pragma: no cover
    main()
