"""Kafka for services' logs: the broker's configuration (``bay.kafka``),
the clients' (relay, archiver, topic admin) and a service's topic.

Bay's broker is one KRaft node per ``kafka`` node (broker and controller in
one JVM). Clients reach it on the node's address with SASL SCRAM-SHA-512 as
Bay's one user, over TLS where the site gives a CA (SASL_SSL: the password
and the records encrypted, the broker's certificate checked); its controller
listens on loopback only. Nothing is public: a connection without the
password is refused.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from bay_salt.model import names

log = logging.getLogger("bay.logs")
klog = logging.getLogger("bay.kafka")


class _Once(logging.Filter):
    """librdkafka says the same thing on every reconnect attempt while a
    broker is away: each message once per ``every`` seconds."""

    def __init__(self, every: float = 60.0):
        super().__init__()
        self.every, self.last = every, {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        key = text.split("(after", 1)[0]
        now = time.monotonic()
        if now - self.last.get(key, -self.every) < self.every:
            return False
        if len(self.last) > 1000:
            self.last.clear()
        self.last[key] = now
        return True


klog.addFilter(_Once())

MECHANISM = "SCRAM-SHA-512"
#: JVM options: a log broker needs little heap; C1 only starts it in ~4 s
JVM_OPTS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")


def java_command(heap: str, lib_dir: str, log4j: str | None, main: str, *args: str, java: str = "java",
                 fixed_heap: bool = False) -> list[str]:
    """A JVM running ``main`` from Kafka's jars (the broker, its storage tool, its perf tools)."""
    return [java, f"-Xmx{heap}", *([f"-Xms{heap}"] if fixed_heap else []), *JVM_OPTS,
            *([f"-Dlog4j2.configurationFile={log4j}"] if log4j else []), "-cp", f"{lib_dir}/*", main, *args]


class KafkaError(RuntimeError):
    """Kafka did not do what was asked; the message names the broker and what to do."""


@dataclass(frozen=True)
class Client:
    bootstrap: str
    user: str
    password: str = field(repr=False)
    #: the CA the broker's certificate is checked against: SASL_SSL (empty: SASL_PLAINTEXT)
    ca_file: str = ""

    @classmethod
    def of(cls, cfg: dict) -> Client:
        """From loaded settings (``cfg["kafka"]``)."""
        k = cfg["kafka"]
        return cls(k["bootstrap_servers"], k["user"], k["password"], k["tls"]["ca_file"])

    @classmethod
    def from_dict(cls, d: dict) -> Client:
        """From what :func:`bay_salt.logs.nodefiles.kafka_client` writes into a daemon's config."""
        return cls(d["bootstrap"], d.get("user", "bay"), d.get("password", ""), d.get("ca_file", ""))

    def conf(self, **extra) -> dict:
        """librdkafka's configuration (SASL when a password is given; over TLS with a CA)."""
        # librdkafka's own messages go to Python's logging (the journal), not to stderr
        out = {"bootstrap.servers": self.bootstrap, "client.id": "bay", "log_level": 4, "logger": klog,
               "reconnect.backoff.ms": 200, "reconnect.backoff.max.ms": 10000}
        out["security.protocol"] = self.protocol
        if self.password:
            out.update({"sasl.mechanism": MECHANISM, "sasl.username": self.user, "sasl.password": self.password})
        if self.ca_file:
            # the broker's certificate checked against the CA and the address it was reached at
            out.update({"ssl.ca.location": self.ca_file, "ssl.endpoint.identification.algorithm": "https"})
        out.update(extra)
        return out

    @property
    def protocol(self) -> str:
        """Kafka's name for how this client talks to the broker."""
        return ("SASL_" if self.password else "") + ("SSL" if self.ca_file else "PLAINTEXT")

    def java_properties(self) -> str:
        """The same for Kafka's own (Java) tools: a client.properties (a secret: it holds the password)."""
        out = f"security.protocol={self.protocol}\n"
        if self.password:
            out += (f"sasl.mechanism={MECHANISM}\nsasl.jaas.config=org.apache.kafka.common.security.scram."
                    f'ScramLoginModule required username="{self.user}" password="{self.password}";\n')
        if self.ca_file:
            out += f"ssl.truststore.type=PEM\nssl.truststore.location={self.ca_file}\n"
        return out


def keystore_path(data_dir: str) -> str:
    """Where the broker's unit puts its key and certificate together (Kafka's PEM keystore is one file)."""
    return f"{data_dir}/tls/keystore.pem"


