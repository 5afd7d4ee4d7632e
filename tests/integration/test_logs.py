"""Logs with real components: Docker containers whose output is kept and
served over HTTPS, a real Kafka broker (KRaft, SASL SCRAM) the relay writes
into, and the real MiniDFS the archiver writes to, while it is SIGKILLed and
the broker restarts under it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import docker
import pytest
from confluent_kafka import Consumer

from bay_salt.cluster import pki
from bay_salt.cluster.demo import BUSYBOX_IMAGE, ensure_busybox
from bay_salt.cluster.progress import Progress
from bay_salt.host import sources as host_sources
from bay_salt.logs import archive, client, kept, server, tokens
from bay_salt.logs import kafka as bay_kafka
from bay_salt.logs.bay_log_handler import BayLogHandler
from bay_salt.logs.relay import Relay
from bay_salt.model import names
from bay_salt.node import containers
from tests.support.daemons import free_port, wait_for
from tests.support.logstream import Producer, archived_seqs, start_archiver


@pytest.fixture(scope="module")
def dc():
    c = docker.from_env(timeout=60)
    ensure_busybox(c, Progress())
    return c


def _labels(service, group, instance):
    return {names.LABEL_SERVICE: service, names.LABEL_GROUP: group, names.LABEL_INSTANCE: instance}


@pytest.fixture
def run_box(dc):
    """Busybox containers labelled like Bay's; each removed at the end."""
    made = []

    def run(script, instance=None, service="logtest", group="web", **kw):
        instance = instance or uuid.uuid4().hex[:8]
        c = dc.containers.run(BUSYBOX_IMAGE, ["sh", "-c", script], name=f"bay-{service}-{group}-{instance}",
                              labels=_labels(service, group, instance), detach=True, **kw)
        made.append(c.name)
        return c, instance

    yield run
    for name in made:
        try:
            dc.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def endpoint(tmp_path):
    """A node's log endpoint on loopback with a certificate from a test CA, and the master's signing key."""
    ca = pki.ca("test CA")
    leaf = pki.leaf(ca, "node", ["localhost"], ["127.0.0.1"])
    (tmp_path / "ca.pem").write_text(ca.cert_pem)
    (tmp_path / "node.pem").write_text(leaf.cert_pem)
    (tmp_path / "node-key.pem").write_text(leaf.key_pem)
    private, public = tokens.new_key_pair()
    cfg = server.Config(node="host", dir=str(tmp_path / "kept"), retention=3600, node_max_bytes=1 << 30,
                        address="127.0.0.1", port=free_port(), cert_file=str(tmp_path / "node.pem"),
                        key_file=str(tmp_path / "node-key.pem"), token_public_key=public)
    httpd = server.serve(cfg)
    try:
        yield {"cfg": cfg, "ca": str(tmp_path / "ca.pem"), "key": private,
               "url": lambda s, g, i: names.log_url("127.0.0.1", cfg.port, s, g, i)}
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_removed_containers_output_is_kept_and_served_with_a_token(dc, run_box, endpoint):
    c, inst = run_box("for i in 1 2 3 4 5; do echo line $i; done; sleep 0.2; echo oops >&2; exit 3")
    c.wait(timeout=30)
    keep = containers.Keep(endpoint["cfg"].dir, "host", 1 << 20)
    assert containers.stop(dc, c.name, timeout=1, keep=keep)
    with pytest.raises(docker.errors.NotFound):
        dc.containers.get(c.name)
    meta = kept.find(endpoint["cfg"].dir, "logtest", "web", inst)
    assert meta.exit_code == 3 and not meta.oom_killed and meta.container == c.name and meta.finished_at
    token = tokens.issue(endpoint["key"], "alice", ["logtest"], 60)
    url = endpoint["url"]("logtest", "web", inst)
    lines = list(client.fetch(url, token, endpoint["ca"], tail=3))
    assert lines == [b"line 4\n", b"line 5\n", b"oops\n"]
    assert len(list(client.fetch(url, token, endpoint["ca"], timestamps=True))) == 6
    # no token, a token for another service, a forged token, a path out of the directory
    with pytest.raises(client.FetchError, match="401"):
        list(client.fetch(url, "", endpoint["ca"]))
    other = tokens.issue(endpoint["key"], "bob", ["other"], 60)
    with pytest.raises(client.FetchError, match="403.*does not cover service logtest"):
        list(client.fetch(url, other, endpoint["ca"]))
    forged = tokens.issue(tokens.new_key_pair()[0], "mallory", ["*"], 60)
    with pytest.raises(client.FetchError, match="401.*not valid"):
        list(client.fetch(url, forged, endpoint["ca"]))
    for bad in ("/v1/logs/logtest/web/..%2F..%2Fetc", "/v1/logs/logtest/../../etc/passwd"):
        with pytest.raises(client.FetchError, match="40[04]"):
            list(client.fetch(f"https://127.0.0.1:{endpoint['cfg'].port}{bad}", token, endpoint["ca"]))
    # the group's list names it, with its end
    import requests

    listing = requests.get(f"https://127.0.0.1:{endpoint['cfg'].port}{names.log_path('logtest', 'web')}",
                           headers={"Authorization": f"Bearer {token}"}, verify=endpoint["ca"], timeout=10).json()
    assert [k["instance"] for k in listing["kept"]] == [inst] and listing["kept"][0]["exit_code"] == 3


