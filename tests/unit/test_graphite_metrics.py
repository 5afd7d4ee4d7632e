"""Metrics in Graphite: naming, the computations (rates, healthy ratio,
traffic, containers, group and platform points), the shipper's bound,
statsd prefixing, dashboards and the daemons' configuration."""

import json
import pickle
import struct

import pytest

from bay_salt.kv.records import Accepted, Instance
from bay_salt.metrics import carbon, collect, dashboards, graphite, nodefiles, platform
from bay_salt.metrics.agent import prefix_statsd
from bay_salt.model import names, settings
from bay_salt.model.services import parse


# --- naming -------------------------------------------------------------------
def test_paths_can_be_guessed_from_names():
    assert names.metric_container("prod", "demo", "web", "a1b2", "cpu_cores") == "bay.prod.containers.demo.web.a1b2.cpu_cores"
    assert names.metric_group("prod", "demo", "web", "healthy_ratio") == "bay.prod.groups.demo.web.healthy_ratio"
    assert names.metric_traffic("prod", "demo", "web", "node1", "requests") == "bay.prod.traffic.demo.web.node1.requests"
    assert names.metric_node("prod", "node1", "cpu_percent") == "bay.prod.nodes.node1.cpu_percent"
    assert names.metric_platform("prod", "nodes.alive") == "bay.prod.platform.nodes.alive"
    assert names.metric_services_prefix("prod") == "bay.prod.services"


def test_a_name_with_dots_or_globs_stays_one_path_element():
    assert names.metric_node("prod", "bay-a1.example.com", "load1") == "bay.prod.nodes.bay-a1_example_com.load1"
    assert names.metric_part("a*b?[c]{d}") == "a_b__c__d_"
    assert names.metric_part("") == "_"


# --- computations ---------------------------------------------------------------
def test_rates_from_counters_and_resets():
    r = collect.Rates()
    assert r.delta("x", 100, 10.0) is None  # first reading
    assert r.delta("x", 160, 20.0) == 60
    assert r.rate("x", 220, 30.0) == 6.0
    assert r.delta("x", 5, 40.0) == 5  # counter reset (HAProxy reloaded)
    r.prune(40.0 + 601)
    assert r.last == {}


@pytest.mark.parametrize("passing,desired,ratio", [(3, 3, 1.0), (1, 4, 0.25), (0, 2, 0.0), (0, 0, 1.0), (5, 3, 1.0)])
def test_healthy_ratio(passing, desired, ratio):
    assert collect.healthy_ratio(passing, desired) == ratio


def sample(sec, cpu_ns, mem, rx, tx, rd, wr):
    return {"timestamp": f"2026-11-26T02:00:{sec:02d}Z", "cpu": {"usage": {"total": cpu_ns}},
            "memory": {"working_set": mem}, "network": {"interfaces": [{"rx_bytes": rx, "tx_bytes": tx}]},
            "diskio": {"io_service_bytes": [{"stats": {"Read": rd, "Write": wr}}]}}


def test_container_points_carry_bay_names_and_rates():
    labels = {names.LABEL_SERVICE: "demo", names.LABEL_GROUP: "web", names.LABEL_INSTANCE: "i1"}
    payload = {
        "/docker/a": {"spec": {"labels": labels, "memory": {"limit": 128 << 20}},
                      "stats": [sample(0, 0, 10, 0, 0, 0, 0), sample(2, 10**9, 20, 2000, 400, 0, 4096)]},
        "/docker/other": {"spec": {"labels": {}}, "stats": [sample(0, 0, 1, 0, 0, 0, 0)]},
    }
    pts = dict((p, v) for p, (_, v) in collect.containers("c", payload, 100.0))
    base = "bay.c.containers.demo.web.i1."
    assert pts[base + "cpu_cores"] == 0.5
    assert pts[base + "memory_bytes"] == 20 and pts[base + "memory_limit_bytes"] == 128 << 20
    assert pts[base + "net_rx_bps"] == 1000 and pts[base + "net_tx_bps"] == 200
    assert pts[base + "disk_write_bps"] == 2048
    assert not any("other" in p for p in pts)


