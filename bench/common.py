"""What the benchmarks share: percentiles, the 3-node bench cluster, hey, and
the real daemons the tests start too (tests/support/daemons.py)."""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import yaml

CHECKOUT = Path(__file__).resolve().parents[1]
if str(CHECKOUT) not in sys.path:  # benches run as `python bench/NAME.py`: the test support lives beside them
    sys.path.insert(0, str(CHECKOUT))

from bay_salt.cluster.local import LocalCluster  # noqa: E402
from tests.e2e.helpers import demo_image_service  # noqa: E402
from tests.support.daemons import Daemon, free_port, start_consul, start_minidfs, wait_for  # noqa: E402

__all__ = ["CHECKOUT", "first_restarts", "Daemon", "LocalCluster", "bench_cluster", "demo_image_service", "free_port",
           "hey_counts", "pct", "start_consul", "start_minidfs", "up_cluster", "wait_for"]


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def bench_cluster(name: str, nodes: int = 3) -> LocalCluster:
    """The named cluster, brought up if it does not exist, with hey on every node."""
    cluster = LocalCluster(name)
    if not cluster.nodes():
        cluster.up(nodes)
    for n in cluster.nodes():
        cluster.client.containers.get(n.container).exec_run(["sh", "-c", "command -v hey || apt-get install -y -q hey"])
    return cluster


def hey_counts(text: str) -> tuple[int, int]:
    """(requests, failed) from hey's report: non-2xx/3xx answers and errors count as failed."""
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors = sum(int(n) for n in re.findall(r"\[(\d+)\]\s+Get ", text))
    ok = sum(n for c, n in codes.items() if 200 <= c < 400)
    return sum(codes.values()) + errors, sum(codes.values()) - ok + errors


def up_cluster(name: str) -> LocalCluster:
    """The named `bay up` cluster; exits with a one-line message if it is not up."""
    cluster = LocalCluster(name)
    if not cluster.nodes():
        raise SystemExit(f"cluster {name!r} is not up: `bay up` first")
    return cluster


@contextlib.contextmanager
def first_restarts(cluster: LocalCluster, reset: float = 2.0):
    """While inside: the crash-loop back-off resets after ``reset`` seconds, so
    every kill of a bench is a first restart, replaced at once (the case the
    anchors describe). In the site pillar, which goes over every other (a
    cluster built for the e2e tests sets its own reset there); put back after."""
    site_file = cluster.state_dir / "pillar" / "site.sls"
    site = (yaml.safe_load(site_file.read_text()) or {}).get("bay", {}) if site_file.exists() else {}
    cluster.set_site({**site, "controller": {**site.get("controller", {}), "backoff_reset": reset}})
    try:
        yield
    finally:
        cluster.set_site(site)