def test_follow_streams_a_live_container_until_it_ends(run_box, endpoint):
    c, inst = run_box("i=0; while [ $i -lt 6 ]; do echo tick $i; i=$((i+1)); sleep 0.3; done")
    token = tokens.issue(endpoint["key"], "alice", ["logtest"], 60)
    lines = client.fetch(endpoint["url"]("logtest", "web", inst), token, endpoint["ca"], follow=True)
    assert next(lines) == b"tick 0\n"
    c.reload()
    assert c.status == "running"  # each line comes as it is written, not when the container ends
    assert list(lines) == [f"tick {i}\n".encode() for i in range(1, 6)]


def test_kept_output_goes_by_age_and_by_the_nodes_cap(dc, run_box, tmp_path):
    root = tmp_path / "kept"
    keep = containers.Keep(str(root), "host", 4096)
    made = []
    for k in range(3):
        c, inst = run_box(f"seq 1 2000; echo last {k}")  # ~9 KB: the last 4 KiB kept
        c.wait(timeout=30)
        containers.stop(dc, c.name, timeout=1, keep=keep)
        made.append(inst)
    entries = kept.entries(root)
    assert [e.instance for e in entries] == made[::-1]
    assert all(e.truncated and e.bytes <= 4096 for e in entries)
    last = list(kept.read(root, "logtest", "web", made[2], tail=1))
    assert last == [b"last 2\n"]
    # the node's cap: the oldest go until what is kept fits
    removed = kept.collect(root, retention=3600, max_bytes=2 * 4096)
    assert len(removed) == 1 and made[0] in removed[0]
    # age: everything older than the retention
    removed = kept.collect(root, retention=3600, max_bytes=1 << 30, now=time.time() + 7200)
    assert len(removed) == 2 and kept.entries(root) == []
    assert not any(root.iterdir()) or [p.name for p in root.iterdir()] == [".tmp"]


