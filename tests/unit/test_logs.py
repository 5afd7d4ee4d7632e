"""Logs as plain functions: kept output (select, clean-up), tokens, the
relay's records, the archiver's files and commits (over a local directory
and a recording consumer), the reader, the node files, settings and the
runner's operations."""

from __future__ import annotations

import json
import logging
import time

import pytest

from bay_salt.kv.records import Health, Instance
from bay_salt.logs import archive, kafka, kept, nodefiles, operations, relay, tokens
from bay_salt.logs.bay_log_handler import BayLogHandler
from bay_salt.model import names, services, settings
from bay_salt.storage import LocalDriver, StorageError
from tests.helpers import CHECKOUT, TOKENS
from tests.support.fakes import MemoryStore

# --- kept output ---------------------------------------------------------------------------

LINES = [b"2026-11-27T10:00:00.000000001Z one\n", b"2026-11-27T10:00:05.5Z two\n", b"2026-11-27T10:01:00Z three\n"]


def test_select_tails_and_filters_by_time_like_docker_logs():
    since = kept.parse_since("2026-11-27T10:00:05Z")
    assert kept.select(LINES, tail=2) == [b"two\n", b"three\n"]
    assert kept.select(LINES, since=since) == [b"two\n", b"three\n"]
    assert kept.select(LINES, tail=1, timestamps=True) == [LINES[2]]
    assert kept.select(LINES, tail=0) == []
    assert kept.strip_time(b"no stamp here\n") == b"no stamp here\n"


def test_since_takes_durations_epochs_and_times_and_names_what_it_cannot_read():
    assert kept.parse_since("10m", now=1000.0) == 400.0
    assert kept.parse_since("2d", now=200000.0) == 200000.0 - 172800
    assert kept.parse_since("1795000000") == 1795000000.0
    assert kept.parse_since("2026-11-27T10:00:00+01:00") == kept.parse_since("2026-11-27T09:00:00Z")
    with pytest.raises(ValueError, match="since: 'yesterday' is not a time"):
        kept.parse_since("yesterday")


def _kept(root, svc, grp, inst, at, size):
    d = kept.where(root, svc, grp, inst)
    d.mkdir(parents=True)
    (d / kept.OUTPUT).write_bytes(b"x" * size)
    (d / kept.META).write_text(json.dumps(kept.Kept(svc, grp, inst, "n1", f"bay-{svc}-{grp}-{inst}", "img", 1,
                                                    False, "", "", at, size, False).to_dict()))


def test_collect_removes_by_age_then_oldest_first_down_to_the_cap(tmp_path):
    for k, (inst, at) in enumerate([("a1", 100.0), ("a2", 200.0), ("a3", 300.0), ("a4", 400.0)]):
        _kept(tmp_path, "demo", "web" if k < 3 else "api", inst, at, 1000)
    removed = kept.collect(tmp_path, retention=250, max_bytes=1500, now=420.0)
    # a1 is too old; a2 and a3 go for the cap (oldest first) until 1000 bytes remain
    assert [r.split(" ")[0] for r in removed] == ["demo.web/a1", "demo.web/a2", "demo.web/a3"]
    assert [k.instance for k in kept.entries(tmp_path)] == ["a4"]
    assert not (tmp_path / "demo" / "web").exists()  # an empty group's directory goes too
    # what a keep cut short left behind goes once it is an hour old
    (tmp_path / ".tmp" / "a5.x1").mkdir(parents=True)
    (tmp_path / ".tmp" / "a5.x1" / kept.OUTPUT).write_bytes(b"half")
    assert kept.collect(tmp_path, retention=1e12, max_bytes=1 << 30, now=time.time()) == []
    assert kept.collect(tmp_path, retention=1e12, max_bytes=1 << 30, now=time.time() + 7200) == [
        "a5.x1 (a keep cut short)"]


def test_names_from_urls_never_leave_the_directory():
    for bad in ("..", "a/b", "", ".hidden", "A"):
        with pytest.raises(ValueError, match="is not a service, group or instance name"):
            kept.where("/x", "demo", "web", bad)


# --- tokens -------------------------------------------------------------------------------


