"""Alerts end to end on this host: a real Consul (the evaluator's state in
KV), a real SMTP server (aiosmtpd) and a real HTTP receiver; the evaluator's
rounds and the courier as the bay_alerts engine runs them."""

import email
import http.server
import json
import threading
import time

import pytest
from aiosmtpd.controller import Controller

from bay_salt.alerts import engine, notify
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Accepted, Instance
from bay_salt.kv.store import ConsulStore
from bay_salt.model import names
from bay_salt.model.services import parse
from tests.support.daemons import free_port, wait_for

pytestmark = pytest.mark.integration

C = "it"
SERVICES = {"demo": {"image": "demo:1", "owners": ["bob"], "alerts": {"GroupUnhealthy": {"for": "2s"}},
                     "groups": {"web": {"instances": 2, "cpu": 0.1, "memory": "64Mi", "port": 80, "listen": 8000}}}}


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp():
    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        yield ctl.port, box
    finally:
        ctl.stop()


class Hooks(http.server.ThreadingHTTPServer):
    def __init__(self):
        self.received, self.fail_first = [], 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(h):  # noqa: N802, N805
                body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
                if self.fail_first > 0:
                    self.fail_first -= 1
                    h.send_response(503)
                else:
                    self.received.append((h.path, body))
                    h.send_response(200)
                h.end_headers()

            def log_message(h, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def hooks():
    srv = Hooks()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def store(consul_agent):
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
    s = ConsulStore(consul_agent)
    spec = parse(SERVICES)["demo"].groups()["web"]
    s.apply([kvstore.op_put(Accepted(spec, at=1.0))])
    yield s
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)


def instances(store, health):
    store.apply(kvstore.register_ops([Instance("demo", "web", i, "node1", "10.0.0.1", 31000 + k, health,
                                               container=f"c-{i}") for k, i in enumerate(("a1", "a2"))]))


def settings(smtp_port, hooks, **extra):
    return {"group_wait": 1, "group_interval": 3, "repeat_interval": 3600, "send_attempts": 4,
            "send_backoff_max": 30, "webhook_timeout": 5, "platform_team": ["platform"],
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "sender": "bay@it"},
            "contacts": {"platform": {"email": ["ops@it"], "webhook": [f"http://127.0.0.1:{hooks.server_port}/ops"]},
                         "bob": {"email": ["bob@it"], "webhook": [f"http://127.0.0.1:{hooks.server_port}/bob"]}},
            **extra}


class Rounds:
    """The engine's loop, by hand: a round every 0.5 s and the courier after it."""

    def __init__(self, store, alerts):
        self.store, self.alerts = store, alerts
        self.ev = engine.Evaluator()
        self.courier = engine.Courier(lambda: store, lambda: alerts, lambda: "")
        self.cfg = engine.Config.from_settings(C, alerts, SERVICES, {}, "https://graphite.it")

    def run(self, seconds, nodes=("node1",)):
        end = time.time() + seconds
        while time.time() < end:
            now = time.time()
            inputs = engine.gather(self.cfg, self.store, True, set(nodes), set(nodes), None, "", now)
            engine.one_round(self.ev, self.cfg, self.store, inputs, now, hold=self.courier.hold)
            self.courier.once(time.time())
            time.sleep(0.5)


def test_an_outage_is_told_once_firing_once_resolved_and_a_restart_repeats_nothing(store, smtp, hooks):
    port, box = smtp
    alerts = settings(port, hooks)
    instances(store, "passing")
    r = Rounds(store, alerts)
    r.run(3)
    assert box.messages == [] and hooks.received == []  # all is well: nothing
    instances(store, "critical")
    began = time.time()
    r.run(5)
    instances(store, "passing")
    r.run(6)
    subjects = [(to, m["Subject"]) for to, m in box.messages]
    assert subjects == [(["bob@it"], "[FIRING:1] GroupUnhealthy demo web (it)"),
                        (["bob@it"], "[RESOLVED] GroupUnhealthy demo web (it)")], subjects
    body = box.messages[0][1].get_payload()
    assert "what to do: bay services demo" in body and "dashboard: https://graphite.it/dashboard/bay-it-service-demo" \
        in body and "value: 0" in body
    assert [(p, b["status"]) for p, b in hooks.received] == [("/bob", "firing"), ("/bob", "resolved")]
    payload = hooks.received[0][1]
    assert payload["version"] == "4" and payload["groupLabels"] == {"alertname": "GroupUnhealthy", "service": "demo",
                                                                    "group": "web"}
    assert payload["alerts"][0]["labels"]["severity"] == "critical"
    fired = time.mktime(time.strptime(payload["alerts"][0]["startsAt"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert fired - began >= 2 - 1  # `for` held (startsAt is whole seconds)
    # nothing is left to tell; a restarted evaluator over the same KV tells nothing again
    assert store.items(names.KV_ALERTS_OUTBOX) == {}
    instances(store, "critical")
    r.run(4)
    assert len(box.messages) == 3  # a new outage: told
    again = Rounds(store, alerts)
    again.run(4)
    assert len(box.messages) == 3 and len(hooks.received) == 3


def test_deliveries_are_retried_and_one_that_gives_up_is_itself_an_alert(store, smtp, hooks):
    port, box = smtp
    dead_smtp = free_port()  # nothing listens there
    alerts = settings(dead_smtp, hooks, send_attempts=3)
    hooks.fail_first = 2  # the webhook answers 503 twice, then takes it
    instances(store, "critical")
    r = Rounds(store, alerts)
    r.run(12)
    # the webhook: delivered on its third try (after 2 s and 4 s)
    assert [p for p, _ in hooks.received][:1] == ["/bob"]
    # the e-mail: given up after three attempts, kept for `bay alerts`, and the platform team hears of it
    failed = [notify.Delivery.from_json(v) for v in store.items(names.KV_ALERTS_FAILED).values()]
    assert [(d.address, d.attempts) for d in failed] == [("bob@it", 3)] and "Connection refused" in failed[0].last_error
    wait_for(lambda: r.run(1) or any(p == "/ops" and b["groupLabels"]["alertname"] == "NotificationsFailing"
                                     for p, b in hooks.received), 20, "NotificationsFailing to the platform team")
    assert box.messages == []
