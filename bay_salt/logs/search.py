"""Logs you can search: the log indexer (Kafka's log topics into a search
store through the Elasticsearch bulk API, the role ElasticSearch played in
the seed), searching it, and the embedded search store (OpenSearch run from
Maven's jars; docs/logs.md says why OpenSearch).

The indexer is one consumer group (:data:`names.LOG_INDEXER_GROUP`) beside
the archiver's, from the same topics. A record becomes a document of the
service's index of its day (:func:`names.search_index`) whose id is its
partition and offset, written with the bulk API's ``create``: a record
indexed twice (the indexer killed between the store's answer and the
commit) is refused the second time (409), so the index never holds it
twice. A partition's offset is committed only after the store acknowledged
every record of the batch up to it; what the store refuses for good (400: a
document it cannot map) is logged and counted, not retried for ever.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from bay_salt.logs.archive import archived_line
from bay_salt.model import names
from bay_salt.util import retry

log = logging.getLogger("bay.indexer")

#: records per bulk request (at most)
BATCH = 2000
#: a search answers at most this many records
MAX_HITS = 10_000
#: at most this many characters of a query
MAX_QUERY = 500


class SearchError(RuntimeError):
    """The search store did not take or answer something; the message says what."""


def bulk_body(records: list[tuple[str, int, int, bytes | None, int]]) -> tuple[bytes, list[tuple[int, int]]]:
    """The bulk request for ``(service, partition, offset, value, timestamp ms)``
    records: NDJSON, a ``create`` per record into its service's index of its
    day, id ``PARTITION-OFFSET``; and the (partition, offset) of each item, in order."""
    lines, keys = [], []
    for service, partition, offset, value, ms in records:
        index = names.search_index(service, ms / 1000.0)
        lines.append(b'{"create":{"_index":"%s","_id":"%d-%d"}}\n' % (index.encode(), partition, offset))
        doc = archived_line(value, partition, offset)
        if b'"@timestamp"' not in doc:
            stamp = datetime.datetime.fromtimestamp(ms / 1000.0, datetime.UTC).isoformat(timespec="milliseconds")
            doc = doc[:-2] + b',"@timestamp":"' + stamp.encode() + b'"}\n'
        lines.append(doc)
        keys.append((partition, offset))
    return b"".join(lines), keys


def bulk_outcome(answer: dict) -> tuple[int, int, list[str], bool]:
    """(created, already there, refused for good, retry): a bulk answer's
    items; ``retry`` when any item may succeed later (429, 5xx)."""
    created = present = 0
    refused, retry_later = [], False
    for item in answer.get("items") or []:
        op = item.get("create") or item.get("index") or {}
        status = int(op.get("status") or 0)
        if status in (200, 201):
            created += 1
        elif status == 409:
            present += 1
        elif status == 429 or status >= 500:
            retry_later = True
        else:
            refused.append(f"{op.get('_id')}: {status} {(op.get('error') or {}).get('reason', '')}"[:300])
    return created, present, refused, retry_later


class Store:
    """A search store with the Elasticsearch API (OpenSearch, Elasticsearch) at ``url``."""

    def __init__(self, url: str, user: str = "", password: str = "", ca_file: str = "", timeout: float = 30.0):
        import requests

        self.url = url.rstrip("/")
        self.http = requests.Session()
        if user:
            self.http.auth = (user, password)
        self.http.verify = ca_file or True
        self.timeout = timeout

    def _call(self, method: str, path: str, **kw):
        import requests

        try:
            res = self.http.request(method, f"{self.url}{path}", timeout=self.timeout, **kw)
        except requests.RequestException as err:
            raise SearchError(f"search store {self.url} does not answer: {type(err).__name__}") from None
        return res

    def bulk(self, body: bytes) -> dict:
        res = self._call("POST", "/_bulk", data=body, headers={"Content-Type": "application/x-ndjson"})
        if res.status_code != 200:
            raise SearchError(f"search store {self.url}: bulk answered {res.status_code} {res.text[:200]}")
        return res.json()

    def ensure_template(self) -> None:
        """Bay's log indices: one shard, no replica (a single node is green), ``@timestamp`` a date."""
        body = {"index_patterns": [f"{names.SEARCH_INDEX_PREFIX}*"], "priority": 10,
                "template": {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                             "mappings": {"properties": {"@timestamp": {"type": "date"},
                                                         "message": {"type": "text"},
                                                         "partition": {"type": "integer"},
                                                         "offset": {"type": "long"}}}}}
        res = self._call("PUT", "/_index_template/bay-logs", json=body)
        if res.status_code != 200:
            raise SearchError(f"search store {self.url}: index template answered {res.status_code} {res.text[:200]}")

    def indices(self) -> list[str]:
        res = self._call("GET", f"/_cat/indices/{names.SEARCH_INDEX_PREFIX}*", params={"format": "json", "h": "index"})
        if res.status_code != 200:
            raise SearchError(f"search store {self.url}: listing indices answered {res.status_code}")
        return sorted(r["index"] for r in res.json())

    def prune(self, retention: Callable[[str], float], now: float | None = None) -> list[str]:
        """Delete the indices whose day is past their service's retention (seconds)."""
        now = time.time() if now is None else now
        gone = []
        for index in self.indices():
            parsed = names.parse_search_index(index)
            if parsed is None:
                continue
            service, day = parsed
            past = day + 86400 < now - retention(service)
            if past and self._call("DELETE", f"/{index}").status_code == 200:
                gone.append(index)
        return gone

    def search(self, service: str, query: str | None, since: float, until: float | None = None,
               limit: int = 1000) -> list[dict]:
        """The newest ``limit`` records of ``service`` from ``since`` to
        ``until`` matching ``query`` (the store's simple query syntax: words,
        "phrases", -exclusions, field:value; no regular expressions), oldest first."""
        if not 0 < limit <= MAX_HITS:
            raise ValueError(f"limit {limit}: from 1 to {MAX_HITS} records")
        if query and len(query) > MAX_QUERY:
            raise ValueError(f"search: at most {MAX_QUERY} characters")
        rng = {"gte": int(since * 1000), "format": "epoch_millis"}
        if until is not None:
            rng["lte"] = int(until * 1000)
        must: list[dict] = [{"range": {"@timestamp": rng}}]
        if query:
            must.append({"simple_query_string": {"query": query, "default_operator": "and",
                                                 "flags": "AND|OR|NOT|PHRASE|PREFIX|WHITESPACE|ESCAPE"}})
        body = {"size": limit, "sort": [{"@timestamp": {"order": "desc", "unmapped_type": "date"}},
                                       {"offset": {"order": "desc", "unmapped_type": "long"}}], "query": {"bool": {"must": must}}}
        res = self._call("POST", f"/{names.search_pattern(service)}/_search", json=body,
                         params={"ignore_unavailable": "true", "allow_no_indices": "true"})
        if res.status_code == 400:
            reason = ((res.json().get("error") or {}).get("root_cause") or [{}])[0].get("reason", "")
            raise ValueError(f"search {query!r}: the store refused it: {reason[:200]}")
        if res.status_code != 200:
            raise SearchError(f"search store {self.url}: search answered {res.status_code} {res.text[:200]}")
        hits = [h["_source"] for h in res.json()["hits"]["hits"]]
        return list(reversed(hits))

    def count(self, service: str) -> int:
        res = self._call("GET", f"/{names.search_pattern(service)}/_count",
                         params={"ignore_unavailable": "true", "allow_no_indices": "true"})
        return int(res.json().get("count", 0)) if res.status_code == 200 else 0

    def refresh(self, service: str) -> None:
        self._call("POST", f"/{names.search_pattern(service)}/_refresh",
                   params={"ignore_unavailable": "true", "allow_no_indices": "true"})


