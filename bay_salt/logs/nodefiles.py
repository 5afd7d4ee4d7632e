"""The files ``bay.logs`` (every node) and ``bay.kafka`` (nodes with role
``kafka``) put in place, from the validated settings: decided here, so they
are unit tested and the same everywhere."""

from __future__ import annotations

import json
import shlex

from bay_salt.logs import kafka
from bay_salt.model import names

LOGS_CONFIG = "/etc/bay/logs.json"
ARCHIVER_CONFIG = "/etc/bay/log-archiver.json"
KAFKA_CONFIG = "/etc/bay/kafka/server.properties"
KAFKA_POM = "/etc/bay/kafka/pom.xml"
#: formats the broker's storage once (root only: it carries the password, never a command line Salt logs)
KAFKA_FORMAT = "/etc/bay/kafka/format.sh"
KAFKA_USER = "bay-kafka"
UNITS = "/etc/systemd/system"


def _kafka_client(cfg: dict) -> dict:
    k = cfg["kafka"]
    return {"bootstrap": k["bootstrap_servers"], "user": k["user"], "password": k["password"],
            "ca_file": k["tls"]["ca_file"]}


def logs_config(cfg: dict) -> dict:
    lg = cfg["logs"]
    tls = cfg["monitoring"]["tls"]
    return {"node": cfg["node"]["id"], "dir": lg["dir"], "retention": lg["retention"],
            "node_max_bytes": lg["node_max_bytes"], "gc_interval": lg["gc_interval"],
            "address": cfg["node"]["address"] or "127.0.0.1", "port": lg["port"],
            "cert_file": tls["cert_file"], "key_file": tls["key_file"],
            "token_public_key": lg["token_public_key"],
            "relay_port": lg["relay_port"] if cfg["kafka"]["bootstrap_servers"] else 0,
            "relay_buffer": lg["relay_buffer"], "ship_output": lg["ship_output"], "kafka": _kafka_client(cfg)}


def unit(description: str, after: str, exec_start: str, before: tuple[str, ...] = (), after_exec: tuple[str, ...] = ()
         ) -> str:
    """A systemd unit of a long-running daemon, restarted when it dies
    (``before``/``after_exec``: more [Service] lines, around ExecStart and its restart policy)."""
    head = "".join(f"{x}\n" for x in before)
    tail = "".join(f"{x}\n" for x in after_exec)
    return f"""[Unit]
Description={description}
After={after}

[Service]
Type=simple
{head}ExecStart={exec_start}
Restart=always
RestartSec=2
{tail}
[Install]
WantedBy=multi-user.target
"""


def logs_unit(cfg: dict) -> str:
    return unit("Bay logs (containers' output, live and kept, over HTTPS; the services' log relay into Kafka)",
                "docker.service", f"{cfg['python']['bin_env']}/bin/bay-logs --config {LOGS_CONFIG}",
                after_exec=("Nice=10", "MemoryMax=512M"))


def files(cfg: dict) -> dict[str, dict]:
    """Every file of ``bay.logs``: ``{path: {contents, mode}}`` (the
    configuration holds Kafka's password: root only)."""
    return {LOGS_CONFIG: {"contents": json.dumps(logs_config(cfg), indent=2) + "\n", "mode": "0600"},
            f"{UNITS}/bay-logs.service": {"contents": logs_unit(cfg), "mode": "0644"}}


def kafka_layout(cfg: dict) -> dict:
    k = cfg["kafka"]
    return {"lib_dir": k["lib_dir"], "data_dir": k["data_dir"], "java_package": k["java_package"],
            "config": KAFKA_CONFIG, "pom": KAFKA_POM, "user": KAFKA_USER,
            "archive": bool(cfg["logs"]["archive"]["hdfs"]), "format": KAFKA_FORMAT,
            "formatted": f"{k['data_dir']}/data/meta.properties"}


