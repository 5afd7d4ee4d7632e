"""A steady stream of numbered log records into Kafka and the archiver run
as its daemon runs (a process of its own, SIGKILLed by the caller): what the
archive crash test and its bench share."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from bay_salt.logs.relay import now_iso
from bay_salt.model import names


class Producer(threading.Thread):
    """A steady stream of numbered records into a service's topic; ``acked``: the numbers Kafka acknowledged."""

    def __init__(self, kafka, service, rate=300):
        super().__init__(daemon=True)
        from confluent_kafka import Producer as P

        self.p = P(kafka.client().conf(**{"enable.idempotence": True, "acks": "all", "linger.ms": 10,
                                            "message.timeout.ms": 300000}))
        self.topic, self.rate = names.log_topic(service), rate
        self.acked: set[int] = set()
        self.failed = 0
        self.stop = threading.Event()
        self.n = 0

    def _done(self, err, msg):
        if err is None:
            self.acked.add(json.loads(msg.value())["seq"])
        else:
            self.failed += 1

    def run(self):
        while not self.stop.is_set():
            for _ in range(self.rate // 10):
                rec = {"seq": self.n, "message": f"record {self.n}", "time": archive_time(),
                       "service": "archtest", "group": "web", "instance": "i", "node": "host"}
                self.p.produce(self.topic, json.dumps(rec).encode(), key=str(self.n % 7).encode(),
                               on_delivery=self._done)
                self.n += 1
            self.p.poll(0)
            time.sleep(0.1)
        self.p.flush(120)


def archive_time():
    return now_iso(time.time())


def start_archiver(tmp_path, kafka, hdfs_url, node="t1"):
    cfg = tmp_path / "archiver.json"
    cfg.write_text(json.dumps({"node": node, "kafka": {"bootstrap": kafka.bootstrap, "user": kafka.user,
                                                       "password": kafka.password, "ca_file": kafka.ca_file},
                               "hdfs": hdfs_url, "user": "bay", "roll_seconds": 1.0, "roll_bytes": 1 << 20}))
    cfg.chmod(0o600)
    log = open(tmp_path / "archiver.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "bay_salt.logs.archive", "--config", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def archived_seqs(storage, service):
    """Every record in the archive's files, duplicates included: seq -> times it is there."""
    from bay_salt.storage import NotFound

    counts: dict[int, int] = {}
    try:
        dates = storage.list(service)
    except NotFound:
        return counts
    for d in dates:
        for h in storage.list(f"{service}/{d}"):
            for f in storage.list(f"{service}/{d}/{h}"):
                for line in storage.read(f"{service}/{d}/{h}/{f}").splitlines():
                    seq = json.loads(line)["seq"]
                    counts[seq] = counts.get(seq, 0) + 1
    return counts


def start_indexer(tmp_path, kafka, url, node="t1"):
    """The log indexer as its daemon runs (a process of its own, to SIGKILL)."""
    cfg = tmp_path / "indexer.json"
    cfg.write_text(json.dumps({"node": node, "kafka": {"bootstrap": kafka.bootstrap, "user": kafka.user,
                                                       "password": kafka.password, "ca_file": kafka.ca_file},
                               "search": {"url": url}, "retention_days": 7}))
    cfg.chmod(0o600)
    log = open(tmp_path / "indexer.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "bay_salt.logs.search", "--config", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
