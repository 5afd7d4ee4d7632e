"""What a node's metrics agent measures, as plain functions over what it read.

Each function takes what one source answered (cAdvisor's JSON, HAProxy's
``show stat`` CSV, psutil's counters, systemd's answers) and returns points
named by :mod:`bay_salt.model.names`. Counters become per-interval counts and
per-second rates through :class:`Rates`, which remembers the last reading.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from bay_salt.metrics.cadvisor import _stamp
from bay_salt.model import names

Point = tuple[str, tuple[float, float]]

#: the node's components the agent reports on (systemd unit names); 1 = active
COMPONENTS = ("docker", "consul", "haproxy", "salt-minion", "bay-lb-sync", "bay-events", "cadvisor", "bay-statsd")


class Rates:
    """Counters to rates. ``delta(key, value, now)`` is how much a counter grew
    since the last reading (a counter that went down was reset, e.g. HAProxy
    reloaded: the new value is the growth) and ``rate`` the same per second;
    both None at the first reading of a key. Keys not read for ``forget``
    seconds are dropped, so memory follows what exists now."""

    def __init__(self, forget: float = 600.0):
        self.last: dict[str, tuple[float, float]] = {}
        self.forget = forget

    def delta(self, key: str, value: float, now: float) -> float | None:
        prev = self.last.get(key)
        self.last[key] = (now, value)
        if prev is None or now <= prev[0]:
            return None
        return value - prev[1] if value >= prev[1] else value

    def rate(self, key: str, value: float, now: float) -> float | None:
        prev = self.last.get(key)
        d = self.delta(key, value, now)
        return None if d is None else d / (now - prev[0])

    def prune(self, now: float) -> None:
        for key in [k for k, (t, _) in self.last.items() if now - t > self.forget]:
            del self.last[key]


def healthy_ratio(passing: int, desired: int) -> float:
    """Passing instances over desired ones, 0..1; a group that wants none is healthy (1)."""
    if desired <= 0:
        return 1.0
    return max(0.0, min(1.0, passing / desired))


def _labels(info: dict) -> dict:
    return (info.get("spec") or {}).get("labels") or {}


def containers(cluster: str, payload: dict, now: float) -> list[Point]:
    """Every Bay container's CPU (cores), memory (working set and limit),
    network and disk throughput (bytes/s) from a cAdvisor ``/api/v1.3/docker/``
    answer; the rates are over its last two samples. Containers without Bay's
    labels (cAdvisor's own, the node's) are left out."""
    out: list[Point] = []
    for info in payload.values():
        lab = _labels(info)
        svc, grp, inst = lab.get(names.LABEL_SERVICE), lab.get(names.LABEL_GROUP), lab.get(names.LABEL_INSTANCE)
        stats = info.get("stats") or []
        if not (svc and grp and inst) or not stats:
            continue

        def path(what: str, svc=svc, grp=grp, inst=inst) -> str:
            return names.metric_container(cluster, svc, grp, inst, what)

        last = stats[-1]
        mem = last.get("memory") or {}
        out.append((path("memory_bytes"), (now, float(mem.get("working_set") or mem.get("usage") or 0))))
        limit = ((info.get("spec") or {}).get("memory") or {}).get("limit")
        if limit and limit < 2**62:  # cAdvisor says "unlimited" with a huge number
            out.append((path("memory_limit_bytes"), (now, float(limit))))
        if len(stats) >= 2:
            prev = stats[-2]
            dt = _stamp(last["timestamp"]) - _stamp(prev["timestamp"])
            if dt > 0:
                cpu = (last["cpu"]["usage"]["total"] - prev["cpu"]["usage"]["total"]) / 1e9 / dt
                out.append((path("cpu_cores"), (now, max(0.0, cpu))))
                for what, getter in (("net_rx_bps", _net("rx_bytes")), ("net_tx_bps", _net("tx_bytes")),
                                     ("disk_read_bps", _disk("Read")), ("disk_write_bps", _disk("Write"))):
                    a, b = getter(prev), getter(last)
                    if a is not None and b is not None and b >= a:
                        out.append((path(what), (now, (b - a) / dt)))
    return out


def _net(field: str):
    def get(sample: dict) -> float | None:
        net = sample.get("network") or {}
        ifaces = net.get("interfaces")
        if ifaces:
            return float(sum(i.get(field, 0) for i in ifaces))
        return float(net[field]) if field in net else None
    return get


def _disk(op: str):
    def get(sample: dict) -> float | None:
        io_bytes = (sample.get("diskio") or {}).get("io_service_bytes")
        if io_bytes is None:
            return None
        return float(sum((d.get("stats") or {}).get(op, 0) for d in io_bytes))
    return get


def parse_stat(csv_text: str) -> list[dict]:
    """HAProxy's ``show stat`` CSV (header ``# pxname,svname,...``) as dicts."""
    text = csv_text.lstrip()
    if text.startswith("#"):
        text = text[1:].lstrip()
    return list(csv.DictReader(io.StringIO(text)))


