"""Logs you can search, with real components: a real Kafka broker (KRaft,
SASL_SSL), a real OpenSearch server made of Maven's jars (as bay.search runs
it), and the log indexer run as its daemon runs: records searchable within
seconds of being produced, and the indexer SIGKILLed ten times during a
stream loses none and indexes none twice."""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time

import pytest
from confluent_kafka import Producer as KafkaProducer

from bay_salt.cluster.processes import OpenSearch
from bay_salt.logs import kafka as bay_kafka
from bay_salt.logs import search
from bay_salt.logs.relay import now_iso
from bay_salt.model import names
from tests.helpers import CHECKOUT
from tests.support.daemons import wait_for
from tests.support.logstream import Producer, start_indexer


@pytest.fixture(scope="module")
def opensearch(tmp_path_factory):
    server = OpenSearch(tmp_path_factory.mktemp("opensearch"), CHECKOUT).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def indexer(tmp_path, kafka, opensearch):
    procs = []

    def start():
        procs.append(start_indexer(tmp_path, kafka, opensearch.url))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(60)


def test_records_are_searchable_within_seconds_of_being_produced(kafka, opensearch, indexer):
    service = "findme"
    bay_kafka.ensure_topic(kafka.client(), service, 2, 86400)
    store = search.Store(opensearch.url)
    indexer()
    p = KafkaProducer(kafka.client().conf(**{"acks": "all", "linger.ms": 5}))
    produced, seen, errors = {}, {}, []
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                for rec in store.search(service, "needle", since=time.time() - 600, limit=500):
                    seen.setdefault(rec["marker"], time.monotonic())
            except search.SearchError as err:  # a new index's shard not started yet (503): looked again
                errors.append(str(err))
            time.sleep(0.1)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    time.sleep(5)  # the indexer has joined its group
    for k in range(60):
        rec = {"marker": k, "message": f"a needle in record {k}", "time": now_iso(time.time()), "level": "info"}
        p.produce(names.log_topic(service), json.dumps(rec).encode())
        p.flush(10)
        produced[k] = time.monotonic()
        time.sleep(0.2)
    try:
        wait_for(lambda: len(seen) == len(produced), 60, "every record found by a search")
    except AssertionError:
        raise AssertionError(f"found {len(seen)} of {len(produced)}; {errors[-1:]}") from None
    assert len(errors) < 20, errors[-1]
    done.set()
    w.join(5)
    lat = sorted(seen[k] - produced[k] for k in produced)
    p95 = lat[int(len(lat) * 0.95) - 1]
    print(f"\nproduced -> searchable, {len(lat)} records: median {statistics.median(lat):.2f} s, p95 {p95:.2f} s, "
          f"max {lat[-1]:.2f} s")
    assert p95 <= 5.0
    # a query names its words; another service's index is not searched
    assert store.search(service, "needle -record", since=time.time() - 600) == []
    assert store.search("findm", "needle", since=time.time() - 600) == []
    with pytest.raises(ValueError, match="at most 500 characters"):
        store.search(service, "x" * 600, since=0)


def test_indexer_killed_ten_times_during_a_stream_loses_none_and_indexes_none_twice(kafka, opensearch, indexer,
                                                                                       tmp_path):
    service = "idxtest"
    bay_kafka.ensure_topic(kafka.client(), service, 3, 86400)
    store = search.Store(opensearch.url)
    producer = Producer(kafka, service)
    producer.start()
    proc = indexer()
    kills = 0
    try:
        for k in range(10):
            time.sleep(1.5 + (k % 3))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = indexer()
        time.sleep(2)
        producer.stop.set()
        producer.join(180)
        assert producer.failed == 0 and len(producer.acked) == producer.n
        want = len(producer.acked)

        def all_there():
            assert proc.poll() is None, (tmp_path / "indexer.log").read_text()[-3000:]
            store.refresh(service)
            return store.count(service) >= want

        wait_for(all_there, 120, "every acknowledged record in the index")
    finally:
        producer.stop.set()
    store.refresh(service)
    count = store.count(service)
    seqs = [r["seq"] for r in store.search(service, None, since=0, limit=search.MAX_HITS)]
    print(f"\n{want} records, {kills} indexer kills: {count} documents, {want - len(set(seqs))} lost, "
          f"{len(seqs) - len(set(seqs))} twice")
    assert count == want and len(seqs) == want and set(seqs) == set(producer.acked)
