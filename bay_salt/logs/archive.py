"""The log archiver: Kafka's log topics into HDFS (the role Flume played in
the seed), and reading the archive back.

One consumer group (:data:`names.LOG_ARCHIVER_GROUP`) on the nodes with
role ``kafka``. Each partition it owns has at most one open file, which
holds records of one UTC hour; the file is closed after ``roll_seconds``, at
``roll_bytes``, or when a record of the next hour comes. Closing writes it
whole to a temporary name and renames it to
``SERVICE/DATE/HOUR/part-PARTITION-FIRST-LAST.jsonl`` (atomic: a reader
never sees half a file), and only then commits the partition's offset to
``LAST + 1``.

A crash loses nothing: what was not committed is read again. It does not
duplicate either, in the usual case: before it reads a partition the
archiver looks for the newest file of that partition in HDFS and starts
after its ``LAST`` when that is past the committed offset (a crash between
the rename and the commit). Duplicates remain possible when a partition
moves to another archiver while its file is being closed; each archived
line carries its ``partition`` and ``offset``, so readers drop them
(:func:`read`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bay_salt.model import names
from bay_salt.storage import NotFound, StorageError, from_url
from bay_salt.util import retry

log = logging.getLogger("bay.archiver")

_PART_RE = re.compile(r"^part-(\d+)-(\d+)-(\d+)\.jsonl$")
#: hour directories looked at for a partition's newest file
RECOVER_HOURS = 48


def part_name(partition: int, first: int, last: int) -> str:
    return f"part-{partition:04d}-{first:016d}-{last:016d}.jsonl"


def hour_of(ts: float) -> tuple[str, str]:
    dt = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return dt.strftime("%Y-%m-%d"), dt.strftime("%H")


def archived_line(value: bytes | None, partition: int, offset: int) -> bytes:
    """One line of the archive: the record (a JSON object) with its partition and offset first."""
    head = b'{"partition":%d,"offset":%d' % (partition, offset)
    v = value or b""
    if v[:2] == b'{"' and v[-1:] == b"}" and b"\n" not in v:  # the relay's records: as they are
        return head + b"," + v[1:] + b"\n"
    v = v.strip()
    if v.startswith(b"{") and v.endswith(b"}"):
        inner = v[1:-1].strip()
        return head + (b"," + inner if inner else b"") + b"}\n"
    return head + b',"message":' + json.dumps(v.decode("utf-8", "replace")).encode() + b"}\n"


@dataclass
class OpenFile:
    service: str
    date: str
    hour: str
    first: int
    opened: float
    last: int = -1
    size: int = 0
    lines: list[bytes] = field(default_factory=list)

    def path(self, partition: int) -> str:
        return f"{names.archive_dir(self.service, self.date, self.hour)}/{part_name(partition, self.first, self.last)}"


class Archiver:
    """``consumer``: a confluent_kafka Consumer (not subscribed yet);
    ``storage``: a :mod:`bay_salt.storage` driver rooted at the archive."""

    def __init__(self, consumer, storage, roll_seconds: float, roll_bytes: int,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.consumer, self.storage = consumer, storage
        self.roll_seconds, self.roll_bytes = roll_seconds, roll_bytes
        self.clock, self.wall = clock, wall
        self.open: dict[tuple[str, int], OpenFile] = {}
        self.records = self.files = self.skipped = 0
        self.failing_since: float | None = None
        self._services: dict[str, str] = {}  # topic -> service ("": not a log topic)
        self._hours: dict[int, tuple[str, str]] = {}  # epoch hour -> (date, hour)

    # --- the group -------------------------------------------------------
    def subscribe(self) -> None:
        self.consumer.subscribe([f"^{re.escape(names.LOG_TOPIC_PREFIX)}.*"], on_assign=self.on_assign,
                                on_revoke=self.on_revoke, on_lost=self.on_revoke)

    def on_assign(self, consumer, partitions) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=30)}
        for tp in partitions:
            start = committed.get((tp.topic, tp.partition), -1)
            found = self.recover(tp.topic, tp.partition)
            if found is not None and found + 1 > start:
                log.info("%s[%d]: HDFS has it up to offset %d, past the committed %d: starting after it",
                         tp.topic, tp.partition, found, start)
                start = found + 1
            tp.offset = start if start >= 0 else OFFSET_BEGINNING
        consumer.assign(partitions)
        log.info("archiving %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions) or "nothing")

    def on_revoke(self, consumer, partitions) -> None:
        """Another archiver takes them: what is open is dropped (not committed, so it is read again there)."""
        for tp in partitions:
            self.open.pop((tp.topic, tp.partition), None)

    def recover(self, topic: str, partition: int) -> int | None:
        """The last offset of ``partition`` in the newest of its files in HDFS (None: none there)."""

        service = names.log_topic_service(topic)
        if service is None:
            return None
        try:
            dates = sorted(self.storage.list(service), reverse=True)
        except NotFound:
            return None
        looked = 0
        for date in dates:
            for hour in sorted(self.storage.list(f"{service}/{date}"), reverse=True):
                looked += 1
                lasts = [int(m.group(3)) for f in self.storage.list(f"{service}/{date}/{hour}")
                         if (m := _PART_RE.match(f)) and int(m.group(1)) == partition]
                if lasts:
                    return max(lasts)
                if looked >= RECOVER_HOURS:
                    return None
        return None

    # --- records -----------------------------------------------------------
    def step(self, timeout: float = 1.0) -> int:
        """Close what is due, then read what came (nothing while HDFS refuses
        a file: the records wait in Kafka). Returns the records read."""
        if not self.close_due():
            time.sleep(min(5.0, timeout))
            return 0
        msgs = self.consumer.consume(num_messages=5000, timeout=timeout)
        add = self.add
        for m in msgs:
            err = m.error()
            if err is not None:
                if not err.retriable() and err.fatal():
                    raise RuntimeError(f"Kafka: {err.str()}")
                log.debug("Kafka: %s", err.str())
                continue
            add(m.topic(), m.partition(), m.offset(), m.value(), m.timestamp())
        return len(msgs)

    def add(self, topic: str, partition: int, offset: int, value: bytes | None, timestamp: tuple[int, int]) -> None:
        service = self._services.get(topic)
        if service is None:
            service = self._services[topic] = names.log_topic_service(topic) or ""
        if not service:
            self.skipped += 1
            return
        ms = timestamp[1] if timestamp and timestamp[0] and timestamp[1] > 0 else int(self.wall() * 1000)
        hour = self._hours.get(ms // 3_600_000)
        if hour is None:
            hour = self._hours[ms // 3_600_000] = hour_of(ms / 1000.0)
        key = (topic, partition)
        f = self.open.get(key)
        if f is not None and (f.date, f.hour) != hour:
            self.close(key)
            f = None
        if f is None:
            f = self.open[key] = OpenFile(service, hour[0], hour[1], offset, self.clock())
        line = archived_line(value, partition, offset)
        f.lines.append(line)
        f.size += len(line)
        f.last = offset
        self.records += 1
        if f.size >= self.roll_bytes:
            self.close(key)

    def close_due(self) -> bool:
        """Close the files that are old enough; False while HDFS refuses one."""
        now = self.clock()
        due = [k for k, f in self.open.items() if now - f.opened >= self.roll_seconds]
        return all(self.close(key, quiet=True) for key in due)

    def close(self, key: tuple[str, int], quiet: bool = False) -> bool:
        """Write the file whole under its final name, then commit its offsets."""
        from confluent_kafka import KafkaException, TopicPartition


        f = self.open[key]
        topic, partition = key
        path = f.path(partition)
        try:
            self.storage.put(path, b"".join(f.lines))
        except (StorageError, OSError) as err:
            if self.failing_since is None:
                self.failing_since = self.clock()
                log.warning("HDFS refused %s (%s): reading stops until it takes it", path, err)
            if quiet:
                return False
            raise
        if self.failing_since is not None:
            log.info("HDFS takes files again after %.0f s", self.clock() - self.failing_since)
            self.failing_since = None
        del self.open[key]
        self.files += 1
        try:
            self.consumer.commit(offsets=[TopicPartition(topic, partition, f.last + 1)], asynchronous=False)
        except KafkaException as err:  # revoked meanwhile: its next owner starts after the file (recover)
            log.warning("%s[%d]: offset %d not committed (%s)", topic, partition, f.last + 1, err)
        log.debug("archived %s (%d records)", path, len(f.lines))
        return True

    def close_all(self) -> None:
        for key in list(self.open):
            self.close(key)


#: the most records one read returns
MAX_RECORDS = 10_000


def read(storage, service: str, since: float, until: float | None = None, grep: str | None = None,
         limit: int = 1000) -> list[dict]:
    """Archived records of ``service`` from ``since`` (epoch seconds) to
    ``until`` whose line holds ``grep`` (a fixed string, as ``grep -F``: no
    pattern a caller gives can make the node search for ever), each once
    (duplicates dropped by partition and offset), oldest first; the last
    ``limit`` of them (1 to :data:`MAX_RECORDS`), never more in memory."""
    import heapq


    if not 0 < limit <= MAX_RECORDS:
        raise ValueError(f"limit {limit}: from 1 to {MAX_RECORDS} records")
    needle = grep.encode() if grep else None
    until = until if until is not None else time.time() + 3600
    start_date, start_hour = hour_of(since)
    seen: set[tuple[int, int]] = set()
    out: list[tuple] = []  # a heap of the newest ``limit``
    try:
        dates = storage.list(service)
    except NotFound:
        return []
    for date in sorted(d for d in dates if d >= start_date and d <= hour_of(until)[0]):
        for hour in sorted(storage.list(f"{service}/{date}")):
            if (date, hour) < (start_date, start_hour) or (date, hour) > hour_of(until):
                continue
            for name in sorted(storage.list(f"{service}/{date}/{hour}")):
                if not _PART_RE.match(name):
                    continue
                for line in _lines(storage, f"{service}/{date}/{hour}/{name}"):
                    if needle and needle not in line:
                        continue
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    key = (rec.get("partition"), rec.get("offset"))
                    if key in seen:
                        continue
                    seen.add(key)
                    t = record_time(rec)
                    if t is not None and not since <= t <= until:
                        continue
                    item = (t or 0.0, rec.get("partition") or 0, rec.get("offset") or 0, len(seen), rec)
                    if len(out) < limit:
                        heapq.heappush(out, item)
                    elif item[:4] > out[0][:4]:
                        heapq.heapreplace(out, item)  # the newest ``limit`` kept
    return [item[-1] for item in sorted(out, key=lambda i: i[:4])]


def _lines(storage, path: str) -> Iterator[bytes]:
    yield from storage.read(path).splitlines()


def record_time(rec: dict) -> float | None:
    t = rec.get("time")
    if not isinstance(t, str):
        return None
    try:
        return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def storage_for(url: str, user: str):
    """The archive's storage: ``hdfs://NAMENODE:PORT[,...]/PATH`` (or a local directory, for tests)."""

    return from_url(url, user)