def _num(row: dict, key: str) -> float:
    try:
        return float(row.get(key) or 0)
    except ValueError:
        return 0.0


#: counters of a group's frontend and backend rows -> metric name (counts per interval)
FRONTEND_COUNTERS = {"req_tot": "requests", "hrsp_5xx": "errors_5xx", "bin": "bytes_in", "bout": "bytes_out",
                     "ereq": "request_errors"}
BACKEND_COUNTERS = {"econ": "connection_errors", "eresp": "response_errors", "wretr": "retries",
                    "wredis": "redispatches"}


def traffic(cluster: str, node: str, rows: Iterable[dict], rates: Rates, now: float) -> list[Point]:
    """Per group frontend (``SERVICE.GROUP``): requests (count per interval and
    ``request_rate`` per second), 5xx answers, connection failures, retries,
    redispatches, bytes, current sessions and the average response time (ms,
    HAProxy's over the last 1024 requests). HAProxy's own frontends are left
    out, and so is a group's row in an interval nothing went through it."""
    out: list[Point] = []
    for row in rows:
        px, sv = row.get("pxname", ""), row.get("svname", "")
        if not names.is_group_backend(px) or sv not in ("FRONTEND", "BACKEND"):
            continue
        service, group = px.split(".", 1)

        def path(what: str, service=service, group=group) -> str:
            return names.metric_traffic(cluster, service, group, node, what)

        counters = FRONTEND_COUNTERS if sv == "FRONTEND" else BACKEND_COUNTERS
        row_points: list[Point] = []
        active = _num(row, "scur") > 0
        for key, what in counters.items():
            prev = rates.last.get(path(what))
            d = rates.delta(path(what), _num(row, key), now)
            if d is None:
                continue
            active = active or d > 0
            row_points.append((path(what), (now, d)))
            if what == "requests":
                row_points.append((path("request_rate"), (now, d / (now - prev[0]))))
        if sv == "FRONTEND":
            row_points.append((path("sessions"), (now, _num(row, "scur"))))
        else:
            row_points.append((path("response_ms"), (now, _num(row, "rtime"))))
            row_points.append((path("servers_up"), (now, _num(row, "act"))))
        # a frontend nobody used this interval sends nothing (most of a large
        # cluster's node x group pairs): its graphs have gaps, not zeros
        if active:
            out += row_points
    return out


def server(cluster: str, node: str, sample: dict, rates: Rates, now: float) -> list[Point]:
    """A server's CPU (% busy over the interval), load, memory, disks and
    network from ``sample`` (:func:`bay_salt.metrics.agent.read_server`):
    ``cpu_busy``/``cpu_total`` cumulative seconds, ``load1``, ``mem_used``,
    ``mem_total``, ``disks`` {mount: (used, total)}, ``net_rx``/``net_tx`` bytes."""
    out: list[Point] = []

    def put(what: str, value: float | None) -> None:
        if value is not None:
            out.append((names.metric_node(cluster, node, what), (now, float(value))))

    busy = rates.delta(f"{node}:cpu_busy", sample["cpu_busy"], now)
    total = rates.delta(f"{node}:cpu_total", sample["cpu_total"], now)
    if busy is not None and total:
        put("cpu_percent", 100.0 * busy / total)
    put("load1", sample.get("load1"))
    put("memory_used_bytes", sample["mem_used"])
    put("memory_percent", 100.0 * sample["mem_used"] / sample["mem_total"] if sample["mem_total"] else None)
    for mount, (used, size) in sorted(sample.get("disks", {}).items()):
        label = "root" if mount == "/" else mount.strip("/")
        put(f"disk.{names.metric_part(label)}.used_bytes", used)
        put(f"disk.{names.metric_part(label)}.percent", 100.0 * used / size if size else None)
    put("net_rx_bps", rates.rate(f"{node}:net_rx", sample["net_rx"], now))
    put("net_tx_bps", rates.rate(f"{node}:net_tx", sample["net_tx"], now))
    return out


def components(cluster: str, node: str, states: dict[str, bool], now: float) -> list[Point]:
    """1 for a component that runs, 0 for one that does not."""
    return [(names.metric_node(cluster, node, f"components.{names.metric_part(c)}"), (now, 1.0 if up else 0.0))
            for c, up in sorted(states.items())]


def hygiene(cluster: str, node: str, state: dict, now: float) -> list[Point]:
    """What the node agent's last hygiene round found and removed, per kind
    (``hygiene.found.veth``, ``hygiene.removed.nat_rule``, ``hygiene.errors``),
    and how old that round is."""
    values = {f"hygiene.{k}": v for k, v in state["counts"].items()}
    values["hygiene.age_seconds"] = max(0.0, now - state["time"])
    return [(names.metric_node(cluster, node, k), (now, float(v))) for k, v in values.items()]
