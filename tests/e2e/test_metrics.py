"""Metrics in the `bay up` cluster: every node's agent and the master ship to
the Graphite on node1 (role monitoring), read back through the render API as
a person would (TLS and a password, through node1's HAProxy).

Under load on the demo: series for a container, a group, the platform and a
server; a killed container in its group's restart metric; a container's own
statsd metric under its service's name; the dashboards drawn with data in a
real browser (headless Chromium; the screenshot is kept in BAY_ARTIFACTS,
default ./artifacts); `bay top` and `bay dashboards`; carbon stopped for a
minute loses no agent, no request and (within the agents' bound) no point."""

import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bay_salt import cli
from bay_salt.metrics.render import RenderClient
from tests.e2e.helpers import WEB, eventually, placements
from tests.helpers import non_null

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def render(cluster):
    url, user, password, ca = cluster.graphite()
    return RenderClient(url, user, password, str(ca))


def values(render, target, since="-5min"):
    return [v for series in render.series(target, since=since).values() for v in non_null(series)]


class Load:
    """Requests to demo.web through every node's frontend, from this machine; counts failures."""

    def __init__(self, cluster, rate=40.0):
        self.addresses = [n.address for n in cluster.nodes()]
        self.rate, self.ok, self.failed, self.errors = rate, 0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        k = 0
        while not self._stop.is_set():
            addr = self.addresses[k % len(self.addresses)]
            k += 1
            try:
                urllib.request.urlopen(f"http://{addr}:{WEB}/", timeout=5).read()
                self.ok += 1
            except OSError as err:
                self.failed += 1
                self.errors.append(f"{addr}: {err}")
            time.sleep(1 / self.rate)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def loaded(cluster, render):
    """The demo under load for a while before the metric tests look."""
    with Load(cluster) as load:
        eventually(lambda: sum(values(render, f"bay.{cluster.name}.traffic.demo.web.*.requests")) > 50, 120,
                   "demo.web's requests in Graphite")
    assert load.failed == 0, load.errors[:5]
    return load


def test_series_for_a_container_a_group_the_platform_and_a_server(cluster, render, loaded):
    inst = sorted(placements(cluster, "web"))[0]
    checks = {
        "a container": f"bay.{cluster.name}.containers.demo.web.{inst}.memory_bytes",
        "a container's CPU": f"bay.{cluster.name}.containers.demo.web.*.cpu_cores",
        "a group": f"bay.{cluster.name}.groups.demo.web.passing",
        "a group's healthy ratio": f"bay.{cluster.name}.groups.demo.web.healthy_ratio",
        "the platform": f"bay.{cluster.name}.platform.nodes.alive",
        "a server": f"bay.{cluster.name}.nodes.node2.cpu_percent",
        "a server's component": f"bay.{cluster.name}.nodes.node3.components.haproxy",
        "a group's traffic": f"bay.{cluster.name}.traffic.demo.web.*.request_rate",
    }
    for what, target in checks.items():
        eventually(lambda t=target: values(render, t), 60, f"points for {what} ({target})")
    # The tests before this one kill demo.web instances: the newest point may
    # still be from an interval in which a replacement was not yet passing.
    passing = f"bay.{cluster.name}.groups.demo.web.passing"
    eventually(lambda: values(render, passing, since="-1min")[-1:] == [3], 60, f"{passing} at 3")
    assert values(render, f"bay.{cluster.name}.groups.demo.web.healthy_ratio")[-1] == 1.0
    assert values(render, f"bay.{cluster.name}.platform.nodes.alive")[-1] == len(cluster.nodes())  # node4 may have joined
    assert values(render, f"bay.{cluster.name}.nodes.node3.components.haproxy")[-1] == 1.0
    assert max(values(render, f"bay.{cluster.name}.traffic.demo.web.*.request_rate")) > 0


def values_since(render, target, start: float) -> list[float]:
    """The values of points stamped at or after ``start`` (epoch seconds). A
    sliding window (``-10min``) is no baseline: earlier tests' restarts leave it
    while a test waits, and the sum can shrink by more than the new point."""
    return [v for series in render.series(target, since=str(int(start) - 60)).values()
            for v, ts in series or [] if v is not None and ts >= start]


def test_a_killed_container_shows_in_the_groups_restart_metric(cluster, render, loaded):
    inst, node_id = sorted(placements(cluster, "web").items())[0]
    node = next(n for n in cluster.nodes() if n.id == node_id)
    killed = time.time()
    cluster.client.containers.get(node.container).exec_run(["docker", "kill", f"bay-demo-web-{inst}"])
    eventually(lambda: sum(values_since(render, f"bay.{cluster.name}.groups.demo.web.restarts", killed)) >= 1, 90,
               f"the kill of {inst} on {node_id} counted in the group's restarts")
    eventually(lambda: sum(values_since(render, f"bay.{cluster.name}.platform.controller.actions.container_replaced",
                                        killed)) >= 1, 60, "the replacement among the controller's actions")


def test_a_containers_statsd_metric_lands_under_its_service(cluster, render):
    inst, node_id = sorted(placements(cluster, "api").items())[0]
    node = next(n for n in cluster.nodes() if n.id == node_id)
    c = cluster.client.containers.get(node.container)
    # the demo image (busybox) has no UDP client: the node's Python sends from inside the
    # container's network namespace, so the packet comes from the container's own address
    name = f"bay-demo-api-{inst}"
    send = (f'pid=$(docker inspect -f "{{{{.State.Pid}}}}" {name}); '
            f'env=$(docker inspect -f "{{{{range .Config.Env}}}}{{{{println .}}}}{{{{end}}}}" {name}); '
            'host=$(echo "$env" | sed -n "s/^STATSD_HOST=//p"); port=$(echo "$env" | sed -n "s/^STATSD_PORT=//p"); '
            'nsenter -t "$pid" -n /opt/bay/venv/bin/python -c "import socket,sys; s=socket.socket(2,2); '
            '[s.sendto(b\'e2e_orders:1|c\', (sys.argv[1], int(sys.argv[2]))) for _ in range(5)]" "$host" "$port"')
    res = c.exec_run(["sh", "-c", send])
    assert res.exit_code == 0, res.output.decode()
    target = f"bay.{cluster.name}.services.demo.api.{node_id}.e2e_orders.count"
    eventually(lambda: sum(values(render, target)) == 5, 60, f"5 counted in {target}")