def format_command(cfg: dict) -> str:
    """Formats the broker's storage once (a cluster id from the node's name
    hash, Bay's user made before the broker first starts)."""
    k = cfg["kafka"]
    cmd = kafka.java_command(k["heap"], k["lib_dir"], None, "kafka.tools.StorageTool", "format",
                             "--ignore-formatted", "-t", cluster_id(cfg["cluster"]), "-c", KAFKA_CONFIG, "--add-scram",
                             kafka.scram_argument(k["user"], k["password"]))
    return " ".join(shlex.quote(a) for a in cmd)


def cluster_id(cluster: str) -> str:
    """A KRaft cluster id (22 characters of URL-safe base64) from Bay's cluster name."""
    import base64
    import hashlib

    return base64.urlsafe_b64encode(hashlib.sha256(f"bay-{cluster}".encode()).digest()[:16]).decode().rstrip("=")


def kafka_unit(cfg: dict) -> str:
    k = cfg["kafka"]
    cmd = kafka.java_command(k["heap"], k["lib_dir"], f"{k['data_dir']}/log4j2.properties", "kafka.Kafka", KAFKA_CONFIG,
                             java="/usr/bin/java", fixed_heap=True)
    before = [f"User={KAFKA_USER}"]
    tls = k["tls"]
    if tls["cert_file"]:
        # Kafka's PEM keystore is one file: the node's key and certificate put together at each start, as
        # root ("+"), readable by the broker's user only (a renewed certificate is taken at the next restart)
        store = kafka.keystore_path(k["data_dir"])
        before.append(f"ExecStartPre=+/bin/sh -c 'umask 077 && install -d -m 0700 -o {KAFKA_USER} "
                      f"{store.rsplit('/', 1)[0]} && cat {tls['key_file']} {tls['cert_file']} > {store}.new && "
                      f"chown {KAFKA_USER} {store}.new && mv {store}.new {store}'")
    return unit("Apache Kafka for Bay's logs (KRaft: broker and controller; clients with SASL SCRAM"
                f"{', over TLS' if tls['cert_file'] else ''})", "network-online.target", " ".join(cmd),
                before=tuple(before), after_exec=("LimitNOFILE=100000", "TimeoutStopSec=60"))


LOG4J = """status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
"""


def archiver_config(cfg: dict) -> dict:
    a = cfg["logs"]["archive"]
    return {"node": cfg["node"]["id"], "kafka": _kafka_client(cfg), "hdfs": a["hdfs"], "user": a["user"],
            "roll_seconds": a["roll_seconds"], "roll_bytes": a["roll_bytes"]}


def archiver_unit(cfg: dict) -> str:
    return unit("Bay log archiver (Kafka's log topics into HDFS; offsets committed after each file is closed)",
                "bay-kafka.service", f"{cfg['python']['bin_env']}/bin/bay-log-archiver --config {ARCHIVER_CONFIG}",
                after_exec=("TimeoutStopSec=60", "MemoryMax=1G"))


def kafka_files(cfg: dict) -> dict[str, dict]:
    """The broker's (and the archiver's, when ``bay:logs:archive:hdfs`` is set) files."""
    k = cfg["kafka"]
    props = kafka.broker_properties(1, cfg["node"]["address"], k["port"], k["controller_port"], k["data_dir"],
                                    k["user"], k["password"], k["partitions"], k["retention"],
                                    ca_file=k["tls"]["ca_file"] if k["tls"]["cert_file"] else "")
    # the broker's configuration and the format script are the broker user's (they hold the password)
    out = {KAFKA_CONFIG: {"contents": props, "mode": "0640", "user": KAFKA_USER},
           KAFKA_FORMAT: {"contents": f"#!/bin/sh\nset -e\nexec {format_command(cfg)}\n", "mode": "0700",
                          "user": KAFKA_USER},
           f"{k['data_dir']}/log4j2.properties": {"contents": LOG4J, "mode": "0644"},
           f"{UNITS}/bay-kafka.service": {"contents": kafka_unit(cfg), "mode": "0644"}}
    if cfg["logs"]["archive"]["hdfs"]:
        out[ARCHIVER_CONFIG] = {"contents": json.dumps(archiver_config(cfg), indent=2) + "\n", "mode": "0600"}
        out[f"{UNITS}/bay-log-archiver.service"] = {"contents": archiver_unit(cfg), "mode": "0644"}
    return out