def test_a_token_covers_the_services_it_names_for_its_time_only():
    private, public = tokens.new_key_pair()
    tok = tokens.issue(private, "alice", ["demo", "shop-*"], 60, now=time.time())
    assert tokens.check(public, f"Bearer {tok}", "demo")["sub"] == "alice"
    assert tokens.check(public, f"Bearer {tok}", "shop-api")
    with pytest.raises(tokens.Refused, match="does not cover service other") as err:
        tokens.check(public, f"Bearer {tok}", "other")
    assert err.value.status == 403
    old = tokens.issue(private, "alice", ["demo"], 60, now=time.time() - 120)
    with pytest.raises(tokens.Refused, match="expired") as err:
        tokens.check(public, f"Bearer {old}", "demo")
    assert err.value.status == 401
    forged = tokens.issue(tokens.new_key_pair()[0], "mallory", ["*"], 60)
    with pytest.raises(tokens.Refused, match="not valid"):
        tokens.check(public, f"Bearer {forged}", "demo")
    for header in (None, "", "Bearer ", "Basic abc"):
        with pytest.raises(tokens.Refused, match="bearer token is needed"):
            tokens.check(public, header, "demo")
    with pytest.raises(tokens.Refused, match="no bay:logs:token_public_key"):
        tokens.check("", f"Bearer {tok}", "demo")


# --- the relay ----------------------------------------------------------------------------


def test_a_line_gets_the_senders_labels_whatever_it_claims():
    rec = relay.record(b'{"message":"paid","service":"other","node":"x","order":7}\n', ("demo", "web", "i1"), "n1", 0.0)
    assert (rec["service"], rec["group"], rec["instance"], rec["node"]) == ("demo", "web", "i1", "n1")
    assert rec["order"] == 7 and rec["level"] == "info" and rec["time"] == "1970-01-01T00:00:00.000Z"
    plain = relay.record(b"just words\r\n", ("demo", "web", "i1"), "n1", 0.0)
    assert plain["message"] == "just words"
    assert relay.record(b"[1, 2]\n", ("demo", "web", "i1"), "n1", 0.0)["message"] == "[1, 2]"
    assert relay.record(b"   \n", ("demo", "web", "i1"), "n1", 0.0) is None
    long = relay.record(b"y" * (relay.MAX_LINE + 10), ("demo", "web", "i1"), "n1", 0.0)
    assert long["truncated"] and len(long["message"]) == relay.MAX_LINE


def test_the_relay_writes_into_the_senders_topic_keyed_by_instance():
    sent = []
    r = relay.Relay("n1", lambda t, k, v: sent.append((t, k, json.loads(v))) or True, lambda ip, fresh=False: None,
                    lambda: 5.0)
    r.take(b"hello\n", ("demo", "web", "i1"))
    assert sent == [(names.log_topic("demo"), b"i1", {"message": "hello", "time": "1970-01-01T00:00:05.000Z",
                                                        "level": "info", "service": "demo", "group": "web",
                                                        "instance": "i1", "node": "n1"})]


def test_the_handler_writes_one_json_line_with_the_extra_fields():
    h = BayLogHandler("127.0.0.1", 9, buffer=2)
    rec = logging.LogRecord("orders", logging.ERROR, __file__, 1, "paid %s", (12,), None)
    rec.order = 12
    doc = json.loads(h.line(rec))
    assert doc["message"] == "paid 12" and doc["level"] == "error" and doc["order"] == 12
    assert doc["logger"] == "orders" and doc["time"].endswith("Z")
    h.close()


# --- the archiver -------------------------------------------------------------------------


class FakeConsumer:
    def __init__(self, log):
        self.log = log
        self.committed_offsets = {}

    def commit(self, offsets, asynchronous):
        for tp in offsets:
            self.log.append(("commit", tp.topic, tp.partition, tp.offset))
            self.committed_offsets[(tp.topic, tp.partition)] = tp.offset


class RecordingStorage(LocalDriver):
    def __init__(self, root, log):
        super().__init__(str(root))
        self.log, self.refuse = log, False

    def put(self, path, data):
        if self.refuse:
            raise StorageError("HDFS is away")
        self.log.append(("put", path))
        super().put(path, data)


def _value(n):
    return json.dumps({"message": f"m{n}", "time": "2026-11-27T10:00:00Z"}).encode()


HOUR10 = (1, int(1795773600 * 1000))  # 2026-11-27 10:00 UTC, a create time
HOUR11 = (1, int((1795773600 + 3600) * 1000))


