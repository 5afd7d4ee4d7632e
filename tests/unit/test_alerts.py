"""Alert rules, evaluation, routing, grouping, inhibition and silences, over recorded series."""

import http.server
import json
import threading
import time

import pytest

from bay_salt.alerts import engine, evaluate, notify, route, sources
from bay_salt.alerts.evaluate import FIRING, PENDING, RESOLVED
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Accepted, Instance
from bay_salt.model import alert_rules as rules
from bay_salt.model import names, settings
from bay_salt.model.services import SpecError, parse
from bay_salt.util import retry
from tests.helpers import CHECKOUT
from tests.support.fakes import MemoryStore

C = "c"
SERVICES = {"demo": {"owners": ["bob"], "alerts": {"GroupUnhealthy": {"for": "20s"}}},
            "feed": {"owners": ["team-feed"]}, "orphan": {"owners": ["nobody"]}}
ALERTS = {"group_wait": 5, "group_interval": 60, "repeat_interval": 3600, "platform_team": ["platform"],
          "contacts": {"platform": {"email": ["ops@x.org"]}, "bob": {"email": ["bob@x.org"], "webhook": ["http://h/b"]},
                       "carol": {"email": ["carol@x.org"]}}}
TEAMS = {"team-feed": ["carol", "dave"]}


def cfg(**alerts):
    return engine.Config.from_settings(C, {**ALERTS, **alerts}, SERVICES, TEAMS, "https://g:8088")


def state(**groups):
    """healthy ratios -> Bay's state as the evaluator reads it."""
    out = {f"bay.{C}.groups.{g.replace('__', '.')}.healthy_ratio": v for g, v in groups.items()}
    out[f"bay.{C}.platform.consul.leader"] = 1.0
    return out


def rounds(ev, c, samples, start=1000.0, step=5.0, series=None, nodes_of=None, silences=()):
    """Feed one sample a round; the deliveries of every round."""
    sent = []
    store = MemoryStore()
    for k, sample in enumerate(samples):
        now = start + k * step
        ev.evaluate(c, engine.Inputs(sample, series, nodes_of or {}), now)
        notes, out, ops, changes = ev.notify(c, list(silences), nodes_of or {}, now, lambda a: {})
        store.apply(ops)
        ev.saved_ok(changes)
        sent += [(now, n) for n in notes]
    return sent, store


# --- rules ------------------------------------------------------------------------------
def test_defaults_cover_services_and_the_platform():
    names = {r.name: r for r in rules.DEFAULTS.values()}
    assert {"GroupUnhealthy", "GroupFailed", "ErrorRate", "CpuSaturatedAtMax", "RestartsHigh"} <= set(names)
    assert {"NodeLost", "ComponentDown", "DiskFull", "MemoryFull", "RegistryDown", "RegistryStorageDown",
            "ConsulNoLeader", "ControllerNotReconciling", "GraphiteNotReceiving"} <= set(names)
    assert all(r.scope == "service" for n, r in names.items() if n.startswith(("Group", "Error", "Cpu", "Restarts")))


def test_site_and_service_overrides():
    rs, per = rules.effective({"DiskFull": {"threshold": 80}, "Mine": {
        "scope": "platform", "source": "graphite", "metric": "nodes.{node}.load1", "op": ">", "threshold": 8}},
        {"demo": {"GroupUnhealthy": {"for": "20s", "severity": "warning"}, "RestartsHigh": {"disabled": True}}})
    by = {r.name: r for r in rs}
    assert by["DiskFull"].threshold == 80 and "Mine" in by
    assert per["demo"]["GroupUnhealthy"].for_ == 20 and per["demo"]["GroupUnhealthy"].severity == "warning"
    assert by["GroupUnhealthy"].for_ == 60  # everyone else keeps the default


@pytest.mark.parametrize("site,services,msg", [
    ({"DiskFull": {"treshold": 80}}, {}, "bay:alerts:rules:DiskFull:treshold"),
    ({"Bad name": {}}, {}, "a rule name"),
    ({}, {"demo": {"NodeLost": {"for": 1}}}, "platform rule"),
    ({}, {"demo": {"Mine": {"source": "graphite", "metric": "services.{service}.x", "op": ">", "threshold": 1}}},
     "captures {service} and {group}"),
    ({"X": {"scope": "platform", "source": "state", "metric": "a..b", "op": ">", "threshold": 1}}, {}, "dotted"),
])
def test_bad_rules_are_refused_naming_the_key(site, services, msg):
    with pytest.raises(rules.RuleError, match=msg.replace("{", r"\{").replace("}", r"\}")):
        rules.effective(site, services)