class Indexer:
    """``consumer``: a confluent_kafka Consumer (not subscribed yet); ``store``: a :class:`Store`."""

    def __init__(self, consumer, store: Store, batch: int = BATCH, sleep: Callable[[float], None] = time.sleep):
        self.consumer, self.store = consumer, store
        self.batch, self.sleep = batch, sleep
        self.pending: list[tuple[str, str, int, int, bytes | None, int]] = []  # (topic, service, p, off, value, ms)
        self.indexed = self.present = self.refused = self.skipped = 0
        self.failing_since: float | None = None
        self._services: dict[str, str] = {}

    def subscribe(self) -> None:
        self.consumer.subscribe([f"^{re.escape(names.LOG_TOPIC_PREFIX)}.*"], on_assign=self.on_assign,
                                on_revoke=self.on_revoke, on_lost=self.on_revoke)

    def on_assign(self, consumer, partitions) -> None:
        consumer.assign(partitions)
        log.info("indexing %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing")

    def on_revoke(self, consumer, partitions) -> None:
        """Another indexer takes them: what was read and not acknowledged is dropped (read again there)."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.pending = [r for r in self.pending if (r[0], r[2]) not in gone]

    def step(self, timeout: float = 1.0) -> int:
        """Read up to a batch (nothing new while the store refuses the last
        one), send it, commit what it acknowledged. Returns the records sent."""
        if not self.pending:
            for m in self.consumer.consume(num_messages=self.batch, timeout=timeout):
                err = m.error()
                if err is not None:
                    if not err.retriable() and err.fatal():
                        raise RuntimeError(f"Kafka: {err.str()}")
                    log.info("Kafka: %s", err.str())
                    continue
                topic = m.topic()
                service = self._services.get(topic)
                if service is None:
                    service = self._services[topic] = names.log_topic_service(topic) or ""
                if not service:
                    self.skipped += 1
                    continue
                ts = m.timestamp()
                ms = ts[1] if ts and ts[0] and ts[1] > 0 else int(time.time() * 1000)
                self.pending.append((topic, service, m.partition(), m.offset(), m.value(), ms))
        if not self.pending:
            return 0
        return self.send()

    def send(self) -> int:
        body, _ = bulk_body([(s, p, o, v, ms) for _, s, p, o, v, ms in self.pending])
        try:
            created, present, refused, again = bulk_outcome(self.store.bulk(body))
        except SearchError as err:
            self._failing(str(err))
            return 0
        if again:
            self._failing("the store asked to slow down (429/5xx)")
            return 0
        if self.failing_since is not None:
            log.info("the search store takes records again after %.0f s", time.monotonic() - self.failing_since)
            self.failing_since = None
        for r in refused:
            log.warning("indexer: a record the store refuses for good (skipped): %s", r)
        self.indexed += created
        self.present += present
        self.refused += len(refused)
        sent = len(self.pending)
        self.commit()
        return sent

    def _failing(self, why: str) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("indexer: %s; the batch is sent again until it is taken (reading stops meanwhile)", why)
        self.sleep(1.0)

    def commit(self) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        last: dict[tuple[str, int], int] = {}
        for topic, _, p, o, _, _ in self.pending:
            last[(topic, p)] = max(o, last.get((topic, p), -1))
        self.pending = []
        try:
            # asynchronous: the store has them already; a commit lost with a crash means a batch read
            # again and refused as already there (409), never a record lost or indexed twice
            self.consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                                 asynchronous=True)
        except KafkaException as err:  # revoked meanwhile: its next owner reads them again (ids: no duplicate)
            log.warning("indexer: offsets not committed (%s)", err)


def consumer_conf(node: str, group: str = names.LOG_INDEXER_GROUP) -> dict:
    """Manual commits, from the start of a new topic. ``group``: the indexers
    that share the work (one search store); an embedded store on each kafka
    node has an indexer group of its own. Not a static member (unlike the
    archiver): a static member restarted quickly gets its old assignment back
    without a rebalance, and a topic made meanwhile was then not read for
    minutes (seen in the crash test); a restart costs a rebalance instead."""
    return {"group.id": group, "client.id": f"bay-indexer-{node}",
            "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000, "topic.metadata.refresh.interval.ms": 5000, "max.poll.interval.ms": 300000}


# --- the embedded search store -------------------------------------------------------
OPENSEARCH_VERSION = "2.19.6"
#: the modules a distribution has that Bay's search needs: HTTP (netty4) and the common analyzers
MODULES = {
    "transport-netty4": ("org.opensearch.transport.Netty4Plugin", ("netty-", "transport-netty4-client-")),
    "analysis-common": ("org.opensearch.analysis.common.CommonAnalysisPlugin", ("analysis-common-",)),
}
#: what OpenSearch's own netty4 module grants itself (its plugin-security.policy)
NETTY_POLICY = """grant codeBase "${codebase.netty-common}" {
  permission java.io.FilePermission "/proc/sys/net/core/somaxconn", "read";
  permission java.net.SocketPermission "*", "accept,connect";
  permission java.lang.RuntimePermission "*", "setContextClassLoader";
};
grant codeBase "${codebase.netty-transport}" {
  permission java.util.PropertyPermission "sun.nio.ch.bugLevel", "write";
};
"""
LOG4J = """status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
logger.node.name = org.opensearch.node.Node
logger.node.level = info
"""


def opensearch_files(home: str, lib: str, data: str, address: str, port: int, transport_port: int) -> dict[str, str]:
    """What an OpenSearch home made of Maven's jars holds besides the jars
    (path -> content): the two modules' descriptors and netty's policy, the
    configuration (one node, its HTTP on ``address:port``), logging to stdout."""
    out = {}
    for name, (classname, _) in MODULES.items():
        out[f"{home}/modules/{name}/plugin-descriptor.properties"] = (
            f"description={name} (from Maven's jars)\nversion={OPENSEARCH_VERSION}\nname={name}\n"
            f"classname={classname}\njava.version=11\nopensearch.version={OPENSEARCH_VERSION}\n")
    out[f"{home}/modules/transport-netty4/plugin-security.policy"] = NETTY_POLICY
    out[f"{home}/config/opensearch.yml"] = (
        f"cluster.name: bay-logs\nnode.name: search\npath.data: {data}\npath.logs: {data}/logs\n"
        f"network.host: {address}\nhttp.port: {port}\ntransport.port: {transport_port}\n"
        "discovery.type: single-node\naction.auto_create_index: \"bay-logs.*\"\n")
    out[f"{home}/config/log4j2.properties"] = LOG4J
    return out


def opensearch_links(home: str, lib: str) -> dict[str, str]:
    """link -> jar: each of Maven's jars in ``lib`` where a distribution keeps it (lib/ or its module's dir)."""
    out = {}
    for jar in sorted(p.name for p in Path(lib).glob("*.jar")):
        module = next((m for m, (_, prefixes) in MODULES.items() if jar.startswith(prefixes)), None)
        out[f"{home}/{'modules/' + module if module else 'lib'}/{jar}"] = f"{lib}/{jar}"
    return out


def opensearch_command(home: str, heap: str = "256m") -> list[str]:
    return ["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dopensearch.path.home={home}", f"-Dopensearch.path.conf={home}/config",
            "-Dopensearch.distribution.type=tar", "-Dopensearch.bundled_jdk=false",
            "-cp", f"{home}/lib/*", "org.opensearch.bootstrap.OpenSearch"]


def make_home(home: str, lib: str, data: str, address: str, port: int, transport_port: int) -> None:
    """Lay out an OpenSearch home (a test's, a bench's; the bay.search state writes the same files)."""
    import shutil

    for link, jar in opensearch_links(home, lib).items():
        p = Path(link)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists():
            continue
        if "/modules/" in link:  # copied: the security manager lets a module read its own directory only
            shutil.copyfile(jar, p)
        else:
            p.symlink_to(jar)
    for path, text in opensearch_files(home, lib, data, address, port, transport_port).items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    for d in ("bin", "plugins"):
        Path(home, d).mkdir(exist_ok=True)


def home_main(argv: list[str] | None = None) -> None:
    """``bay-search-home``: lay out the OpenSearch home before each start (the
    jars as the lib dir holds them now), its data dir the server's user's."""
    import pwd
    import shutil

    ap = argparse.ArgumentParser(prog="bay-search-home", description="lay out Bay's OpenSearch home")
    for opt in ("--lib", "--home", "--data", "--owner"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--transport-port", type=int, default=0, help="default: PORT + 100")
    args = ap.parse_args(argv)
    if not Path(args.lib, ".complete").exists():
        raise SystemExit(f"bay-search-home: no jars in {args.lib} (bay.logs fetches them)")
    shutil.rmtree(Path(args.home, "lib"), ignore_errors=True)  # the jars of now, none of before
    shutil.rmtree(Path(args.home, "modules"), ignore_errors=True)
    Path(args.data).mkdir(parents=True, exist_ok=True)
    make_home(args.home, args.lib, args.data, args.address, args.port, args.transport_port or args.port + 100)
    owner = pwd.getpwnam(args.owner)
    for p in [Path(args.data), *Path(args.data).rglob("*"), Path(args.home, "config"),
              *Path(args.home, "config").iterdir()]:
        os.chown(p, owner.pw_uid, owner.pw_gid)


def main(argv: list[str] | None = None) -> None:
    from confluent_kafka import Consumer

    from bay_salt.logs.kafka import Client

    ap = argparse.ArgumentParser(prog="bay-log-indexer", description="Bay's log topics in Kafka into the search store")
    ap.add_argument("--config", default="/etc/bay/log-indexer.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        with open(args.config, encoding="utf-8") as fh:
            cfg = json.load(fh)
        client = Client.from_dict(cfg["kafka"])
        s = cfg["search"]
        store = Store(s["url"], s.get("user", ""), s.get("password", ""), s.get("ca_file", ""))
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"bay-log-indexer: {args.config}: {err}") from None
    retry.at_boot(store.ensure_template, f"the search store {store.url}", on=(SearchError,), logger=log)
    consumer = Consumer(client.conf(**consumer_conf(cfg["node"], cfg.get("group") or names.LOG_INDEXER_GROUP)))
    indexer = Indexer(consumer, store)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    indexer.subscribe()
    log.info("indexing %s* from %s into %s", names.LOG_TOPIC_PREFIX, client.bootstrap, store.url)
    last = 0.0  # prune at the start, then hourly
    retention = float(cfg.get("retention_days", 7)) * 86400
    while not stopping:
        indexer.step(1.0)
        if time.monotonic() - last > 3600:
            last = time.monotonic()
            try:
                gone = store.prune(lambda _service: retention)
                if gone:
                    log.info("deleted indices past retention: %s", ", ".join(gone))
            except SearchError as err:
                log.warning("pruning: %s", err)
    while indexer.pending and indexer.send():
        pass
    consumer.close()
    log.info("stopped: %d indexed, %d already there, %d refused", indexer.indexed, indexer.present, indexer.refused)


if __name__ == "__main__":  # pragma: no cover
    main()