SEARCH_USER = "bay-search"
SEARCH_POM = "/etc/bay/search/pom.xml"
INDEXER_CONFIG = "/etc/bay/log-indexer.json"


def search_embedded(cfg: dict) -> bool:
    """Whether this node runs Bay's OpenSearch (a kafka node, search on, no site store)."""
    s = cfg["logs"]["search"]
    return bool(s["enabled"] and not s["url"] and "kafka" in cfg["node"]["roles"] and not cfg["kafka"]["bootstrap"])


def search_url(cfg: dict) -> str:
    s = cfg["logs"]["search"]
    return s["url"] or f"http://127.0.0.1:{s['port']}"


def search_layout(cfg: dict) -> dict:
    s = cfg["logs"]["search"]
    return {"embedded": search_embedded(cfg), "indexer": bool(s["enabled"] and "kafka" in cfg["node"]["roles"]),
            "lib_dir": s["lib_dir"], "data_dir": s["data_dir"], "home": f"{s['data_dir']}/home",
            "pom": SEARCH_POM, "user": SEARCH_USER, "port": s["port"], "url": search_url(cfg)}


def indexer_config(cfg: dict) -> dict:
    s = cfg["logs"]["search"]
    embedded = search_embedded(cfg)
    return {"node": cfg["node"]["id"], "kafka": _kafka_client(cfg),
            # an embedded store per kafka node: each node's indexer reads everything into its own
            "group": f"{names.LOG_INDEXER_GROUP}-{cfg['node']['id']}" if embedded else names.LOG_INDEXER_GROUP,
            "search": {"url": search_url(cfg), "user": s["user"], "password": s["password"], "ca_file": s["ca_file"]},
            "retention_days": s["retention"] / 86400}


def search_unit(cfg: dict) -> str:
    from bay_salt.logs import search

    s = cfg["logs"]["search"]
    home = search_layout(cfg)["home"]
    cmd = search.opensearch_command(home, s["heap"])
    cmd[0] = "/usr/bin/java"
    return unit("OpenSearch for Bay's logs (the search store; HTTP on loopback)", "network-online.target",
                " ".join(cmd),
                before=(f"User={SEARCH_USER}", f"ExecStartPre=+{cfg['python']['bin_env']}/bin/bay-search-home "
                        f"--lib {s['lib_dir']} --home {home} --data {s['data_dir']}/data --port {s['port']} "
                        f"--owner {SEARCH_USER}"),
                after_exec=("LimitNOFILE=65535", "TimeoutStopSec=60"))


def indexer_unit(cfg: dict) -> str:
    after = "bay-search.service bay-kafka.service" if search_embedded(cfg) else "bay-kafka.service"
    return unit("Bay log indexer (Kafka's log topics into the search store; offsets committed after each bulk)",
                after, f"{cfg['python']['bin_env']}/bin/bay-log-indexer --config {INDEXER_CONFIG}",
                after_exec=("TimeoutStopSec=60", "MemoryMax=512M"))


def search_files(cfg: dict) -> dict[str, dict]:
    """The indexer's (and, embedded, the search store's) files on a kafka node."""
    out = {INDEXER_CONFIG: {"contents": json.dumps(indexer_config(cfg), indent=2) + "\n", "mode": "0600"},
           f"{UNITS}/bay-log-indexer.service": {"contents": indexer_unit(cfg), "mode": "0644"}}
    if search_embedded(cfg):
        out[f"{UNITS}/bay-search.service"] = {"contents": search_unit(cfg), "mode": "0644"}
    return out


def report(cfg: dict) -> dict:
    """What the master needs (no secret): where nodes serve output, for how long tokens are good, where Kafka is."""
    lg = cfg["logs"]
    return {"enabled": lg["enabled"], "port": lg["port"], "token_ttl": lg["token_ttl"],
            "kafka": cfg["kafka"]["bootstrap_servers"], "kafka_nodes": cfg["kafka"]["nodes"],
            "partitions": cfg["kafka"]["partitions"], "retention": cfg["kafka"]["retention"],
            "archive": bool(lg["archive"]["hdfs"]), "search": bool(lg["search"]["enabled"])}
