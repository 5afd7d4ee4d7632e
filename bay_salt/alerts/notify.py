"""Sending notifications: e-mail over SMTP and webhooks (JSON), each
retried with back-off, and a delivery that gives up is kept where people
look (``bay alerts``) and raises ``NotificationsFailing``.

A notification becomes one :class:`Delivery` per address of its receiver,
written to KV (the outbox) in the same transaction as the notification
log: a restarted evaluator sends what was due and nothing twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from email.message import EmailMessage

log = logging.getLogger("bay.alerts")

EMAIL, WEBHOOK = "email", "webhook"


@dataclasses.dataclass
class Delivery:
    id: str
    receiver: str
    channel: str
    address: str
    subject: str
    body: str
    created: float
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""
    status: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Delivery:
        return cls(**json.loads(text))

    @property
    def where(self) -> str:
        """The address as it may be shown (a webhook's path and query may hold a token)."""
        return self.address if self.channel == EMAIL else shown_url(self.address)


def shown_url(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    return f"{u.scheme}://{u.hostname}{':' + str(u.port) if u.port else ''}/..."


def deliveries(receiver: str, contact: dict, subject: str, text: str, payload: dict, now: float,
               status: str) -> list[Delivery]:
    """One delivery per e-mail address and webhook URL of the contact."""
    out = []
    for addr in contact.get("email") or []:
        out.append(Delivery(uuid.uuid4().hex, receiver, EMAIL, addr, subject, text, now, status=status))
    for url in contact.get("webhook") or []:
        out.append(Delivery(uuid.uuid4().hex, receiver, WEBHOOK, url, subject, json.dumps(payload), now,
                            status=status))
    return out


@dataclasses.dataclass(frozen=True)
class Smtp:
    host: str = ""
    port: int = 25
    sender: str = "bay@localhost"
    starttls: bool = False
    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    timeout: float = 10.0


def send_email(smtp: Smtp, d: Delivery) -> None:
    if not smtp.host:
        raise OSError("no SMTP server (bay:alerts:smtp:host)")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = smtp.sender, d.address, d.subject
    msg["X-Bay-Delivery"] = d.id
    msg.set_content(d.body)
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as s:
        if smtp.starttls:
            s.starttls(context=ssl.create_default_context())
        if smtp.user:
            s.login(smtp.user, smtp.password)
        s.send_message(msg)


def send_webhook(d: Delivery, timeout: float = 10.0, ca_file: str = "") -> None:
    req = urllib.request.Request(d.address, data=d.body.encode(), method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "bay-alerts",
                                          "X-Bay-Delivery": d.id})
    ctx = ssl.create_default_context(cafile=ca_file or None) if d.address.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            resp.read()
    except urllib.error.HTTPError as err:
        raise OSError(f"HTTP {err.code}") from None
    except urllib.error.URLError as err:
        raise OSError(str(err.reason)) from None


def backoff(attempts: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds before the next try after ``attempts`` failed ones."""
    return min(cap, base * 2 ** max(0, attempts - 1))


def attempt(d: Delivery, smtp: Smtp, now: float, max_attempts: int, webhook_timeout: float = 10.0,
            backoff_cap: float = 300.0, ca_file: str = "") -> str:
    """Try ``d`` once: ``"sent"``, ``"retry"`` (``d`` says when and why) or
    ``"failed"`` (given up after ``max_attempts``)."""
    try:
        if d.channel == EMAIL:
            send_email(smtp, d)
        else:
            send_webhook(d, webhook_timeout, ca_file)
    except (OSError, smtplib.SMTPException, ValueError) as err:
        d.attempts += 1
        d.last_error = f"{type(err).__name__}: {err}"[:300]
        if d.attempts >= max_attempts:
            log.error("alert to %s (%s %s) not delivered after %d attempts: %s", d.receiver, d.channel, d.where,
                      d.attempts, d.last_error)
            return "failed"
        d.next_try = now + backoff(d.attempts, cap=backoff_cap)
        log.warning("alert to %s (%s %s), attempt %d: %s; again in %.0f s", d.receiver, d.channel, d.where,
                    d.attempts, d.last_error, d.next_try - now)
        return "retry"
    d.attempts += 1
    log.info("alert to %s (%s %s): %s", d.receiver, d.channel, d.where, d.subject)
    return "sent"