def test_dashboards_and_top(cluster, render, loaded, tmp_path, capsys):
    assert cli.main(["--cluster", cluster.name, "dashboards", "--grafana", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"bay-{cluster.name}-service-demo" in out and f"bay-{cluster.name}-platform" in out
    assert {p.name for p in tmp_path.iterdir()} == {f"bay-{cluster.name}-platform.json", f"bay-{cluster.name}-service-demo.json"}
    # graphite-web has both, written when bay.monitoring ran and when the demo was deployed
    for name in (f"bay-{cluster.name}-platform", f"bay-{cluster.name}-service-demo"):
        assert b'"graphs"' in render.get(f"/dashboard/load/{name}")
    assert cli.main(["--cluster", cluster.name, "top", "--once"]) == 0
    out = capsys.readouterr().out
    assert "demo.web" in out and "demo.api" in out


def dashboard_screenshot(cluster, name: str, out: Path) -> None:
    """Headless Chromium (Debian's) loads the dashboard page as a person would:
    through node1's HAProxy, with the password given in the URL (the browser
    then sends it for the page's graph images too) and the cluster's CA trusted
    only through --ignore-certificate-errors (Chromium takes no CA file)."""
    url, user, password, _ = cluster.graphite()
    scheme, rest = url.split("://", 1)
    page = f"{scheme}://{user}:{password}@{rest}/dashboard/{name}"
    profile = out.parent / f"chromium-{name}"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--ignore-certificate-errors", f"--user-data-dir={profile}", "--window-size=1400,1100",
           "--virtual-time-budget=20000", f"--screenshot={out}", page]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    shutil.rmtree(profile, ignore_errors=True)
    assert out.exists() and out.stat().st_size > 10_000, f"no screenshot of {name}"


def line_pixels(png: Path) -> int:
    """Pixels in graphite's series colours (saturated blue and green lines): a graph with data has them."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    return sum(n for n, (r, g, b) in img.getcolors(1 << 24)
               if (b > 200 and r < 140 and g < 140) or (g > 150 and r < 90 and b < 90))


def test_the_dashboards_draw_in_a_browser(cluster, loaded):
    if not shutil.which("chromium"):
        pytest.fail("chromium is not installed: run scripts/setup.sh")
    artifacts = Path(os.environ.get("BAY_ARTIFACTS", "artifacts")).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    for name in (f"bay-{cluster.name}-service-demo", f"bay-{cluster.name}-platform"):
        shot = artifacts / f"{name}.png"
        dashboard_screenshot(cluster, name, shot)
        assert line_pixels(shot) > 500, f"{shot}: the graphs carry no data lines"


#: how long carbon is stopped: three of the agents' 10 s rounds
AWAY = 30


def test_carbon_away_for_half_a_minute_loses_no_agent_no_request_no_point(cluster, render, loaded):
    nodes = cluster.nodes()
    monitor = cluster.client.containers.get(nodes[0].container)

    def agents():
        out = {}
        for n in nodes:
            res = cluster.client.containers.get(n.container).exec_run(
                ["systemctl", "show", "-p", "ActiveState", "-p", "NRestarts", "bay-metrics"])
            out[n.id] = res.output.decode().split()
        return out

    before = agents()
    assert all("ActiveState=active" in v for v in before.values()), before
    with Load(cluster) as load:
        assert monitor.exec_run(["systemctl", "stop", "bay-carbon"]).exit_code == 0
        stopped = time.time()
        time.sleep(AWAY)
        assert monitor.exec_run(["systemctl", "start", "bay-carbon"]).exit_code == 0
        time.sleep(5)
    assert load.failed == 0, load.errors[:5]
    assert load.ok > 20 * AWAY  # half the rate asked for, at least
    assert agents() == before  # every agent still running, not restarted
    # the points collected while carbon was away arrive once it is back (the agents kept them)
    window = f"{int(stopped) + 5}"

    def outage_filled():
        got = render.series(f"bay.{cluster.name}.nodes.node2.agent.points", since=window,
                            until=f"{int(stopped) + AWAY}")
        # of the 2-3 slots of 10 s while it was away: one batch may be lost as carbon goes
        return sum(1 for s in got.values() for v in non_null(s)) >= 2

    try:
        eventually(outage_filled, 90, "node2's points from while carbon was away")
    except AssertionError as err:  # what the agent saw, for whoever reads the failure
        node2 = cluster.client.containers.get(nodes[1].container)
        journal = node2.exec_run(["journalctl", "-u", "bay-metrics", "--since", f"@{int(stopped) - 30}",
                                  "--no-pager", "-o", "short-unix"]).output.decode()[-3000:]
        got = render.series([f"bay.{cluster.name}.nodes.node2.agent.{w}" for w in ("points", "dropped", "sent")],
                            since=f"{int(stopped) - 30}")
        haproxy = monitor.exec_run(["journalctl", "-u", "haproxy", "-n", "20", "--no-pager"]).output.decode()
        raise AssertionError(f"{err}; carbon stopped at {stopped:.0f}; node2's agent: {got}; its journal: {journal}; "
                             f"the monitoring node's haproxy: {haproxy[-2000:]}") from None