def test_a_file_is_written_whole_before_its_offsets_are_committed(tmp_path):
    log = []
    clock = [0.0]
    a = archive.Archiver(FakeConsumer(log), RecordingStorage(tmp_path, log), roll_seconds=60, roll_bytes=1 << 20,
                         clock=lambda: clock[0])
    topic = names.log_topic("demo")
    for off in range(5):
        a.add(topic, 2, 100 + off, _value(off), HOUR10)
    a.add(topic, 2, 105, _value(5), HOUR11)  # the next hour closes the open file
    path = "demo/2026-11-27/10/" + archive.part_name(2, 100, 104)
    assert log == [("put", path), ("commit", topic, 2, 105)]
    lines = (tmp_path / path).read_bytes().splitlines()
    assert len(lines) == 5 and json.loads(lines[0]) == {"partition": 2, "offset": 100, "message": "m0",
                                                        "time": "2026-11-27T10:00:00Z"}
    clock[0] = 61.0
    assert a.close_due()
    assert log[-1] == ("commit", topic, 2, 106) and a.open == {}
    assert a.recover(topic, 2) == 105 and a.recover(topic, 1) is None


def test_hdfs_away_holds_the_file_and_commits_nothing(tmp_path):
    log = []
    storage = RecordingStorage(tmp_path, log)
    a = archive.Archiver(FakeConsumer(log), storage, roll_seconds=1, roll_bytes=1 << 20, clock=lambda: 10.0)
    a.add(names.log_topic("demo"), 0, 0, _value(0), HOUR10)
    a.open[(names.log_topic("demo"), 0)].opened = 0.0
    storage.refuse = True
    assert not a.close_due() and log == [] and len(a.open) == 1
    storage.refuse = False
    assert a.close_due() and log[-1][0] == "commit"


def test_a_full_file_is_closed_at_its_size(tmp_path):
    log = []
    a = archive.Archiver(FakeConsumer(log), RecordingStorage(tmp_path, log), roll_seconds=600, roll_bytes=200)
    for off in range(6):
        a.add(names.log_topic("demo"), 0, off, _value(off), HOUR10)
    assert [e[0] for e in log].count("put") >= 2


def test_reading_the_archive_drops_duplicates_and_filters(tmp_path):
    storage = LocalDriver(str(tmp_path))
    base = "demo/2026-11-27/10/"
    recs = [{"partition": 0, "offset": k, "message": f"m{k}" + (" error" if k == 2 else ""),
             "time": f"2026-11-27T10:00:0{k}Z"} for k in range(4)]
    storage.put(base + archive.part_name(0, 0, 2), b"".join(json.dumps(r).encode() + b"\n" for r in recs[:3]))
    storage.put(base + archive.part_name(0, 2, 3), b"".join(json.dumps(r).encode() + b"\n" for r in recs[2:]))
    since = kept.parse_since("2026-11-27T09:00:00Z")
    got = archive.read(storage, "demo", since, until=since + 7200)
    assert [r["offset"] for r in got] == [0, 1, 2, 3]
    assert [r["offset"] for r in archive.read(storage, "demo", since, since + 7200, limit=2)] == [2, 3]  # the newest
    assert [r["offset"] for r in archive.read(storage, "demo", since, since + 7200, grep="error")] == [2]
    # a fixed string, not a pattern: no expression a caller writes runs on the node
    assert archive.read(storage, "demo", since, since + 7200, grep="(m|e)+rror") == []
    with pytest.raises(ValueError, match="from 1 to 10000"):
        archive.read(storage, "demo", since, limit=0)
    assert archive.read(storage, "nothing", since) == []
    later = kept.parse_since("2026-11-27T10:00:02Z")
    assert [r["offset"] for r in archive.read(storage, "demo", later, later + 60)] == [2, 3]


def test_the_endpoints_slots_keep_one_address_from_taking_them_all():
    from bay_salt.logs.slots import Slots

    slots = Slots(total=10, per_source=3)
    assert [slots.take("10.0.0.9") for _ in range(3)] == [None] * 3
    assert "3 connections from 10.0.0.9" in slots.take("10.0.0.9")
    assert [slots.take(f"10.0.1.{i}") for i in range(7)] == [None] * 7
    assert "10 connections already" in slots.take("10.0.2.1")
    slots.give("10.0.0.9")
    assert slots.take("10.0.2.1") is None and slots.open["10.0.0.9"] == 2
    assert slots.warn("x", 100.0) and not slots.warn("x", 105.0) and slots.warn("x", 111.0)