STAT = """# pxname,svname,qcur,scur,stot,bin,bout,econ,eresp,wretr,wredis,act,rtime,req_tot,hrsp_5xx,ereq
demo.web,FRONTEND,,{scur},100,{bin},{bout},,,,,,,{req},{x5},0
demo.web,s1,0,1,50,0,0,0,0,0,0,1,3,,,
demo.web,BACKEND,0,2,100,0,0,{econ},0,{retr},{redis},2,12,,{x5},
bay-stats,FRONTEND,,1,5,0,0,,,,,,,5,0,0
"""


def test_traffic_counts_per_interval_and_rate():
    r = collect.Rates()
    first = STAT.format(scur=3, bin=100, bout=1000, req=1000, x5=2, econ=1, retr=0, redis=0)
    second = STAT.format(scur=4, bin=300, bout=5000, req=1500, x5=7, econ=3, retr=2, redis=1)
    out0 = dict((p, v) for p, (_, v) in collect.traffic("c", "node1", collect.parse_stat(first), r, 10.0))
    assert "bay.c.traffic.demo.web.node1.requests" not in out0  # no interval yet
    assert out0["bay.c.traffic.demo.web.node1.sessions"] == 3
    out = dict((p, v) for p, (_, v) in collect.traffic("c", "node1", collect.parse_stat(second), r, 20.0))
    t = "bay.c.traffic.demo.web.node1."
    assert out[t + "requests"] == 500 and out[t + "request_rate"] == 50.0
    assert out[t + "errors_5xx"] == 5 and out[t + "bytes_out"] == 4000
    assert out[t + "connection_errors"] == 2 and out[t + "retries"] == 2 and out[t + "redispatches"] == 1
    assert out[t + "response_ms"] == 12 and out[t + "servers_up"] == 2
    assert not any("bay-stats" in p for p in out)


def test_server_and_components():
    r = collect.Rates()
    s = {"cpu_busy": 10.0, "cpu_total": 100.0, "load1": 0.5, "mem_used": 3 << 30, "mem_total": 12 << 30,
         "disks": {"/": (10, 40), "/var/lib/docker": (5, 10)}, "net_rx": 1000, "net_tx": 0}
    collect.server("c", "n1", s, r, 0.0)
    out = dict((p, v) for p, (_, v) in collect.server("c", "n1", dict(s, cpu_busy=40.0, cpu_total=200.0, net_rx=6000),
                                                      r, 10.0))
    n = "bay.c.nodes.n1."
    assert out[n + "cpu_percent"] == 30.0 and out[n + "memory_percent"] == 25.0
    assert out[n + "disk.root.percent"] == 25.0 and out[n + "disk.var_lib_docker.percent"] == 50.0
    assert out[n + "net_rx_bps"] == 500.0
    comps = dict((p, v) for p, (_, v) in collect.components("c", "n1", {"docker": True, "bay-events": False}, 1.0))
    assert comps == {n + "components.docker": 1.0, n + "components.bay-events": 0.0}


def spec(instances=3):
    return parse({"demo": {"image": "r/demo:1", "owners": ["t"], "health": {"http": "/healthz"},
                           "groups": {"web": {"instances": instances, "cpu": 0.1, "memory": 32, "port": 8000,
                                                     "listen": 10080}}}})["demo"].groups()["web"]


def inst(i, health="passing", container=True):
    return Instance("demo", "web", i, "node1", "10.0.0.1", 1000, health, container=f"c{i}" if container else "")