def consumer_conf(node: str) -> dict:
    """The archiver's consumer: manual commits, from the start of a new
    topic, a static member (a restarted archiver takes its partitions back
    at once instead of after the session timeout), new topics seen in seconds."""
    return {"group.id": names.LOG_ARCHIVER_GROUP, "group.instance.id": f"archiver-{node}",
            "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000, "topic.metadata.refresh.interval.ms": 5000,
            "max.poll.interval.ms": 300000}


def main(argv: list[str] | None = None) -> None:
    from confluent_kafka import Consumer

    from bay_salt.logs.kafka import Client

    ap = argparse.ArgumentParser(prog="bay-log-archiver", description="Bay's log topics in Kafka into HDFS")
    ap.add_argument("--config", default="/etc/bay/log-archiver.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        with open(args.config, encoding="utf-8") as fh:
            cfg = json.load(fh)
        k = cfg["kafka"]
        client = Client.from_dict(k)
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"bay-log-archiver: {args.config}: {err}") from None
    # HDFS may come up after us; the hdfs package raises its own errors, and requests' too
    storage = retry.at_boot(lambda: storage_for(cfg["hdfs"], cfg.get("user", "bay")), f"HDFS {cfg['hdfs']}",
                            logger=log)
    consumer = Consumer(client.conf(**consumer_conf(cfg["node"])))
    archiver = Archiver(consumer, storage, float(cfg["roll_seconds"]), int(cfg["roll_bytes"]))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    archiver.subscribe()
    log.info("archiving %s* from %s into %s", names.LOG_TOPIC_PREFIX, client.bootstrap, cfg["hdfs"])
    last = time.monotonic()
    while not stopping:
        archiver.step(1.0)
        if time.monotonic() - last > 60:
            last = time.monotonic()
            log.info("archived %d records in %d files; %d files open", archiver.records, archiver.files,
                     len(archiver.open))
    archiver.close_all()
    consumer.close()
    log.info("stopped: every record read is in HDFS and committed")


if __name__ == "__main__":  # pragma: no cover
    main()