def test_an_archived_line_carries_partition_and_offset():
    assert archive.archived_line(b'{"a":1}', 3, 9) == b'{"partition":3,"offset":9,"a":1}\n'
    assert archive.archived_line(b"{}", 3, 9) == b'{"partition":3,"offset":9}\n'
    assert json.loads(archive.archived_line(b"not json", 0, 1))["message"] == "not json"


# --- node files and settings ---------------------------------------------------------------


def _cfg(**extra):
    pillar = settings.deep_merge({"nodes": {"n1": {"address": "10.0.0.1", "roles": ["worker", "kafka"]},
                                            "n2": {"address": "10.0.0.2"}},
                                  "consul": {"servers": ["n1"], "acl": {"tokens": TOKENS}},
                                  "kafka": {"password": "s3cret"},
                                  "logs": {"archive": {"hdfs": "hdfs://10.0.0.9:9870/bay-logs"}}}, extra)
    return settings.load(settings.formula_defaults(CHECKOUT), pillar, "n1")


def test_the_broker_takes_clients_with_scram_on_the_node_and_its_controller_on_loopback():
    files = nodefiles.kafka_files(_cfg())
    props = files[nodefiles.KAFKA_CONFIG]["contents"]
    assert "listeners=SASL_PLAINTEXT://10.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in props
    assert "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT" in props
    assert "auto.create.topics.enable=false" in props and files[nodefiles.KAFKA_CONFIG]["mode"] == "0640"
    fmt = files[nodefiles.KAFKA_FORMAT]
    assert fmt["mode"] == "0700" and "SCRAM-SHA-512=[name=bay,password=s3cret]" in fmt["contents"]
    assert nodefiles.ARCHIVER_CONFIG in files and files[nodefiles.ARCHIVER_CONFIG]["mode"] == "0600"
    assert len(nodefiles.cluster_id("default")) == 22


KAFKA_TLS = {"tls": {"ca_file": "/etc/bay/ca.pem", "cert_file": "/etc/bay/tls/node.pem",
                     "key_file": "/etc/bay/tls/node-key.pem"}}


def test_with_tls_the_broker_and_every_client_speak_sasl_ssl():
    cfg = _cfg(kafka=KAFKA_TLS)
    files = nodefiles.kafka_files(cfg)
    props = files[nodefiles.KAFKA_CONFIG]["contents"]
    assert "listeners=SASL_SSL://10.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in props
    assert "inter.broker.listener.name=SASL_SSL" in props and "SASL_PLAINTEXT" not in props
    assert "ssl.keystore.location=/var/lib/bay/kafka/tls/keystore.pem" in props
    assert "ssl.truststore.location=/etc/bay/ca.pem" in props and "listener.name.sasl_ssl.scram-sha-512" in props
    # the keystore is put together as root at each start, readable by the broker's user only
    unit = files["/etc/systemd/system/bay-kafka.service"]["contents"]
    pre = next(line for line in unit.splitlines() if line.startswith("ExecStartPre=+"))
    assert "cat /etc/bay/tls/node-key.pem /etc/bay/tls/node.pem" in pre and "umask 077" in pre
    assert unit.index("ExecStartPre") < unit.index("ExecStart=")
    relay = json.loads(nodefiles.files(cfg)[nodefiles.LOGS_CONFIG]["contents"])["kafka"]
    client = kafka.Client.from_dict(relay)
    conf = client.conf()
    assert conf["security.protocol"] == "SASL_SSL" and conf["ssl.ca.location"] == "/etc/bay/ca.pem"
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert "security.protocol=SASL_SSL" in client.java_properties()
    assert kafka.Client.of(_cfg()).conf()["security.protocol"] == "SASL_PLAINTEXT"  # no CA given: as before
    assert "ssl.ca.location" not in kafka.Client.of(_cfg()).conf()


def test_every_nodes_relay_knows_kafka_and_the_master_hears_no_secret():
    cfg = _cfg()
    assert cfg["kafka"]["bootstrap_servers"] == "10.0.0.1:9092" and cfg["kafka"]["nodes"] == ["n1"]
    logs = nodefiles.files(cfg)[nodefiles.LOGS_CONFIG]
    assert logs["mode"] == "0600" and json.loads(logs["contents"])["relay_port"] == 5140
    assert "s3cret" not in json.dumps(nodefiles.report(cfg))
    assert settings.redacted(cfg)["kafka"]["password"] == settings.REDACTED