def broker_properties(node_id: int, address: str, port: int, controller_port: int, data_dir: str, user: str,
                      password: str, partitions: int, retention_s: float, ca_file: str = "") -> str:
    """``server.properties`` of a one-node KRaft cluster on this node: clients
    with SASL SCRAM, over TLS with ``ca_file`` (SASL_SSL; the key and
    certificate in :func:`keystore_path`)."""
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" '
            f'password="{password}";')
    proto = "SASL_SSL" if ca_file else "SASL_PLAINTEXT"
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"{proto}://{address}:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"{proto}://{address}:{port}",
        "listener.security.protocol.map": f"{proto}:{proto},CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": proto,
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.{proto.lower()}.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "log.dirs": f"{data_dir}/data",
        "num.partitions": str(partitions),
        "log.retention.ms": str(int(retention_s * 1000)),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # topics are made at deploy, with the service's partitions and retention
        "auto.create.topics.enable": "false",
    }
    if ca_file:
        lines.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": keystore_path(data_dir),
                      "ssl.truststore.type": "PEM", "ssl.truststore.location": ca_file})
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def scram_argument(user: str, password: str) -> str:
    """``kafka-storage format --add-scram``'s argument: the user exists before the broker first starts."""
    return f"{MECHANISM}=[name={user},password={password}]"


def topic_settings(service_logs: dict | None, defaults: dict) -> tuple[int, float]:
    """A service's (partitions, retention seconds): its spec's ``logs``, else ``bay:kafka``'s."""
    s = service_logs or {}
    return int(s.get("partitions") or defaults["partitions"]), float(s.get("retention") or defaults["retention"])


def ensure_topic(client: Client, service: str, partitions: int, retention_s: float, timeout: float = 15.0) -> dict:
    """The service's log topic exists with at least ``partitions`` partitions
    and this retention: made, grown, or its retention changed. Returns what was done."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

    topic = names.log_topic(service)
    admin = AdminClient(client.conf())
    retention_ms = str(int(retention_s * 1000))
    try:
        meta = admin.list_topics(timeout=timeout)
        if topic not in meta.topics:
            admin.create_topics([NewTopic(topic, partitions, 1, config={"retention.ms": retention_ms})],
                                request_timeout=timeout)[topic].result(timeout)
            return {"topic": topic, "created": True, "partitions": partitions, "retention_ms": int(retention_ms)}
        have = len(meta.topics[topic].partitions)
        done = {"topic": topic, "created": False, "partitions": max(have, partitions),
                "retention_ms": int(retention_ms)}
        if partitions > have:
            admin.create_partitions([NewPartitions(topic, partitions)], request_timeout=timeout)[topic].result(timeout)
            done["grown_from"] = have
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        current = admin.describe_configs([res], request_timeout=timeout)[res].result(timeout)
        if current.get("retention.ms") is None or current["retention.ms"].value != retention_ms:
            res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
                ConfigEntry("retention.ms", retention_ms, incremental_operation=AlterConfigOpType.SET)])
            admin.incremental_alter_configs([res], request_timeout=timeout)[res].result(timeout)
            done["retention_changed"] = True
        return done
    except KafkaException as err:
        raise KafkaError(f"Kafka at {client.bootstrap}: topic {topic}: {err.args[0].str() if err.args else err}; "
                         "check bay:kafka (is the broker up? the password right?) and deploy again") from None


def delete_topic(client: Client, service: str, timeout: float = 15.0) -> dict:
    """Delete the service's log topic (``deleted`` False: there was none)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    topic = names.log_topic(service)
    admin = AdminClient(client.conf())
    try:
        if topic not in admin.list_topics(timeout=timeout).topics:
            return {"topic": topic, "deleted": False}
        admin.delete_topics([topic], request_timeout=timeout)[topic].result(timeout)
        return {"topic": topic, "deleted": True}
    except KafkaException as err:
        raise KafkaError(f"Kafka at {client.bootstrap}: deleting topic {topic}: "
                         f"{err.args[0].str() if err.args else err}") from None


#: the most a node's relay holds for Kafka (KiB)
BUFFER_KBYTES = 64 * 1024


class Sink:
    """A producer of log records that never blocks its caller: records wait
    in librdkafka's queue (at most ``buffer``) while Kafka does not answer and
    are sent when it does (idempotent, acks from all replicas); beyond the
    buffer (``buffer`` records, and ``BUFFER_KBYTES``: librdkafka would
    hold 1 GiB), new records are dropped and counted."""

    def __init__(self, client: Client, buffer: int = 100_000, **extra):
        from confluent_kafka import Producer

        self.producer = Producer(client.conf(**{
            "enable.idempotence": True, "acks": "all", "linger.ms": 20, "compression.type": "lz4",
            "queue.buffering.max.messages": buffer, "queue.buffering.max.kbytes": BUFFER_KBYTES,
            "message.timeout.ms": 600_000, **extra}))
        self.sent = self.failed = self.dropped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-sink", daemon=True)
        self._poller.start()

    def _delivered(self, err, _msg) -> None:
        with self._lock:
            if err is None:
                self.sent += 1
            else:
                self.failed += 1
                log.warning("a log record was not delivered to Kafka: %s", err)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.5)

    def put(self, topic: str, key: bytes | None, value: bytes) -> bool:
        try:
            self.producer.produce(topic, value=value, key=key, on_delivery=self._delivered)
            return True
        except BufferError:
            with self._lock:
                self.dropped += 1
            return False

    def waiting(self) -> int:
        return len(self.producer)

    def close(self, timeout: float = 10.0) -> int:
        """Send what waits (up to ``timeout``); returns how many are still unsent."""
        left = self.producer.flush(timeout)
        self._stop.set()
        return left
