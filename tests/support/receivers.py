"""Real receivers of Bay's alerts on this machine, for the e2e tests and the
benches: an SMTP server (aiosmtpd) and an HTTP server taking webhooks, both
on one address (a `bay up` cluster's network gateway: its master reaches it)."""

from __future__ import annotations

import email
import http.server
import json
import threading
import time

from aiosmtpd.controller import Controller

from tests.support.daemons import free_port


class Inbox:
    """What the receivers got: rows of ``at, channel, receiver, alertname, service, status``."""

    KEYS = ("channel", "receiver", "alertname", "service", "status")

    def __init__(self):
        self.items, self.lock = [], threading.Lock()

    def add(self, item: tuple) -> None:
        with self.lock:
            self.items.append((time.time(), *item))

    def about(self, since: float = 0.0, **match) -> list[dict]:
        with self.lock:
            rows = [dict(zip(("at", *self.KEYS), i, strict=True)) for i in self.items if i[0] >= since]
        return [r for r in rows if all(r[k] == v for k, v in match.items())]

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        subject = email.message_from_bytes(envelope.content)["Subject"]  # [FIRING:1] GroupUnhealthy alarm web (e2e)
        state, _, rest = subject.partition("] ")
        alertname, *what = rest.split(" ")
        service = what[0] if what and not what[0].startswith("(") else ""
        for to in envelope.rcpt_tos:
            self.add(("email", to.split("@")[0], alertname, service, "resolved" if state == "[RESOLVED" else "firing"))
        return "250 OK"


class Receivers:
    """Both servers on ``address``; :meth:`settings` is the ``bay:alerts`` that sends there."""

    def __init__(self, address: str):
        self.address, self.inbox = address, Inbox()
        self.smtp = Controller(self.inbox, hostname=address, port=free_port())
        inbox = self.inbox

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                inbox.add(("webhook", self.path.strip("/"), body["groupLabels"].get("alertname"),
                           body["groupLabels"].get("service", ""), body["status"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.hooks = http.server.ThreadingHTTPServer((address, 0), Hook)

    def __enter__(self) -> Receivers:
        self.smtp.start()
        threading.Thread(target=self.hooks.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.hooks.shutdown()
        self.hooks.server_close()
        self.smtp.stop()

    def settings(self, contacts: list[str], platform: str = "platform", **timing) -> dict:
        hook = f"http://{self.address}:{self.hooks.server_port}"
        return {"interval": 2, "group_wait": 2, "group_interval": 15, **timing, "platform_team": [platform],
                "smtp": {"host": self.address, "port": self.smtp.port, "sender": "bay@bay-up"},
                "contacts": {c: {"email": [f"{c}@bay-up"], "webhook": [f"{hook}/{c}"]}
                             for c in sorted({platform, *contacts})}}


def gateway(cluster) -> str:
    """The address of this machine on a `bay up` cluster's network."""
    from bay_salt.host.sources import network_gateway
    from bay_salt.model import names

    net = cluster.client.networks.get(names.network_name(cluster.name))
    return network_gateway(net)
