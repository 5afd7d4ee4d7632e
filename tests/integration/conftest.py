"""Real daemons on the host: a Consul agent and HAProxy, configured with what
the bay formula renders for a node. Each fixture stops exactly the process it
started."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import consul
import pytest

from bay_salt import nodeconf, settings
from tests.helpers import CHECKOUT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except AssertionError:
            raise
        except Exception as err:  # noqa: BLE001 - retried until the deadline
            last = err
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout}s (last error: {last})")


def node_settings(**extra):
    pillar = settings.deep_merge(
        {"nodes": {"host": {"address": "127.0.0.1"}}, "consul": {"servers": ["host"]}}, extra
    )
    return settings.load(settings.formula_defaults(CHECKOUT), pillar, "host")


class Proc:
    def __init__(self, cmd, log):
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self):
        if self.proc.poll() is not None:
            self.log.flush()
            with open(self.log.name) as fh:
                raise AssertionError(f"{self.proc.args[0]} exited {self.proc.returncode}: {fh.read()[-2000:]}")
        return True

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def consul_agent(tmp_path_factory):
    """A single-server Consul agent from the formula's config (bootstrap_expect 1)."""
    if not shutil.which("consul"):
        pytest.fail("consul is not installed: run scripts/setup.sh")
    d = tmp_path_factory.mktemp("consul")
    http = free_port()
    cfg = node_settings(consul={"http_port": http, "dns_port": free_port(), "data_dir": str(d / "data")})
    conf = nodeconf.consul_config(cfg)
    conf["ports"].update({"serf_lan": free_port(), "serf_wan": -1, "server": free_port(), "grpc": -1})
    (d / "bay.json").write_text(json.dumps(conf))
    proc = Proc(["consul", "agent", f"-config-file={d / 'bay.json'}"], d / "consul.log")
    client = consul.Consul(host="127.0.0.1", port=http)
    try:
        wait_for(lambda: proc.alive() and client.status.leader(), 60, "a Consul leader")
        yield client
    finally:
        proc.stop()


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
    proc = Proc(["haproxy", "-W", "-db", "-f", str(path)], tmp_path / "haproxy.log")
    try:
        wait_for(lambda: proc.alive() and sock.exists(), 15, "the Runtime API socket")
        yield {"proc": proc.proc, "socket": str(sock), "stats_port": stats, "config": path}
    finally:
        proc.stop()