def test_kafka_settings_are_checked():
    with pytest.raises(settings.SettingsError, match="bay:kafka:password: missing on n1"):
        _cfg(kafka={"password": ""})
    with pytest.raises(settings.SettingsError, match="bay:logs:archive:hdfs: .*expected hdfs://"):
        _cfg(logs={"archive": {"hdfs": "hdfs://x/../y z"}})
    with pytest.raises(settings.SettingsError, match="bay:kafka:bootstrap"):
        _cfg(kafka={"bootstrap": "not a list"})
    site = _cfg(kafka={"bootstrap": "k1:9092,k2:9092"})
    assert site["kafka"]["bootstrap_servers"] == "k1:9092,k2:9092"
    with pytest.raises(settings.SettingsError, match="bay:kafka:tls: .*cert_file and key_file together"):
        _cfg(kafka={"tls": {"ca_file": "/ca", "cert_file": "/c"}})
    with pytest.raises(settings.SettingsError, match="Bay's own broker needs cert_file"):
        _cfg(kafka={"tls": {"ca_file": "/ca"}})
    own = _cfg(kafka={"bootstrap": "k1:9093", "tls": {"ca_file": "/ca"}})  # a site's own Kafka: the CA only
    assert kafka.Client.of(own).conf()["security.protocol"] == "SASL_SSL"