def test_group_and_platform_points():
    rec = platform.Recorder()
    rec.event(names.TAG_CONTAINER_REPLACED, {"group": "demo.web", "old": "a", "new": "b",
                                             "seconds_after_death": {"registered": 1.5}})
    rec.event(names.TAG_CONTAINER_REPLACED, {"group": "demo.web", "old": "c", "new": None})
    rec.event(names.TAG_DEPLOY_STARTED, {"group": "demo.web"})  # not an action
    done = rec.take()
    assert rec.take().restarts == {}  # counting starts again
    pts = dict((p, v) for p, (_, v) in platform.snapshot(
        "c", 50.0, {("demo", "web"): Accepted(spec(4))}, {}, [inst("1"), inst("2", "critical"), inst("3")],
        [], {"node1", "node2"}, {"node1"}, set(), done, {"cpu": 0.002, "took": 0.04, "found": 1, "at": 45.0}))
    g = "bay.c.groups.demo.web."
    assert (pts[g + "desired"], pts[g + "registered"], pts[g + "passing"]) == (4, 3, 2)
    assert pts[g + "healthy_ratio"] == 0.5
    assert pts[g + "restarts"] == 2 and pts[g + "replacements"] == 1 and pts[g + "failed"] == 0
    p = "bay.c.platform."
    assert pts[p + "nodes.lost"] == 1 and pts[p + "nodes.alive"] == 1
    assert pts[p + "controller.actions.container_replaced"] == 2
    assert pts[p + "controller.actions.node_lost"] == 0  # every action is drawn, zero included
    assert pts[p + "controller.replace_seconds.max"] == 1.5
    assert pts[p + "reconcile.cpu_ms"] == 2.0 and pts[p + "reconcile.age_seconds"] == 5.0


def test_autoscaled_count_is_the_desired_one_and_failed_groups_show():
    kv = {"bay/scale/demo/web": json.dumps({"state": {"desired": 5}, "last": {"utilisation": 0.9, "cpu_used": 0.45,
                                                                              "reason": "scale up"}}).encode()}
    pts = dict((p, v) for p, (_, v) in platform.snapshot(
        "c", 1.0, {("demo", "web"): Accepted(spec(2))}, {("demo", "web"): 5}, [], [("demo", "web")], set(), set(),
        set(), platform.Recorder(), autoscale_last=platform.autoscale_records(kv, "bay/scale/")))
    assert pts["bay.c.groups.demo.web.desired"] == 5 and pts["bay.c.groups.demo.web.autoscale.desired"] == 5
    assert pts["bay.c.groups.demo.web.autoscale.utilisation"] == 0.9
    assert pts["bay.c.groups.demo.web.autoscale.cpu_used"] == 0.45
    assert pts["bay.c.groups.demo.web.failed"] == 1 and pts["bay.c.groups.demo.web.healthy_ratio"] == 0.0


# --- shipping -----------------------------------------------------------------------
def test_pickle_message_is_what_carbon_reads():
    msg = carbon.encode([("a.b", (10.0, 1.5))])
    (size,) = struct.unpack("!L", msg[:4])
    assert pickle.loads(msg[4:4 + size]) == [("a.b", (10.0, 1.5))]


def test_big_batches_are_split_into_messages_carbon_takes():
    batch = [(f"a.{'x' * 40}.{i}", (float(i), 1.0)) for i in range(1000)]
    parts, lost = carbon.messages(batch, limit=4096)
    assert lost == 0 and len(parts) > 1 and all(len(m) - 4 <= 4096 for m in parts)
    back = []
    for m in parts:
        (size,) = struct.unpack("!L", m[:4])
        back += pickle.loads(m[4:4 + size])
    assert back == batch  # all of them, in order
    assert carbon.messages([("y" * 5000, (1.0, 1.0)), ("a.b", (1.0, 1.0))], limit=4096)[1] == 1


def test_queue_is_bounded_and_drops_the_oldest():
    s = carbon.Shipper(carbon.Target("127.0.0.1", 1), capacity=3)
    s.put([(f"m{i}", (float(i), 1.0)) for i in range(5)])
    assert [p for p, _ in s.queue] == ["m2", "m3", "m4"] and s.dropped == 2
    s._giveback([("old", (0.0, 0.0))])  # full: a batch given back is dropped, not grown
    assert s.pending() == 3 and s.dropped == 3


