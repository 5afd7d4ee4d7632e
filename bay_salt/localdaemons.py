"""Real daemons started on this machine for tests and benchmarks (Consul,
HAProxy, HDFS), each in its own process group, stopped by that id only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; an AssertionError from it ends the wait at once."""
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
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout}s (last error: {last})")


class Daemon:
    def __init__(self, cmd: list[str], log: Path):
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """True while running; an AssertionError with its log once it has exited."""
        if self.proc.poll() is not None:
            self._log.flush()
            raise AssertionError(f"{self.proc.args[0]} exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def start_consul(workdir: Path, config: dict, dev: bool = False) -> tuple[Daemon, int]:
    """A Consul agent from ``config`` (an agent JSON config) on free loopback
    ports; returns the daemon and its HTTP port once it has a leader.
    ``dev``: ``consul agent -dev`` (in-memory Raft, no fsync)."""
    import consul

    workdir.mkdir(parents=True, exist_ok=True)
    http = free_port()
    conf = dict(config) if dev else dict(config, data_dir=str(workdir / "data"))
    conf["ports"] = dict(conf.get("ports", {}), http=http, dns=free_port(), serf_lan=free_port(),
                         serf_wan=-1, server=free_port(), grpc=-1)
    (workdir / "agent.json").write_text(json.dumps(conf))
    cmd = ["consul", "agent", *(["-dev"] if dev else []), f"-config-file={workdir / 'agent.json'}"]
    daemon = Daemon(cmd, workdir / "consul.log")
    client = consul.Consul(host="127.0.0.1", port=http)
    try:
        wait_for(lambda: daemon.alive() and client.status.leader(), 60, "a Consul leader")
    except BaseException:
        daemon.stop()
        raise
    return daemon, http


def hdfs_classpath(checkout: Path) -> str:
    """The MiniDFSCluster jars (fetched once by scripts/hdfs.sh)."""
    return subprocess.run(["bash", str(checkout / "scripts" / "hdfs.sh")], capture_output=True, text=True,
                          check=True).stdout.strip()


def start_minidfs(workdir: Path, checkout: Path, datanodes: int = 1, bind: str = "127.0.0.1",
                  http_port: int | None = None) -> tuple[Daemon, int]:
    """A real HDFS: Hadoop's MiniDFSCluster (a NameNode and ``datanodes``
    DataNodes in one JVM, scripts/hdfs/BayMiniDFS.java) with WebHDFS and the
    DataNodes on ``bind``; returns the daemon and the NameNode's HTTP
    (WebHDFS) port once it answers."""
    import urllib.request

    workdir.mkdir(parents=True, exist_ok=True)
    http = http_port or free_port()
    details = workdir / "details.json"
    details.unlink(missing_ok=True)
    # C1 only: a test or demo HDFS lives minutes, and the C2 compiler's warm-up
    # (a core busy for the first few hundred MiB read) costs more than it gains
    cmd = ["java", "-Xmx512m", "-XX:TieredStopAtLevel=1", "-cp", hdfs_classpath(checkout),
           str(checkout / "scripts" / "hdfs" / "BayMiniDFS.java"), bind, str(http), str(datanodes),
           str(workdir / "data"), str(details)]
    daemon = Daemon(cmd, workdir / "minidfs.log")

    def ready():
        daemon.alive()
        if not details.exists():
            return False
        try:
            url = f"http://{bind}:{http}/webhdfs/v1/?op=GETFILESTATUS&user.name=root"
            return urllib.request.urlopen(url, timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 180, "MiniDFSCluster (NameNode and WebHDFS)")
    except BaseException:
        daemon.stop()
        raise
    return daemon, http