def test_a_service_spec_with_a_bad_alert_is_refused():
    base = {"image": "x", "owners": ["bob"], "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": "64Mi",
                                                                "port": 80, "listen": 8000}}}
    assert parse({"demo": {**base, "alerts": {"GroupUnhealthy": {"for": "20s"}}}})
    with pytest.raises(SpecError, match="demo: alerts: GroupUnhealthy:fr"):
        parse({"demo": {**base, "alerts": {"GroupUnhealthy": {"fr": "20s"}}}})


def test_pillar_alerts_are_validated():
    defaults = settings.formula_defaults(CHECKOUT)
    with pytest.raises(settings.SettingsError, match="platform_team: 'ops' has no entry"):
        settings.load(defaults, {"alerts": {"platform_team": ["ops"]}}, "n1")
    with pytest.raises(settings.SettingsError, match="e-mail address"):
        settings.load(defaults, {"alerts": {"contacts": {"a": {"email": ["nope"]}}}}, "n1")


# --- evaluation ---------------------------------------------------------------------------
def test_pending_then_firing_after_for_then_resolved():
    c = cfg()
    ev = engine.Evaluator()
    # demo's GroupUnhealthy fires after 20 s (its override); feed's after 60 s (the default)
    bad = state(demo__web=0.0, feed__api=0.0)
    for k in range(4):  # 0, 5, 10, 15 s
        ev.evaluate(c, engine.Inputs(bad, None, {}), 1000 + 5 * k)
    assert {a.labels["service"]: a.state for a in ev.alerts.values()} == {"demo": PENDING, "feed": PENDING}
    ev.evaluate(c, engine.Inputs(bad, None, {}), 1020)
    assert {a.labels["service"]: a.state for a in ev.alerts.values()} == {"demo": FIRING, "feed": PENDING}
    ev.evaluate(c, engine.Inputs(state(demo__web=1.0, feed__api=1.0), None, {}), 1025)
    assert [(a.labels["service"], a.state) for a in ev.alerts.values()] == [("demo", RESOLVED)]  # feed's forgotten


def test_a_blip_shorter_than_for_is_nothing():
    sent, _ = rounds(engine.Evaluator(), cfg(), [state(demo__web=0.0)] * 3 + [state(demo__web=1.0)] * 20)
    assert sent == []


def test_no_numbers_is_not_all_is_well():
    c = cfg()
    ev = engine.Evaluator()
    for k in range(6):
        ev.evaluate(c, engine.Inputs(state(demo__web=0.0), None, {}), 1000 + 5 * k)
    (a,) = ev.alerts.values()
    assert a.state == FIRING
    # KV unreadable: only Consul's rule is evaluated; the group's alert stays firing
    ev.evaluate(c, engine.Inputs({f"bay.{C}.platform.consul.leader": 0.0}, None, {}, state_ok=False), 1100)
    assert a.state == FIRING


def test_graphite_rules_reduce_over_their_window_and_combine_nodes():
    c = cfg()
    now = 10_000.0
    series = {}
    for node in ("n1", "n2"):  # 300 s of 10 s slots: 40 requests, 4 of them 5xx, per slot and node
        series[f"bay.{C}.traffic.demo.web.{node}.requests"] = [(now - 300 + 10 * k, 40.0) for k in range(30)]
        series[f"bay.{C}.traffic.demo.web.{node}.errors_5xx"] = [(now - 300 + 10 * k, 4.0) for k in range(30)]
    rule = next(r for r in c.rules if r.name == "ErrorRate")
    got = evaluate.observe(rule, c.per_service, C, None, series, now)
    ((labels, (value, holds, _r)),) = got.items()
    assert dict(labels) == {"service": "demo", "group": "web"} and value == pytest.approx(0.1) and holds
    # too few requests: not judged
    few = {k: [(t, v / 40) for t, v in pts] for k, pts in series.items()}
    ((_, (_, holds, _)),) = evaluate.observe(rule, c.per_service, C, None, few, now).items()
    assert not holds


