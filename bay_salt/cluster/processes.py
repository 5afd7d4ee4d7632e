"""Daemons `bay up` runs on this machine beside the cluster (HDFS), and the
real components tests and benches start here (Kafka, Graphite), each in its
own process group, stopped by that id only."""

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
    def __init__(self, cmd: list[str], log: Path, env: dict | None = None, user: str | None = None):
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                     user=user, cwd="/" if user else None)

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


def kafka_lib(checkout: Path) -> str:
    """Kafka's jars (fetched once by scripts/kafka.sh)."""
    return subprocess.run(["bash", str(checkout / "scripts" / "kafka.sh")], capture_output=True, text=True,
                          check=True).stdout.strip()


class Kafka:
    """A real Kafka broker (KRaft, broker and controller in one JVM) with the
    configuration bay.kafka writes on a kafka node: SASL SCRAM-SHA-512 for
    clients on ``address`` (over TLS with ``tls``: SASL_SSL, a certificate
    for ``address`` from a CA of its own, ``ca_file``), the controller on
    loopback; for tests and benchmarks. ``restart()`` keeps its data (a
    broker restarted under its clients)."""

    def __init__(self, workdir: Path, checkout: Path, address: str = "127.0.0.1", user: str = "bay",
                 password: str | None = None, heap: str = "256m", tls: bool = True):
        from bay_salt.cluster import pki
        from bay_salt.logs import kafka, nodefiles

        self.workdir, self.address, self.user = workdir, address, user
        self.password = password or os.urandom(12).hex()
        self.port, self.controller_port = free_port(), free_port()
        self.lib = kafka_lib(checkout)
        self.heap = heap
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca_file = ""
        if tls:  # what the broker's unit assembles on a node: the key and the certificate in one PEM file
            authority = pki.ca("Bay test Kafka CA")
            leaf = pki.leaf(authority, address, ["localhost"], [address])
            (workdir / "ca.pem").write_text(authority.cert_pem)
            store = Path(kafka.keystore_path(str(workdir)))
            store.parent.mkdir(mode=0o700, exist_ok=True)
            store.write_text(leaf.key_pem + leaf.cert_pem)
            store.chmod(0o600)
            self.ca_file = str(workdir / "ca.pem")
        self.config = workdir / "server.properties"
        self.config.write_text(kafka.broker_properties(1, address, self.port, self.controller_port, str(workdir), user,
                                                       self.password, 3, 86400, ca_file=self.ca_file))
        (workdir / "log4j2.properties").write_text(nodefiles.LOG4J)
        fmt = self._java("kafka.tools.StorageTool", "format", "--ignore-formatted", "-t",
                         nodefiles.cluster_id(workdir.name), "-c", str(self.config), "--add-scram",
                         kafka.scram_argument(user, self.password))
        subprocess.run(fmt, check=True, capture_output=True)
        self.daemon: Daemon | None = None
        self.starts = 0

    def _java(self, main: str, *args: str) -> list[str]:
        from bay_salt.logs import kafka

        return kafka.java_command(self.heap, self.lib, str(self.workdir / "log4j2.properties"), main, *args)

    @property
    def bootstrap(self) -> str:
        return f"{self.address}:{self.port}"

    def client(self):
        from bay_salt.logs.kafka import Client

        return Client(self.bootstrap, self.user, self.password, self.ca_file)

    def start(self) -> Kafka:
        self.starts += 1
        self.daemon = Daemon(self._java("kafka.Kafka", str(self.config)), self.workdir / f"kafka-{self.starts}.log")

        def ready():
            self.daemon.alive()
            with socket.create_connection((self.address, self.port), timeout=1):
                return True

        try:
            retry.until(ready, "Kafka broker", timeout=120, interval=0.2, on=(OSError,))
        except BaseException:
            self.daemon.stop()
            raise
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tool(self, main: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """One of Kafka's own tools (``org.apache.kafka.tools.ConsumerPerformance``...) as Bay's user."""
        props = self.workdir / "client.properties"
        props.touch(mode=0o600)
        props.write_text(self.client().java_properties())
        cmd = [a.replace("{client.properties}", str(props)) for a in self._java(main, *args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def search_lib(checkout: Path) -> str:
    """OpenSearch's jars (fetched once by scripts/search.sh)."""
    return subprocess.run(["bash", str(checkout / "scripts" / "search.sh")], capture_output=True, text=True,
                          check=True).stdout.strip()


class OpenSearch:
    """A real OpenSearch server made of Maven's jars, as bay.search runs it
    on a search node: one node, HTTP on ``address``, run as ``user``
    (OpenSearch refuses root); for tests and benchmarks."""

    def __init__(self, workdir: Path, checkout: Path, address: str = "127.0.0.1", heap: str = "256m",
                 user: str = "nobody"):
        import pwd
        import tempfile

        from bay_salt.logs import search

        # a directory of its own that ``user`` reaches (a test's tmp_path is root's alone)
        workdir = Path(tempfile.mkdtemp(prefix=f"bay-opensearch-{workdir.name}-"))
        self.workdir, self.address, self.heap, self.user = workdir, address, heap, user
        self.port = free_port()
        home, data = workdir / "home", workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        search.make_home(str(home), search_lib(checkout), str(data), address, self.port, free_port())
        uid = pwd.getpwnam(user).pw_uid
        for p in [workdir, data, *data.rglob("*"), home / "config", *(home / "config").iterdir()]:  # (its keystore)
            os.chown(p, uid, -1)
        workdir.chmod(0o755)
        self.home = home
        self.daemon: Daemon | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self) -> OpenSearch:
        from bay_salt.logs import search

        self.daemon = Daemon(search.opensearch_command(str(self.home), self.heap), self.workdir / "opensearch.log",
                             user=self.user)
        try:
            retry.until(lambda: self.daemon.alive() and _answers(self.url + "/_cluster/health?wait_for_status=yellow"),
                        "OpenSearch", timeout=120, interval=0.5)
        except BaseException:
            self.daemon.stop()
            raise
        return self

    def rss_mib(self) -> float:
        """The server's resident memory (its JVM), MiB."""
        with open(f"/proc/{self.daemon.pid}/status") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:")) / 1024

    def stop(self) -> None:
        import shutil

        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None
        shutil.rmtree(self.workdir, ignore_errors=True)


class Graphite:
    """carbon-cache and graphite-web from this Python's environment (the
    ``monitoring`` extra), on loopback, with the configuration bay.monitoring
    writes on a monitoring node; for tests and benchmarks on this machine."""

    def __init__(self, workdir: Path, retention: str = "10s:1d", caches: int = 1):
        import sys

        from bay_salt.metrics import graphite

        self.workdir = workdir
        self.bin = Path(sys.executable).parent
        webapp = self.bin.parent / "webapp"
        if not (self.bin / "carbon-cache.py").exists() or not webapp.is_dir():
            raise RuntimeError("Graphite is not installed in this venv: run scripts/setup.sh "
                               "(it installs the `monitoring` extra with GRAPHITE_NO_PREFIX=True)")
        self.caches = graphite.caches(caches)
        self.paths = graphite.write_config(workdir, retention, "test-" + os.urandom(16).hex(), str(webapp), caches)
        self.env = dict(os.environ, PYTHONPATH=str(self.paths["conf"]),
                        GRAPHITE_SETTINGS_MODULE=graphite.SETTINGS_MODULE, DJANGO_SETTINGS_MODULE="graphite.settings",
                        # carbon's generated protobuf module predates the protobuf other test tools install
                        PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
        self.url = f"http://127.0.0.1:{graphite.WEB_PORT}"
        self.pickle_port = graphite.PICKLE_PORT
        ports = [p for c in self.caches for p in (c.line_port, c.pickle_port, c.query_port)] + [graphite.WEB_PORT]
        for port in ports:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    raise RuntimeError(f"port {port} on loopback is taken: a Graphite runs here already?")
        #: the first carbon-cache (``a``), and every further one
        self.carbon: Daemon | None = None
        self.more: list[Daemon] = []
        self.web: Daemon | None = None

    def start_carbon(self) -> None:
        started = []
        for c in self.caches:
            cmd = [str(self.bin / "python"), str(self.bin / "carbon-cache.py"),
                   f"--config={self.paths['conf']}/carbon.conf", f"--instance={c.instance}", "--nodaemon", "start"]
            # a pid file left by a killed carbon makes the next one refuse to start
            (self.paths["storage"] / f"carbon-cache-{c.instance}.pid").unlink(missing_ok=True)
            log = "carbon.log" if c.instance == "a" else f"carbon-{c.instance}.log"
            started.append((c, Daemon(cmd, self.workdir / log, self.env)))
        self.carbon, self.more = started[0][1], [d for _, d in started[1:]]
        for c, d in started:
            retry.until(lambda c=c, d=d: d.alive() and _listening(c.pickle_port), f"carbon-cache {c.instance} listening",
                        timeout=60, interval=0.2)

    def stop_carbon(self) -> None:
        for d in [self.carbon, *self.more]:
            if d:
                d.stop()
        self.carbon, self.more = None, []

    def start(self) -> Graphite:
        admin = [str(self.bin / "python"), str(self.bin / "django-admin")]
        for args in (["migrate", "--noinput", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
            subprocess.run(admin + args, env=self.env, check=True, capture_output=True)
        self.start_carbon()
        from bay_salt.metrics import graphite

        self.web = Daemon([str(self.bin / "python"), str(self.bin / "gunicorn"), "--bind",
                                f"127.0.0.1:{graphite.WEB_PORT}", "--workers", "2", "graphite.wsgi:application"],
                               self.workdir / "web.log", self.env)
        retry.until(lambda: self.web.alive() and _answers(self.url + "/render?target=x&format=json"),
                    "graphite-web answering", timeout=60, interval=0.3)
        return self

    def stop(self) -> None:
        if self.web:
            self.web.stop()
        self.stop_carbon()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