def _consume(kafka, topic, count, timeout=60):
    c = Consumer(kafka.client().conf(**{"group.id": f"t-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            out.append(json.loads(m.value()))
    c.close()
    return out


def test_container_lines_reach_kafka_with_labels_it_cannot_forge(kafka, dc, run_box):
    bay_kafka.ensure_topic(kafka.client(), "logtest", 2, 3600)
    sink = bay_kafka.Sink(kafka.client())
    sources = host_sources.ContainerSources(refresh=0.2)
    port = free_port()
    relay = Relay("host", sink.put, sources.owner, time.time)
    srv = relay.serve(sources.gateway(), port)
    try:
        gw = sources.gateway()
        # it writes as soon as it starts (before Docker lists it as running)
        script = (f'printf \'%s\\n%s\\n\' \'{{"message":"paid","level":"warning","order":7,"service":"other"}}\' '
                  f'"plain words" | nc {gw} {port}')
        c, inst = run_box(script)
        assert c.wait(timeout=30)["StatusCode"] == 0
        got = _consume(kafka, names.log_topic("logtest"), 2)
    finally:
        srv.shutdown()
        srv.server_close()
        sink.close()
    assert [g["message"] for g in got] == ["paid", "plain words"]
    first = got[0]
    assert (first["service"], first["group"], first["instance"], first["node"]) == ("logtest", "web", inst, "host")
    assert first["level"] == "warning" and first["order"] == 7 and got[1]["level"] == "info" and got[1]["time"]


def test_a_containers_stdout_and_stderr_reach_its_topic_and_a_restarted_shipper_goes_on_where_it_was(
        kafka, dc, run_box, tmp_path):
    """Output a service never sent to the relay: each line into its topic
    with ``stream`` and Docker's time, once, across a restart of the shipper."""
    from bay_salt.logs.output import Cursor, OutputShipper

    bay_kafka.ensure_topic(kafka.client(), "outtest", 1, 3600)
    sink = bay_kafka.Sink(kafka.client())
    relay = Relay("host", sink.put, lambda ip, fresh=False: None, time.time)
    cursor_file = str(tmp_path / "cursor.json")
    first = OutputShipper(dc, relay.take, Cursor(cursor_file))
    threading.Thread(target=first.run, daemon=True).start()
    time.sleep(1)
    script = ("i=0; while [ $i -lt 6 ]; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.5; done; "
              "sleep 4; echo out late; sleep 60")
    c, inst = run_box(script, service="outtest")
    wait_for(lambda: first.lines >= 12, 30, "12 lines read")
    first.cursor.save()
    time.sleep(0.5)
    # a restarted daemon (a new shipper, the saved cursor): only what came after
    second = OutputShipper(dc, relay.take, Cursor(cursor_file))
    first.take = lambda *a: None  # the first one is gone
    threading.Thread(target=second.run, daemon=True).start()
    try:
        got = _consume(kafka, names.log_topic("outtest"), 13, timeout=30)
    finally:
        sink.close()
    lines = sorted((g["stream"], g["message"]) for g in got)
    assert len(got) == 13 and len(set(lines)) == 13, lines
    assert ("stdout", "out late") in lines and ("stderr", "err 5") in lines
    assert all(g["instance"] == inst and g["service"] == "outtest" and g["time"].startswith("20") for g in got)


def test_an_address_docker_gives_again_is_not_taken_for_the_container_that_had_it(run_box):
    """Docker gives a dead container's bridge address to the next container it
    starts (seen: three in a row got 172.17.0.4). The relay and statsd name a
    sender by its address, so a container of another service started next
    must not be taken for the dead one (it would write into that service's
    topic as that service): the address is forgotten as its container dies."""
    sources = host_sources.ContainerSources(refresh=0.2)
    first, _ = run_box("sleep 60", service="payments")
    first.reload()
    ip = first.attrs["NetworkSettings"]["IPAddress"]
    assert sources.owner(ip, fresh=True)[0] == "payments"
    first.remove(force=True)
    for _ in range(20):  # the next container with that address (Docker gives it again at once)
        second, inst = run_box("sleep 60", service="mallory")
        second.reload()
        if second.attrs["NetworkSettings"]["IPAddress"] == ip:
            break
        second.remove(force=True)
    else:
        pytest.skip(f"Docker did not give {ip} again")
    wait_for(lambda: sources.owner(ip, fresh=True) is not None and sources.owner(ip, fresh=True)[0] != "payments",
             5, "the dead container's address forgotten")
    assert sources.owner(ip) == ("mallory", "web", inst)


def test_the_python_handler_writes_through_the_relay(kafka):
    bay_kafka.ensure_topic(kafka.client(), "handlertest", 1, 3600)
    sink = bay_kafka.Sink(kafka.client())
    port = free_port()
    relay = Relay("host", sink.put, lambda ip, fresh=False: ("handlertest", "api", "i1") if ip == "127.0.0.1" else None,
                  time.time)
    srv = relay.serve("127.0.0.1", port)
    import logging

    logger = logging.getLogger("orders-test")
    handler = BayLogHandler("127.0.0.1", port)
    logger.addHandler(handler)
    try:
        # (a plain record with an extra field: this process's logging is Salt's, which keeps no extras)
        rec = logging.LogRecord("orders-test", logging.WARNING, __file__, 1, "paid %s", (12,), None)
        rec.order = 12
        handler.handle(rec)
        try:
            raise ValueError("no stock")
        except ValueError:
            logger.exception("failed")
        handler.flush()
        got = _consume(kafka, names.log_topic("handlertest"), 2)
    finally:
        logger.removeHandler(handler)
        handler.close()
        srv.shutdown()
        srv.server_close()
        sink.close()
    assert got[0]["message"] == "paid 12" and got[0]["order"] == 12 and got[0]["logger"] == "orders-test"
    assert got[1]["level"] == "error" and "ValueError: no stock" in got[1]["exception"]
    assert got[1]["instance"] == "i1"


def test_deploy_time_topic_is_made_grown_and_its_retention_changed(kafka):
    c = kafka.client()
    made = bay_kafka.ensure_topic(c, "topictest", 2, 3600)
    assert made["created"] and made["partitions"] == 2
    again = bay_kafka.ensure_topic(c, "topictest", 4, 7200)
    assert not again["created"] and again["grown_from"] == 2 and again.get("retention_changed")
    bad = bay_kafka.Client(kafka.bootstrap, "bay", "wrong", kafka.ca_file)
    with pytest.raises(bay_kafka.KafkaError, match=f"Kafka at {kafka.bootstrap}: topic bay.logs.topictest"):
        bay_kafka.ensure_topic(bad, "topictest", 4, 7200, timeout=5)


def test_kafka_takes_sasl_over_tls_only_from_clients_that_check_its_certificate(kafka, tmp_path):
    """SASL_SSL (#24): the password and the records never cross the network in
    clear. A client speaking SASL_PLAINTEXT (the right password) gets nothing;
    one that trusts another CA refuses the broker; the right CA gets through."""
    from bay_salt.cluster import pki

    assert "SASL_SSL://" in kafka.config.read_text() and "SASL_PLAINTEXT" not in kafka.config.read_text()
    plain = bay_kafka.Client(kafka.bootstrap, kafka.user, kafka.password)
    with pytest.raises(bay_kafka.KafkaError):
        bay_kafka.ensure_topic(plain, "tlstest", 1, 3600, timeout=5)
    (tmp_path / "other.pem").write_text(pki.ca("another CA").cert_pem)
    stranger = bay_kafka.Client(kafka.bootstrap, kafka.user, kafka.password, str(tmp_path / "other.pem"))
    with pytest.raises(bay_kafka.KafkaError):
        bay_kafka.ensure_topic(stranger, "tlstest", 1, 3600, timeout=5)
    assert bay_kafka.ensure_topic(kafka.client(), "tlstest", 1, 3600)["created"]


# --- the archive ------------------------------------------------------------------------


def test_archiver_killed_ten_times_and_a_broker_restart_lose_no_record(kafka, hdfs, tmp_path):
    service = "archtest"
    bay_kafka.ensure_topic(kafka.client(), service, 3, 86400)
    url = hdfs.storage_url(f"bay-logs-{uuid.uuid4().hex[:6]}")
    storage = archive.storage_for(url, "bay")
    producer = Producer(kafka, service)
    began = time.time()
    producer.start()
    proc = start_archiver(tmp_path, kafka, url)
    kills = 0
    try:
        for k in range(10):
            time.sleep(2.0 + (k % 3))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            if k == 5:
                kafka.restart()  # the broker goes away under producer and archiver, and comes back
            proc = start_archiver(tmp_path, kafka, url)
        time.sleep(3)
        producer.stop.set()
        producer.join(180)
        assert producer.failed == 0 and len(producer.acked) == producer.n
        want = set(producer.acked)

        def all_there():
            assert proc.poll() is None, (tmp_path / "archiver.log").read_text()[-3000:]
            return want <= set(archived_seqs(storage, service))

        wait_for(all_there, 120, "every acknowledged record in HDFS")
    finally:
        producer.stop.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    counts = archived_seqs(storage, service)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\n{len(want)} records, {kills} archiver kills and a broker restart: 0 lost, {duplicates} duplicates "
          f"({duplicates / kills:.1f} per kill)")
    assert want <= set(counts)
    # each archived line names its partition and offset: a reader drops duplicates
    # read in two halves of the run (a read returns at most archive.MAX_RECORDS; record times are in ms)
    mid, read_back = (began + time.time()) / 2, []
    for since, until in ((began - 60, mid), (mid + 0.001, time.time() + 60)):
        part = archive.read(storage, service, since=since, until=until, limit=archive.MAX_RECORDS)
        assert len(part) < archive.MAX_RECORDS, "a half held more than one read returns: split finer"
        read_back += part
    assert len(read_back) == len(counts) and {r["seq"] for r in read_back} == set(counts)
    assert len(list(tmp_path.glob("archiver.log"))) == 1
    assert "stopped: every record read is in HDFS" in (tmp_path / "archiver.log").read_text()


def test_idle_connections_do_not_hold_the_endpoint(run_box, endpoint):
    """Connections that never start their TLS handshake (or never send a
    request) hold a thread each for at most a few seconds, never the
    endpoint: a reader behind 30 of them (from 30 addresses) is served at once, and so is one
    while another address keeps 1,000 idle ones open (re-dialling each the
    endpoint closes): that address holds its PER_SOURCE slots, no more."""
    import socket
    import threading

    port = endpoint["cfg"].port

    def dial(source):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        return s

    stop, held, dialled = threading.Event(), [], [0]

    def attacker():  # 1,000 idle connections from 127.0.0.2, kept at 1,000
        while not stop.is_set():
            for s in list(held):
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        held.remove(s)
                        s.close()
                except BlockingIOError:
                    pass
                except OSError:
                    held.remove(s)
                    s.close()
            while len(held) < 1000 and not stop.is_set():
                try:
                    held.append(dial("127.0.0.2"))
                    dialled[0] += 1
                except OSError:
                    break
            time.sleep(0.1)

    idle = [dial(f"127.0.1.{i}") for i in range(1, 31)]  # 30 addresses: each takes a slot and a thread
    thread = threading.Thread(target=attacker, daemon=True)
    try:
        c, inst = run_box("echo hello; sleep 60")
        # the line is in Docker's log before the endpoint is asked (a fetch right after the start
        # raced the container's echo once in CI: no line yet)
        wait_for(lambda: b"hello" in c.logs(), 10, "the container's first line")
        token = tokens.issue(endpoint["key"], "alice", ["logtest"], 60)
        began = time.monotonic()
        assert next(client.fetch(endpoint["url"]("logtest", "web", inst), token, endpoint["ca"])) == b"hello\n"
        assert time.monotonic() - began < 3
        # past the handshake time the idle ones are closed by the endpoint
        time.sleep(server.HANDSHAKE + 1)
        idle[0].settimeout(2)
        assert idle[0].recv(1) == b""
        thread.start()
        wait_for(lambda: dialled[0] >= 1000, 60, "1,000 idle connections from 127.0.0.2")
        for _ in range(3):  # across a handshake timeout: the attacker re-dials what is closed
            began = time.monotonic()
            assert next(client.fetch(endpoint["url"]("logtest", "web", inst), token, endpoint["ca"])) == b"hello\n"
            assert time.monotonic() - began < 3
            time.sleep(server.HANDSHAKE / 2)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(10)
        for s in idle + held:
            s.close()


def test_a_follow_stream_ends_when_its_token_does(run_box, endpoint):
    c, inst = run_box("while true; do echo tick; sleep 0.2; done")
    token = tokens.issue(endpoint["key"], "alice", ["logtest"], 3)
    began = time.monotonic()
    got = list(client.fetch(endpoint["url"]("logtest", "web", inst), token, endpoint["ca"], follow=True))
    took = time.monotonic() - began
    assert got and set(got) == {b"tick\n"}
    assert took < 3 + 2, took  # not as long as the container runs
    c.reload()
    assert c.status == "running"


def test_a_connection_that_sends_no_request_is_closed_and_gives_its_slot_back(endpoint, monkeypatch):
    """Past its TLS handshake, a client has REQUEST_WAIT seconds to send its request; one that does
    not is closed, and the slots of its address are free again (a reader from it is served)."""
    import socket
    import ssl

    monkeypatch.setattr(server, "REQUEST_WAIT", 1.0)
    port = endpoint["cfg"].port
    ctx = ssl.create_default_context(cafile=endpoint["ca"])
    held = []
    for _ in range(server.PER_SOURCE):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1")
        held.append(s)  # handshaken, then silent
    try:
        began = time.monotonic()
        for s in held:
            assert s.recv(1) == b""  # closed by the endpoint
        assert time.monotonic() - began < 1.0 + 2
        token = tokens.issue(endpoint["key"], "alice", ["logtest"], 60)
        import requests

        r = requests.get(f"https://127.0.0.1:{port}{names.log_path('logtest', 'web')}",
                         headers={"Authorization": f"Bearer {token}"}, verify=endpoint["ca"], timeout=5)
        assert r.status_code == 200 and r.json()["node"] == "host"
    finally:
        for s in held:
            s.close()
