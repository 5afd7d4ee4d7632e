"""Real daemons on the host: a Consul agent and HAProxy, configured with what
the bay formula renders for a node. Each fixture stops exactly the process it
started."""

import shutil

import consul
import pytest

from bay_salt.model import settings
from bay_salt.node import nodefiles as nodeconf
from tests.helpers import CHECKOUT, REGISTRY_AUTH, TOKENS
from tests.support.daemons import Daemon, free_port, start_consul, wait_for


def node_settings(**extra):
    pillar = settings.deep_merge(
        {"nodes": {"host": {"address": "127.0.0.1"}}, "consul": {"servers": ["host"], "acl": {"tokens": TOKENS}},
         "registry": {"auth": REGISTRY_AUTH}},
        extra
    )
    return settings.load(settings.formula_defaults(CHECKOUT), pillar, "host")


@pytest.fixture(scope="session")
def consul_agent(tmp_path_factory):
    """A single-server Consul agent from the formula's config (bootstrap_expect 1)."""
    if not shutil.which("consul"):
        pytest.fail("consul is not installed: run scripts/setup.sh")
    daemon, http = start_consul(tmp_path_factory.mktemp("consul"), nodeconf.consul_config(node_settings()))
    try:
        yield consul.Consul(host="127.0.0.1", port=http, token=TOKENS["management"])
    finally:
        daemon.stop()


@pytest.fixture
def haproxy(tmp_path):
    """HAProxy in master-worker mode with the formula's config (chroot and user
    dropped: the host has no haproxy chroot dir of the package's making)."""
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is not installed: run scripts/setup.sh")
    stats = free_port()
    sock = tmp_path / "admin.sock"
    cfg = node_settings(haproxy={"socket": str(sock), "stats_port": stats})
    text = nodeconf.haproxy_config(cfg)
    for line in ("chroot /var/lib/haproxy", "user haproxy", "group haproxy", "log /dev/log local0",
                 "log /dev/log local1 notice"):
        text = text.replace(f"    {line}\n", "")
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    services = tmp_path / "bay-services.cfg"
    services.write_text("# no services yet\n")
    proc = Daemon(["haproxy", "-W", "-db", "-f", str(path), "-f", str(services)], tmp_path / "haproxy.log")
    try:
        wait_for(lambda: proc.alive() and sock.exists(), 15, "the Runtime API socket")
        yield {"proc": proc.proc, "socket": str(sock), "stats_port": stats, "config": path, "services": services,
               "log": tmp_path / "haproxy.log"}
    finally:
        proc.stop()


class HDFS:
    def __init__(self, http):
        self.http = http

    def storage_url(self, root):
        return f"hdfs://127.0.0.1:{self.http}/{root}"


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory):
    """A real HDFS for the session: Hadoop's MiniDFSCluster (jars from Maven, scripts/hdfs.sh)."""
    if not shutil.which("java"):
        pytest.fail("java is not installed: run scripts/setup.sh")
    from bay_salt.cluster.processes import start_minidfs

    daemon, http = start_minidfs(tmp_path_factory.mktemp("hdfs"), CHECKOUT)
    try:
        yield HDFS(http)
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    """A real Kafka broker (KRaft, SASL_SSL) for one test module (test_logs, test_search)."""
    from bay_salt.cluster.processes import Kafka

    broker = Kafka(tmp_path_factory.mktemp("kafka"), CHECKOUT).start()
    try:
        yield broker
    finally:
        broker.stop()