@pytest.mark.parametrize("line,ok", [("a.b 1.5 10", True), ("a.b 2", True), ("a.b x 10", False), ("a.b", False),
                                     ("a.b nan 10", False)])
def test_plaintext_lines(line, ok):
    assert (carbon.parse_plaintext(line, now=5.0) is not None) is ok


def test_statsd_names_get_the_senders_service_group_and_node():
    out = prefix_statsd(b"hits:1|c\nlatency:12|ms|@0.5\ngarbage\nbad.name*:3|g", ("demo", "web", "node1"))
    assert out.decode().splitlines() == ["demo.web.node1.hits:1|c", "demo.web.node1.latency:12|ms|@0.5",
                                         "demo.web.node1.bad.name_:3|g"]


# --- configuration -----------------------------------------------------------------
def test_retentions_and_the_finest_interval():
    assert graphite.finest_seconds("10s:1d,1m:30d") == 10
    assert graphite.finest_seconds("1m:7d") == 60
    with pytest.raises(ValueError, match="'10x:1d' is not a whisper retention"):
        graphite.check_retentions("10x:1d")


def cfg(**monitoring):
    d = settings.formula_defaults(".")
    pillar = {"consul": {"acl": {"enabled": False}}, "cluster": "prod",
              "nodes": {"n1": {"address": "10.0.0.1", "roles": ["worker", "monitoring"]},
                        "n2": {"address": "10.0.0.2"}},
              "monitoring": {"tls": {"cert_file": "/c.pem", "key_file": "/k.pem", "ca_file": "/ca.pem"}, **monitoring}}
    return settings.load(d, pillar, "n2")


def test_every_node_ships_to_the_monitoring_node_over_tls():
    c = cfg()
    a = nodefiles.agent_config(c)
    assert a["carbon"] == {"host": "10.0.0.1", "port": 2014, "cert_file": "/c.pem", "key_file": "/k.pem",
                           "ca_file": "/ca.pem"}
    assert a["interval"] == 10 and a["node"] == "n2"
    s = nodefiles.statsd_config(c)
    assert s["flushInterval"] == 10000  # = the finest retention
    assert s["address"] == "127.0.0.1" and s["graphite"]["globalPrefix"] == "bay.prod.services"


def test_a_sites_own_carbon_and_bad_settings():
    assert nodefiles.agent_config(cfg(carbon="graphite.site:2004"))["carbon"]["host"] == "graphite.site"
    with pytest.raises(settings.SettingsError, match="bay:monitoring:retention"):
        cfg(retention="ten seconds")
    with pytest.raises(settings.SettingsError, match="bay:monitoring:web_users"):
        cfg(web_users={"bay": "plain-password"})


def test_carbon_listens_on_loopback_only():
    conf = graphite.carbon_conf("/s", "/c")
    for key in ("LINE_RECEIVER_INTERFACE", "PICKLE_RECEIVER_INTERFACE", "CACHE_QUERY_INTERFACE"):
        assert f"{key} = 127.0.0.1" in conf
    assert "ENABLE_UDP_LISTENER = False" in conf


def test_further_carbon_caches_have_their_own_ports_and_graphite_web_asks_each_by_carbons_ring():
    two = graphite.caches(2)
    assert [(c.instance, c.pickle_port, c.query_port) for c in two] == [("a", 2004, 7002), ("b", 2104, 7102)]
    conf = graphite.carbon_conf("/s", "/c", count=2)
    assert "[cache:b]\nLINE_RECEIVER_PORT = 2103\nPICKLE_RECEIVER_PORT = 2104\nCACHE_QUERY_PORT = 7102" in conf
    assert "[cache:" not in graphite.carbon_conf("/s", "/c")
    web = graphite.web_settings("/s", "/st", "k", "/w", 2)
    hosts = eval(next(line for line in web.splitlines() if line.startswith("CARBONLINK_HOSTS")).split("=", 1)[1])
    # graphite-web's pool keys each cache as (server, instance): the key senders put on carbon's ring
    assert [(h.split(":")[0], h.split(":")[2]) for h in hosts] == [c.ring_key for c in two]
    assert [int(h.split(":")[1]) for h in hosts] == [c.query_port for c in two]
    with pytest.raises(ValueError, match="carbon caches: 9"):
        graphite.caches(9)