def test_a_component_down_on_a_node_with_for():
    c = cfg()
    ev = engine.Evaluator()
    now = 5000.0
    for k in range(8):
        t = now + 5 * k
        series = {f"bay.{C}.nodes.node2.components.haproxy": [(t - 10, 0.0)],
                  f"bay.{C}.nodes.node2.components.docker": [(t - 10, 1.0)]}
        ev.evaluate(c, engine.Inputs(state(), series, {}), t)
    (a,) = ev.alerts.values()
    assert a.state == FIRING and a.labels["node"] == "node2" and a.labels["component"] == "haproxy"
    assert a.summary == "haproxy is down on node2"


# --- routing, grouping, repeats -------------------------------------------------------------
def test_service_alerts_go_to_owners_platform_alerts_to_the_platform_team():
    d = cfg().directory
    a = evaluate.Alert("GroupUnhealthy", {"alertname": "GroupUnhealthy", "scope": "service", "service": "demo",
                                          "group": "web"}, FIRING, 0)
    assert d.receivers(a) == (["bob"], "")
    a.labels["service"] = "feed"  # a team: its people with contacts
    assert d.receivers(a) == (["carol"], "")
    a.labels["service"] = "orphan"
    receivers, note = d.receivers(a)
    assert receivers == ["platform"] and "nobody" in note
    p = evaluate.Alert("NodeLost", {"alertname": "NodeLost", "scope": "platform", "node": "n2"}, FIRING, 0)
    assert d.receivers(p) == (["platform"], "")


def test_one_firing_and_one_resolved_notification_per_outage():
    samples = [state(demo__web=0.0)] * 20 + [state(demo__web=1.0)] * 30
    sent, store = rounds(engine.Evaluator(), cfg(), samples)
    assert [(n.receiver, n.status) for _, n in sent] == [("bob", FIRING), ("bob", RESOLVED)]
    (t_fire, fire), (t_res, res) = sent
    assert t_fire == 1000 + 25  # for 20 s, then group_wait 5 s
    assert t_res - t_fire >= 60  # group_interval
    assert fire.firing[0].value == 0.0 and not res.firing and res.resolved
    # everything told: nothing is left in KV but what is still to be told
    assert not store.items("bay/alerts/active/") and not store.items("bay/alerts/log/")
    deliveries = [notify.Delivery.from_json(v) for v in store.items("bay/alerts/outbox/").values()]
    assert sorted((d.channel, d.address, d.status) for d in deliveries) == [
        ("email", "bob@x.org", FIRING), ("email", "bob@x.org", RESOLVED),
        ("webhook", "http://h/b", FIRING), ("webhook", "http://h/b", RESOLVED)]


def test_still_firing_is_repeated_after_repeat_interval_only():
    sent, _ = rounds(engine.Evaluator(), cfg(repeat_interval=120), [state(demo__web=0.0)] * 60)
    times = [t for t, _ in sent]
    assert len(times) == 3 and times[1] - times[0] == 120 and times[2] - times[1] == 120


def test_alerts_of_a_group_go_together():
    s = state(demo__web=0.0, demo__api=0.0)
    sent, _ = rounds(engine.Evaluator(), cfg(), [s] * 10)
    assert len(sent) == 2 and {n.group["group"] for _, n in sent} == {"web", "api"}  # one per group
    grouped = [state()] * 10
    series_nodes = {}
    for node in ("n1", "n2", "n3"):
        series_nodes[f"bay.{C}.nodes.{node}.components.haproxy"] = [(2000.0, 0.0)]
    ev = engine.Evaluator()
    c = cfg()
    notes = []
    for k, smp in enumerate(grouped):
        now = 2000 + 5 * k
        series = {p: [(now, 0.0)] for p in series_nodes}
        ev.evaluate(c, engine.Inputs(smp, series, {}), now)
        n, _o, _ops, ch = ev.notify(c, [], {}, now, lambda a: {})
        ev.saved_ok(ch)
        notes += n
    assert len(notes) == 1 and len(notes[0].firing) == 3  # the three nodes' ComponentDown in one