def test_a_services_log_topic_is_checked_with_its_spec():
    spec = {"image": "r/x:1", "owners": ["t"],
            "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 80, "listen": 10080}}}
    with pytest.raises(services.SpecError, match="logs.*at least 1m"):
        services.parse({"x": dict(spec, logs={"retention": "10s"})})
    ok = services.parse({"x": dict(spec, logs={"partitions": 6, "retention": "2d"})})["x"]
    from bay_salt.logs.kafka import topic_settings

    assert topic_settings(ok.model.logs.model_dump(), {"partitions": 3, "retention": 60.0}) == (6, 172800.0)
    plain = services.parse({"x": spec})["x"]
    assert topic_settings(plain.model.logs.model_dump(), {"partitions": 3, "retention": 60.0}) == (3, 60.0)


# --- the runner's operations ---------------------------------------------------------------


class LogsBackend:
    def __init__(self):
        self.kv = MemoryStore()
        self.topics = []

    def store(self):
        return self.kv

    def services(self):
        return {"demo": {"owners": ["team-demo"], "groups": {}}}

    def access(self):
        return ["root-team"], {"team-demo": ["bob"]}

    def logs_report(self):
        return {"enabled": True, "port": 8095, "token_ttl": 60, "kafka": "10.0.0.1:9092", "kafka_nodes": ["n1"],
                "partitions": 3, "retention": 600.0, "archive": True}

    def node_addresses(self):
        return {"n1": "10.0.0.1", "n2": "10.0.0.2"}

    asked = 0

    def kept_all(self, service, group, timeout=15):
        self.asked += 1
        assert timeout <= operations.KEPT_TIMEOUT  # a node cut off holds the command up this long at most
        return {"n2": [{"instance": "old1", "exit_code": 1, "oom_killed": False, "finished_at": "t", "kept_at": 10.0},
                       {"instance": "old2", "exit_code": 137, "oom_killed": True, "finished_at": "t", "kept_at": 20.0}]}

    def ensure_log_topic(self, nodes, service, partitions, retention):
        self.topics.append((nodes, service, partitions, retention))
        return {"topic": names.log_topic(service)}


def test_locate_gives_live_and_kept_output_and_a_token_for_that_service_only():
    b = LogsBackend()
    b.kv.apply([])
    from bay_salt.kv import store as kvstore

    b.kv.apply(kvstore.register_ops([Instance("demo", "web", "live1", "n1", "10.0.0.1", 32000, Health.PASSING,
                                              "img", "bay-demo-web-live1")]))
    private, public = tokens.new_key_pair()
    got = operations.locate(b, "demo.web", user="bob", signing_key=private)
    assert [(e["instance"], e["state"]) for e in got["entries"]] == [("live1", "live")]
    assert b.asked == 0  # live output needs KV alone: no node is asked (none can hold the command up)
    assert got["entries"][0]["url"] == "https://10.0.0.1:8095/v1/logs/demo/web/live1"
    assert tokens.check(public, f"Bearer {got['token']}", "demo")["sub"] == "bob"
    with pytest.raises(tokens.Refused):
        tokens.check(public, f"Bearer {got['token']}", "other")
    prev = operations.locate(b, "demo.web", previous=True, user="bob", signing_key=private)
    assert [(e["instance"], e["node"], e["exit_code"]) for e in prev["entries"]] == [("old2", "n2", 137)]
    one = operations.locate(b, "demo.web/old1", user="root", signing_key=private)
    assert one["entries"][0]["url"] == "https://10.0.0.2:8095/v1/logs/demo/web/old1"
    with pytest.raises(operations.NotOwner, match="eve may not read the logs of service demo"):
        operations.locate(b, "demo.web", user="eve", signing_key=private)
    with pytest.raises(ValueError, match="no service 'nope'"):
        operations.locate(b, "nope.web", user="root", signing_key=private)
    with pytest.raises(ValueError, match="demo.web/zzz: no live or kept output"):
        operations.locate(b, "demo.web/zzz", user="root", signing_key=private)


@pytest.mark.parametrize("bad", ["demo", "demo.", "Demo.web", "demo.web/../x", "demo.web/a b"])
def test_a_bad_target_is_named(bad):
    with pytest.raises(ValueError, match="expected SERVICE.GROUP or SERVICE.GROUP/INSTANCE"):
        operations.parse_target(bad)


def test_a_deploy_makes_the_topic_with_the_specs_partitions():
    b = LogsBackend()
    web = {"instances": 1, "cpu": 0.1, "memory": 32, "port": 80, "listen": 10080}
    spec = services.parse({"demo": {"image": "r/x:1", "owners": ["t"], "logs": {"partitions": 5},
                                    "groups": {"web": web}}})["demo"]
    operations.ensure_topic(b, spec)
    assert b.topics == [(["n1"], "demo", 5, 600.0)]


def test_a_container_over_its_rate_loses_lines_not_the_relay():
    sent, clock = [], [0.0]
    r = relay.Relay("n1", lambda t, k, v: sent.append(k) or True, lambda ip, fresh=False: None, lambda: clock[0],
                    rate=100, burst=300)
    loud, quiet = ("loud", "web", "i1"), ("quiet", "web", "i2")
    for _ in range(10):
        r.take(b"x" * 99 + b"\n", loud)  # 100 bytes a line, all at once: the burst lets three through
    r.take(b"hello\n", quiet)
    assert sent == [b"i1"] * 3 + [b"i2"] and r.dropped == 7
    clock[0] = 2.0  # two seconds: room for two more lines
    for _ in range(3):
        r.take(b"x" * 99 + b"\n", loud)
    assert sent.count(b"i1") == 5 and r.dropped == 8


def test_connections_are_capped_per_container_and_in_all(monkeypatch):
    monkeypatch.setattr(relay, "MAX_CONNECTIONS", 10)
    r = relay.Relay("n1", lambda t, k, v: True, lambda ip, fresh=False: None, lambda: 0.0)
    assert [r.open("10.0.0.2") for _ in range(relay.PER_CONTAINER)] == [None] * relay.PER_CONTAINER
    assert "connections from 10.0.0.2 already" in r.open("10.0.0.2")
    assert r.open("10.0.0.3") is None and r.open("10.0.0.4") is None
    assert "10 connections already" in r.open("10.0.0.5")
    r.close("10.0.0.2")
    assert r.open("10.0.0.2") is None  # one closed: room again


def test_the_relay_closes_what_is_over_its_cap_over_tcp(monkeypatch):
    import socket

    monkeypatch.setattr(relay, "PER_CONTAINER", 1)
    sent = []
    r = relay.Relay("n1", lambda t, k, v: sent.append(json.loads(v)["message"]) or True,
                    lambda ip, fresh=False: ("demo", "web", "i1"), time.time)
    server = r.serve("127.0.0.1", 0)
    port = server.server_address[1]
    try:
        first = socket.create_connection(("127.0.0.1", port), timeout=5)
        first.sendall(b"one\n")
        deadline = time.time() + 5
        while not sent and time.time() < deadline:
            time.sleep(0.02)
        second = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert second.recv(1) == b""  # closed at once: the container has its one connection
        first.sendall(b"two\n")
        while len(sent) < 2 and time.time() < deadline:
            time.sleep(0.02)
        assert sent == ["one", "two"] and r.refused == 1
        first.close()
        second.close()
    finally:
        server.shutdown()
        server.server_close()