def test_carbon_caches_two_a_unit_a_frontend_and_a_shard_each(tmp_path):
    from bay_salt.node.nodefiles import haproxy_config

    c = cfg(carbon_caches=2)
    assert nodefiles.agent_config(c)["carbon_caches"] == 2 and nodefiles.report(c)["carbon_caches"] == 2
    assert nodefiles.agent_config(cfg(carbon="graphite.site:2004", carbon_caches=2))["carbon_caches"] == 1
    files = nodefiles.monitoring_files(c)
    assert "--instance=b --nodaemon" in files["/etc/systemd/system/bay-carbon-b.service"]["contents"]
    assert "--instance" not in files["/etc/systemd/system/bay-carbon.service"]["contents"]
    conf = next(f["contents"] for p, f in files.items() if p.endswith("/carbon.conf"))
    assert "[cache:b]" in conf and "[cache:c]" not in conf
    # a third unit file left from carbon_caches: 3 is retired; units never made are not named
    (tmp_path / "bay-carbon-c.service").write_text("")
    assert nodefiles.carbon_units(c, str(tmp_path)) == {"running": ["bay-carbon", "bay-carbon-b"],
                                                       "retired": ["bay-carbon-c"]}
    c["node"] = dict(c["node"], id="n1", address="10.0.0.1", roles=["worker", "monitoring"])
    text = haproxy_config(c)
    assert "frontend bay-carbon-b\n" in text and "bind 10.0.0.1:2015 ssl crt" in text
    assert "server carbon 127.0.0.1:2104 check" in text and "nbsrv(bay-carbon-b) lt 1" in text
    with pytest.raises(settings.SettingsError, match="carbon_caches"):
        cfg(carbon_caches=9)


def test_the_nodes_ring_is_carbons_own():
    """The senders' ring (nodes have no carbon installed) places every series
    where carbon's ConsistentHashRing does, for 1 to 8 caches."""
    from carbon.hashing import ConsistentHashRing

    from bay_salt.metrics.ring import Ring

    names = [f"bay.prod.{kind}.s{i % 97}.g{i % 5}.i{i}.m{i % 7}" for i, kind in
             enumerate(["containers", "groups", "traffic", "nodes"] * 1500)]
    for count in range(1, 9):
        keys = [c.ring_key for c in graphite.caches(count)]
        ours, theirs = Ring(keys), ConsistentHashRing(keys)
        assert [ours.node(n) for n in names] == [theirs.get_node(n) for n in names], count
    with pytest.raises(ValueError, match="at least one key"):
        Ring([])


def test_an_agent_with_two_caches_needs_no_carbon_installed(monkeypatch):
    """Nodes install Bay without the `monitoring` extra: no carbon package there."""
    import sys

    from bay_salt.metrics.agent import Agent, Config

    for mod in ("carbon", "carbon.hashing"):
        monkeypatch.setitem(sys.modules, mod, None)  # an import of it fails
    agent = Agent(Config("prod", "n1", carbon.Target("10.0.0.1", 2014), carbon_caches=2))
    agent.shipper.put([("bay.prod.nodes.n1.load1", (1.0, 0.5))])
    assert isinstance(agent.shipper, carbon.Shards) and agent.shipper.pending() == 1


def test_shards_put_each_series_with_one_shipper_by_carbons_ring():
    from carbon.hashing import ConsistentHashRing

    targets = graphite.cache_targets(carbon.Target("10.0.0.1", 2014), 2)
    shards = carbon.Shards(targets, capacity=1000)
    names = [f"bay.prod.containers.s{i}.web.i0.cpu_cores" for i in range(100)]
    shards.put([(n, (1.0, float(k))) for n in names for k in range(2)])
    ring = ConsistentHashRing(list(targets))
    for key, ship in shards.shippers.items():
        assert [p for p, _ in ship.queue] == [n for n in names if ring.get_node(n) == key for _ in range(2)]
        assert ship.queue.maxlen == 500  # the bound is shared, not doubled
    assert shards.pending() == 200 and shards.target == tuple(targets.values())


