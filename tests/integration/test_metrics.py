"""Metrics into a real Graphite on this machine (carbon-cache and graphite-web
from the venv's `monitoring` extra, configured as bay.monitoring does): the
shipper's points read back through the render API, carbon stopped and back
with nothing lost within the agent's bound, the services' statsd path through
a real statsd (npm) and the agent, and carbon and graphite-web behind the
monitoring node's HAProxy (client certificates; a password)."""

import json
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest

from bay_salt.cluster import pki
from bay_salt.cluster.processes import Graphite
from bay_salt.cluster.sitefiles import crypt_sha512
from bay_salt.metrics import carbon, nodefiles
from bay_salt.metrics.agent import Agent, Config
from bay_salt.metrics.render import RenderClient
from bay_salt.node import nodefiles as nodeconf
from tests.helpers import non_null
from tests.integration.conftest import node_settings
from tests.support.daemons import Daemon, free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def graphite(tmp_path_factory):
    g = Graphite(tmp_path_factory.mktemp("graphite"), retention="1s:1h,10s:1d").start()
    try:
        yield g
    finally:
        g.stop()


def read_back(g, target, count, timeout=30, total=None):
    """The target's points once ``count`` are there (and add up to ``total``)."""
    client = RenderClient(g.url)
    got = []

    def arrived():
        got[:] = non_null(client.series(target, since="-10min").get(target, []))
        return len(got) >= count and (total is None or sum(got) == total)

    wait_for(arrived, timeout, f"{count} points of {target} in the render API" + (f" adding up to {total}" if total else ""))
    return got


def test_shipped_points_are_read_back(graphite):
    s = carbon.Shipper(carbon.Target("127.0.0.1", graphite.pickle_port)).start()
    now = int(time.time())
    s.put([("bay.it.ship.x", (now - 9 + i, float(i))) for i in range(10)])
    try:
        assert read_back(graphite, "bay.it.ship.x", 10) == [float(i) for i in range(10)]
    finally:
        s.stop()


def test_carbon_down_then_back_loses_nothing_within_the_bound(graphite):
    s = carbon.Shipper(carbon.Target("127.0.0.1", graphite.pickle_port), retry=0.5).start()
    try:
        graphite.stop_carbon()
        now = int(time.time())
        s.put([("bay.it.outage.x", (now - 29 + i, 1.0)) for i in range(30)])
        wait_for(lambda: s.errors >= 1, 20, "the shipper tried carbon and failed")
        assert s.pending() == 30  # kept, not lost, while carbon is away
        graphite.start_carbon()
        assert len(read_back(graphite, "bay.it.outage.x", 30, timeout=60)) == 30
        assert s.dropped == 0
    finally:
        s.stop()
        if graphite.carbon is None:
            graphite.start_carbon()


def test_points_after_carbon_closed_the_connection_are_kept_not_sent_into_it(graphite):
    """Connected, then carbon goes: the next batch must not go into the dead
    connection (it would be lost without an error), but wait for carbon."""
    s = carbon.Shipper(carbon.Target("127.0.0.1", graphite.pickle_port), retry=0.5).start()
    try:
        now = int(time.time())
        s.put([("bay.it.closed.x", (now - 60, 1.0))])
        wait_for(lambda: s.connected and s.pending() == 0, 20, "the shipper connected and sent")
        graphite.stop_carbon()
        s.put([("bay.it.closed.x", (now - 50 + i, 2.0)) for i in range(5)])
        wait_for(lambda: s.errors >= 1, 20, "the shipper found carbon gone")
        assert s.pending() == 5  # kept, not sent into the closed connection
        graphite.start_carbon()
        # the five kept (the first point may have gone with carbon's cache when it was stopped)
        assert read_back(graphite, "bay.it.closed.x", 5, timeout=60).count(2.0) == 5
    finally:
        s.stop()
        if graphite.carbon is None:
            graphite.start_carbon()