def test_a_restarted_evaluator_tells_nobody_twice():
    c = cfg()
    ev = engine.Evaluator()
    samples = [state(demo__web=0.0)] * 10
    sent, store = rounds(ev, c, samples)
    assert len(sent) == 1
    again = engine.Evaluator()
    again.load(store)  # what the first one wrote
    for k in range(10, 30):
        now = 1000 + 5 * k
        again.evaluate(c, engine.Inputs(state(demo__web=0.0), None, {}), now)
        notes, _o, ops, ch = again.notify(c, [], {}, now, lambda a: {})
        store.apply(ops)
        again.saved_ok(ch)
        assert notes == []


# --- inhibition and silences --------------------------------------------------------------
def test_a_lost_node_holds_back_what_ran_there():
    c = cfg()
    s = state(demo__web=0.0)
    s[f"bay.{C}.nodes.node2.alive"] = 0.0
    s[f"bay.{C}.nodes.node1.alive"] = 1.0
    sent, _ = rounds(engine.Evaluator(), c, [s] * 10, nodes_of={("demo", "web"): {"node2"}})
    assert [(n.receiver, n.group["alertname"]) for _, n in sent] == [("platform", "NodeLost")]
    # failing instances elsewhere too: not held back
    sent, _ = rounds(engine.Evaluator(), c, [s] * 10, nodes_of={("demo", "web"): {"node1", "node2"}})
    assert sorted(n.group["alertname"] for _, n in sent) == ["GroupUnhealthy", "NodeLost"]


def test_a_silence_holds_and_expires():
    sil = route.Silence("s1", route.parse_matchers(["service=demo", "alertname=Group*"]), ends=1000 + 100,
                        reason="deploying", by="bob")
    sent, _ = rounds(engine.Evaluator(), cfg(), [state(demo__web=0.0)] * 40, silences=[sil])
    assert sent and sent[0][0] >= 1100  # told only once it expired
    with pytest.raises(ValueError, match="LABEL=VALUE"):
        route.parse_matchers(["service"])


# --- what a notification says -----------------------------------------------------------------
def test_webhook_payload_is_alertmanagers():
    a = evaluate.Alert("GroupFailed", {"alertname": "GroupFailed", "scope": "service", "service": "demo",
                                       "group": "web", "severity": "critical"}, FIRING, 100.0, 1.0, 100.0,
                       summary="demo.web is failed", action="fix it")
    n = route.Notification("bob", {"alertname": "GroupFailed", "service": "demo", "group": "web"}, [a], [])
    p = route.webhook_payload(n, C, "https://g", {a.fingerprint: {"dashboard": "https://g/dashboard/x",
                                                                  "output": "panic: boom"}})
    assert p["version"] == "4" and p["status"] == "firing" and p["receiver"] == "bob"
    assert set(p) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
                      "commonAnnotations", "externalURL", "alerts"}
    (item,) = p["alerts"]
    assert item["labels"]["cluster"] == C and item["annotations"]["output"] == "panic: boom"
    assert item["startsAt"] == "1970-01-01T00:01:40Z" and item["endsAt"] == "0001-01-01T00:00:00Z"
    body = route.text(n, C, {a.fingerprint: {"dashboard": "https://g/dashboard/x", "output": "panic: boom"}})
    assert "what to do: fix it" in body and "    panic: boom" in body and "dashboard: https://g/dashboard/x" in body
    json.dumps(p)


def test_a_webhook_url_is_never_shown_whole():
    d = notify.Delivery("1", "bob", notify.WEBHOOK, "https://hooks.example.com/T0/secret-token?x=1", "s", "{}", 0)
    assert "secret" not in d.where and d.where.startswith("https://hooks.example.com")


def test_backoff_grows_to_its_cap():
    assert [notify.backoff(n, cap=30) for n in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 30, 30]


def test_restarts_are_counted_per_instance():
    c = cfg()
    rule = next(r for r in c.rules if r.name == "RestartsHigh")
    now = 50_000.0
    series = {f"bay.{C}.groups.demo.web.restarts": [(now - 590 + 10 * k, 1.0 if k % 3 == 0 else 0.0)
                                                   for k in range(59)],  # 20 in 10 minutes
              f"bay.{C}.groups.demo.web.desired": [(now - 10, 10.0)]}
    ((_, (value, holds, _)),) = evaluate.observe(rule, c.per_service, C, None, series, now).items()
    assert value == 2.0 and not holds  # 10 instances: 2 each, the controller's business
    series[f"bay.{C}.groups.demo.web.desired"] = [(now - 10, 2.0)]
    ((_, (value, holds, _)),) = evaluate.observe(rule, c.per_service, C, None, series, now).items()
    assert value == 10.0 and holds