def test_haproxy_serves_graphite_only_on_the_monitoring_node():
    from bay_salt.node.nodefiles import haproxy_config

    mon = cfg(web_users={"bay": "$6$salt$hash"})
    mon["node"] = dict(mon["node"], id="n1", address="10.0.0.1", roles=["worker", "monitoring"])
    text = haproxy_config(mon)
    assert "bind 10.0.0.1:2014 ssl crt /etc/haproxy/bay-monitoring.pem ca-file /ca.pem verify required" in text
    assert "user bay password $6$salt$hash" in text and "http_auth(bay-graphite)" in text
    assert "bay-carbon" not in haproxy_config(cfg())


def test_redacted_settings_hide_graphite_secrets():
    shown = settings.redacted(cfg(secret_key="s3cret", web_users={"bay": "$6$x$y"}))
    assert shown["monitoring"]["secret_key"] == settings.REDACTED
    assert shown["monitoring"]["web_users"] == {"bay": settings.REDACTED}


# --- dashboards -----------------------------------------------------------------------
def test_one_definition_two_formats():
    boards = dashboards.all_dashboards("prod", {"demo": {"groups": {"web": {}, "api": {}}}})
    assert set(boards) == {"bay-prod-platform", "bay-prod-service-demo"}
    panels = boards["bay-prod-service-demo"]
    state = dashboards.graphite_state("bay-prod-service-demo", panels)
    g = dashboards.grafana("demo", "bay-prod-service-demo", panels)
    assert len(state["graphs"]) == len(g["panels"]) == len(panels)
    first = panels[0].targets[0]
    assert state["graphs"][0][1]["target"][0] == first and g["panels"][0]["targets"][0]["target"] == first
    assert any("bay.prod.containers.demo.web.*.cpu_cores" in t for p in panels for t in p.targets)
    assert dashboards.urls("https://10.0.0.1:8088/", "prod", {})["bay-prod-platform"] == \
        "https://10.0.0.1:8088/dashboard/bay-prod-platform"


@pytest.mark.skipif(not __import__("shutil").which("haproxy"), reason="haproxy binary not installed (scripts/setup.sh)")
def test_haproxy_accepts_the_monitoring_nodes_config(tmp_path):
    import subprocess

    from bay_salt.cluster import pki
    from bay_salt.cluster.sitefiles import crypt_sha512
    from bay_salt.node.nodefiles import haproxy_config

    authority = pki.ca("test CA")
    leaf = pki.leaf(authority, "n1", ["n1"], ["127.0.0.1"])
    (tmp_path / "ca.pem").write_text(authority.cert_pem)
    (tmp_path / "node.pem").write_text(leaf.cert_pem + leaf.key_pem)
    mon = cfg(web_users={"bay": crypt_sha512("pw")}, tls={"cert_file": "/c", "key_file": "/k",
                                                            "ca_file": str(tmp_path / "ca.pem")})
    mon["node"] = dict(mon["node"], id="n1", address="127.0.0.1", roles=["worker", "monitoring"])
    text = haproxy_config(mon).replace("chroot /var/lib/haproxy\n", "").replace(
        nodefiles.MONITORING_PEM, str(tmp_path / "node.pem"))
    (tmp_path / "haproxy.cfg").write_text(text)
    res = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout


def test_an_idle_frontend_sends_nothing():
    r = collect.Rates()
    idle = STAT.format(scur=0, bin=100, bout=1000, req=1000, x5=2, econ=1, retr=0, redis=0).replace(
        "BACKEND,0,2,", "BACKEND,0,0,")
    collect.traffic("c", "node1", collect.parse_stat(idle), r, 10.0)
    assert collect.traffic("c", "node1", collect.parse_stat(idle), r, 20.0) == []