def test_a_backlog_of_long_names_is_not_one_message_carbon_refuses(graphite):
    """5,000 points of 200-character names pickle to ~1.3 MB, beyond carbon's
    1 MiB message limit: carbon would drop the connection and all of them."""
    s = carbon.Shipper(carbon.Target("127.0.0.1", graphite.pickle_port)).start()
    now = int(time.time())
    stem = "bay.it.backlog." + "x" * 170
    points = [(f"{stem}.s{i % 50:02d}", (now - 99 + i // 50, 1.0)) for i in range(5000)]
    assert len(carbon.encode(points)) > carbon.MAX_MESSAGE
    try:
        s.put(points)
        assert len(read_back(graphite, f"{stem}.s07", 100, timeout=60)) == 100
        assert len(read_back(graphite, f"{stem}.s49", 100, timeout=60)) == 100
        assert s.dropped == 0
    finally:
        s.stop()


@pytest.fixture
def statsd_dir():
    from bay_salt.cluster import images
    from bay_salt.cluster.progress import Progress

    if not shutil.which("node"):
        pytest.fail("node is not installed: run scripts/setup.sh")
    return images.ensure_statsd(Progress())


class OneSender:
    """The container lookup, for a sender on loopback: service demo, group web."""

    def gateway(self):
        return "127.0.0.1"

    def lookup(self, ip):
        return ("demo", "web") if ip == "127.0.0.1" else None


def test_statsd_from_a_service_reaches_graphite_under_its_name(graphite, statsd_dir, tmp_path):
    cfg = Config(cluster="it", node="host", carbon=carbon.Target("127.0.0.1", graphite.pickle_port), interval=1,
                 statsd_listen_host="127.0.0.1", statsd_listen_port=free_port(), statsd_port=free_port(),
                 relay_port=free_port())
    conf = nodefiles.statsd_config(node_settings(cluster="it"))
    conf.update(port=cfg.statsd_port, mgmt_port=free_port(), graphitePort=cfg.relay_port, flushInterval=1000)
    (tmp_path / "statsd.json").write_text(json.dumps(conf))
    stats_js = statsd_dir / "node_modules/statsd/stats.js"
    statsd = Daemon(["node", str(stats_js), str(tmp_path / "statsd.json")], tmp_path / "statsd.log")
    agent = Agent(cfg)
    agent.shipper.start()
    agent.line_receiver()
    agent.statsd_relay(OneSender())
    try:
        # statsd is ready once its management port answers (it opens it with its UDP port)
        wait_for(lambda: statsd.alive() and socket.create_connection(("127.0.0.1", conf["mgmt_port"]), 1).close() is None,
                 20, "statsd's management port")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            for _ in range(20):
                out.sendto(b"orders:1|c\nqueue_depth:7|g", ("127.0.0.1", cfg.statsd_listen_port))
        wait_for(lambda: agent.relayed >= 20, 20, "the agent relayed 20 packets")
        assert agent.relayed == 20
        read_back(graphite, "bay.it.services.demo.web.host.orders.count", 1, timeout=30, total=20)
        assert read_back(graphite, "bay.it.services.demo.web.host.queue_depth", 1, timeout=30)[-1] == 7
    finally:
        agent.shipper.stop(flush=2)
        statsd.stop()


def test_carbon_and_graphite_web_behind_haproxy_are_closed(graphite, tmp_path):
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is not installed: run scripts/setup.sh")
    authority, stranger = pki.ca("it CA"), pki.ca("another CA")
    node = pki.leaf(authority, "host", ["host"], ["127.0.0.1"])
    outsider = pki.leaf(stranger, "x", ["x"], ["127.0.0.1"])
    for name, pair in (("node", node), ("outsider", outsider)):
        (tmp_path / f"{name}.pem").write_text(pair.cert_pem)
        (tmp_path / f"{name}-key.pem").write_text(pair.key_pem)
    (tmp_path / "ca.pem").write_text(authority.cert_pem)
    (tmp_path / "haproxy.pem").write_text(node.cert_pem + node.key_pem)
    carbon_port, web_port = free_port(), free_port()
    cfg = node_settings(haproxy={"socket": str(tmp_path / "admin.sock"), "stats_port": free_port()},
                        nodes={"host": {"roles": ["worker", "monitoring"]}},
                        monitoring={"carbon_port": carbon_port, "web_port": web_port,
                                    "web_users": {"bay": crypt_sha512("right")},
                                    "tls": {"cert_file": "", "key_file": "", "ca_file": str(tmp_path / "ca.pem")}})
    text = nodeconf.haproxy_config(cfg).replace(nodefiles.MONITORING_PEM, str(tmp_path / "haproxy.pem"))
    for line in ("chroot /var/lib/haproxy", "user haproxy", "group haproxy", "log /dev/log local0",
                 "log /dev/log local1 notice"):
        text = text.replace(f"    {line}\n", "")
    (tmp_path / "haproxy.cfg").write_text(text)
    proxy = Daemon(["haproxy", "-W", "-db", "-f", str(tmp_path / "haproxy.cfg")], tmp_path / "haproxy.log")
    try:
        wait_for(lambda: proxy.alive() and socket.create_connection(("127.0.0.1", web_port), 1), 15, "HAProxy")
        # a node's certificate: points go through
        ok = carbon.Shipper(carbon.Target("127.0.0.1", carbon_port, str(tmp_path / "node.pem"),
                                          str(tmp_path / "node-key.pem"), str(tmp_path / "ca.pem")))
        ok.send_now([("bay.it.tls.x", (time.time(), 3.0))])
        assert read_back(graphite, "bay.it.tls.x", 1) == [3.0]
        # no certificate, or one another CA signed: refused
        for cert in ("", "outsider"):
            bad = carbon.Shipper(carbon.Target("127.0.0.1", carbon_port, str(tmp_path / f"{cert}.pem") if cert else "",
                                               str(tmp_path / f"{cert}-key.pem") if cert else "",
                                               str(tmp_path / "ca.pem")))
            with pytest.raises((ssl.SSLError, OSError)):
                bad.send_now([("bay.it.tls.bad", (time.time(), 1.0))])
                bad._sock.recv(1)  # TLS 1.3: the server's refusal arrives after the handshake
                bad.send_now([("bay.it.tls.bad", (time.time(), 1.0))])
        # graphite-web: TLS and a password
        url = f"https://127.0.0.1:{web_port}"
        assert RenderClient(url, "bay", "right", str(tmp_path / "ca.pem")).series("bay.it.tls.x", "-10min")
        with pytest.raises(OSError, match="refused user 'bay'"):
            RenderClient(url, "bay", "wrong", str(tmp_path / "ca.pem")).series("bay.it.tls.x")
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(url + "/dashboard/", context=ctx, timeout=5)
        assert anonymous.value.code == 401
    finally:
        proxy.stop()


def test_dashboards_are_written_once_and_again_only_when_they_differ(graphite):
    from bay_salt.metrics import dashboards

    cfg = {"cluster": "it", "services": {"demo": {"groups": {"web": {}}}}}
    assert dashboards.provision(cfg, graphite.url, dry_run=True) == ["bay-it-platform", "bay-it-service-demo"]
    assert dashboards.provision(cfg, graphite.url) == ["bay-it-platform", "bay-it-service-demo"]
    assert dashboards.provision(cfg, graphite.url) == []  # a second apply changes nothing
    cfg["services"]["demo"]["groups"]["api"] = {}
    assert dashboards.provision(cfg, graphite.url) == ["bay-it-service-demo"]