# --- Bay's state as the evaluator reads it ----------------------------------------------------
def test_state_from_kv_names_groups_nodes_and_probes():
    store = MemoryStore()
    base = {"image": "x", "owners": ["bob"], "groups": {"web": {"instances": 2, "cpu": 0.1, "memory": "64Mi",
                                                                "port": 80, "listen": 8000}}}
    spec = parse({"demo": base})["demo"].groups()["web"]
    store.apply([kvstore.op_put(Accepted(spec, at=1.0))] + kvstore.register_ops([
        Instance("demo", "web", "a", "node1", "10.0.0.1", 31000, "passing", container="c-a"),
        Instance("demo", "web", "b", "node2", "10.0.0.2", 31000, "critical", container="c-b"),
        Instance(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, "node1", "node1", "10.0.0.1", 5001, "passing")]))
    store.apply([kvstore.op_set(names.kv_failed_output("demo", "web"), "panic: boom")])
    got, nodes_of = sources.state(C, store, {"node1", "node2"}, {"node1"}, 100.0, consul_leader=True,
                                  probe=lambda address, port: port == 5001)
    assert got[f"bay.{C}.groups.demo.web.healthy_ratio"] == 0.5
    assert got[f"bay.{C}.nodes.node2.alive"] == 0.0 and got[f"bay.{C}.nodes.node1.alive"] == 1.0
    assert got[f"bay.{C}.platform.registry.answering"] == 1.0 and got[f"bay.{C}.platform.consul.leader"] == 1.0
    assert nodes_of == {("demo", "web"): {"node2"}}
    # a failed group's alert carries the dead container's last lines and the service's dashboard
    c = cfg()
    a = evaluate.Alert("GroupFailed", {"alertname": "GroupFailed", "scope": "service", "service": "demo",
                                       "group": "web"}, FIRING, 0)
    extra = engine.extras_for(c, store)(a)
    assert extra == {"dashboard": "https://g:8088/dashboard/bay-c-service-demo", "output": "panic: boom"}


def test_the_courier_sends_when_woken_and_retries_when_due_without_polling():
    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            got.append(time.time())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    looked = threading.Event()

    class Store(MemoryStore):
        def items(self, prefix):
            looked.set()
            return super().items(prefix)

    store = Store()
    # retries 0.2 s apart at most (the default cap is 300 s): "when due" is then well inside the 30 s idle look
    courier = engine.Courier(lambda: store, lambda: {"send_attempts": 3, "send_backoff_max": 0.2}, lambda: "")
    threading.Thread(target=courier.run, daemon=True).start()
    try:
        assert looked.wait(5)  # its first look found nothing: it now waits up to 30 s unless woken
        t0 = time.time()
        ok = notify.Delivery("d1", "bob", notify.WEBHOOK, f"http://127.0.0.1:{srv.server_port}/h", "s", "{}", t0)
        store.apply([kvstore.op_set(names.KV_ALERTS_OUTBOX + ok.id, ok.to_json())])
        courier.wake.set()
        retry.until(lambda: got and store.items(names.KV_ALERTS_OUTBOX) == {}, "the woken courier sent d1", timeout=5,
                    interval=0.02)
        assert len(got) == 1 and got[0] - t0 < 1
        bad = notify.Delivery("d2", "bob", notify.WEBHOOK, "http://127.0.0.1:1/h", "s", "{}", time.time())
        t1 = time.time()
        store.apply([kvstore.op_set(names.KV_ALERTS_OUTBOX + bad.id, bad.to_json())])
        courier.wake.set()
        # tries at 0, 0.2 and 0.4 s: the retries come when due, not at the next 30 s look
        failed = retry.until(lambda: [notify.Delivery.from_json(v) for v in store.items(names.KV_ALERTS_FAILED).values()],
                             "d2 given up after 3 tries", timeout=10, interval=0.02)
        assert [d.attempts for d in failed] == [3] and store.items(names.KV_ALERTS_OUTBOX) == {}
        assert time.time() - t1 < 5
    finally:
        srv.shutdown()
        srv.server_close()
