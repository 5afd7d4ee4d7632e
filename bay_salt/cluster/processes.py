"""Daemons `bay up` runs on this machine beside the cluster (HDFS), each in
its own process group, stopped by that id only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

from bay_salt.util import retry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, cmd: list[str], log: Path):
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed by stop()
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
        url = f"http://{bind}:{http}/webhdfs/v1/?op=GETFILESTATUS&user.name=root"
        return urllib.request.urlopen(url, timeout=2).status == 200

    try:
        retry.until(ready, "MiniDFSCluster (NameNode and WebHDFS)", timeout=180, interval=0.2, on=(OSError,))
    except BaseException:
        daemon.stop()
        raise
    return daemon, http
