"""The alert evaluator (the ``bay_alerts`` engine in the salt-master).

Every ``bay:alerts:interval`` seconds one round: read the numbers (Bay's
state; Graphite's render API), move every rule's alerts on
(:mod:`bay_salt.alerts.evaluate`), decide what each receiver is told
(:mod:`bay_salt.alerts.route`) and write it all to KV in one go: the
alerts' states, the notification log and the deliveries (the outbox). A
courier thread sends the outbox, retrying with back-off. Everything it
believes is in KV, so a restarted evaluator carries on where it was and
tells nobody anything twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from bay_salt.alerts import notify, route, sources
from bay_salt.alerts.evaluate import FIRING, PENDING, RESOLVED, Alert, numbers, observe, step
from bay_salt.kv import store as kvstore
from bay_salt.kv.store import Store
from bay_salt.metrics import dashboards
from bay_salt.metrics.render import RenderClient
from bay_salt.model import alert_rules as rules
from bay_salt.model import names
from bay_salt.util import periodic

log = logging.getLogger("bay.alerts")

#: failed deliveries counted by NotificationsFailing, and kept for `bay alerts`
FAILED_COUNTED, FAILED_KEPT = 3600.0, 86400.0


@dataclasses.dataclass
class Inputs:
    """One round's numbers and who is who."""

    state: dict[str, float] | None
    series: dict[str, list] | None
    nodes_of: dict[tuple[str, str], set[str]]
    #: KV could not be read: only Consul's own rule is evaluated from state
    state_ok: bool = True


@dataclasses.dataclass
class Config:
    cluster: str
    rules: list[rules.Rule]
    per_service: dict[str, dict[str, rules.Rule]]
    directory: route.Directory
    timing: route.Timing
    web: str = ""

    @classmethod
    def from_settings(cls, cluster: str, alerts: dict, services: dict, teams: dict, web: str = "") -> Config:
        rs, per = rules.effective(alerts.get("rules"), {s: (v or {}).get("alerts") or {}
                                                        for s, v in services.items()})
        directory = route.Directory({k: dict(v) for k, v in (alerts.get("contacts") or {}).items()},
                                    list(alerts.get("platform_team") or []), dict(teams or {}),
                                    {s: list((v or {}).get("owners") or []) for s, v in services.items()})
        timing = route.Timing(float(alerts["group_wait"]), float(alerts["group_interval"]),
                              float(alerts["repeat_interval"]))
        return cls(cluster, rs, per, directory, timing, web)


def _persisted(a: Alert) -> tuple:
    return a.state, a.since, a.fired_at, a.resolved_at


class Evaluator:
    """The alerts and the notification log, as in KV."""

    def __init__(self):
        self.alerts: dict[str, Alert] = {}
        self.log: dict[str, route.Sent] = {}
        self.saved: dict[str, tuple] = {}
        #: log entries told while KV could not take them: written with the next round KV takes
        self.unsaved: set[str] = set()
        self.last_silences: list[route.Silence] = []
        self.loaded = False

    def load(self, store: Store) -> None:
        self.alerts, self.saved, self.log = {}, {}, {}
        for key, value in store.items(names.KV_ALERTS_ACTIVE).items():
            try:
                a = Alert.from_json(value)
            except (ValueError, TypeError):
                log.warning("alerts: %s is not an alert; left alone", key)
                continue
            self.alerts[a.fingerprint] = a
            self.saved[a.fingerprint] = _persisted(a)
        for key, value in store.items(names.KV_ALERTS_LOG).items():
            try:
                self.log[key[len(names.KV_ALERTS_LOG):]] = route.Sent.from_json(value)
            except (ValueError, TypeError):
                continue
        self.loaded = True
        log.info("alerts: %d alerts and %d notified groups from KV", len(self.alerts), len(self.log))

    def evaluate(self, cfg: Config, inputs: Inputs, now: float) -> list[Alert]:
        """Move every rule's alerts one round on; the alerts whose state changed."""
        changed: list[Alert] = []
        state_all, series = numbers(cfg.cluster, inputs.state), numbers(cfg.cluster, inputs.series)
        by_rule: dict[str, dict[str, Alert]] = defaultdict(dict)  # each rule moves only its own alerts
        for fp, a in self.alerts.items():
            by_rule[a.name][fp] = a
        for rule in cfg.rules:
            state = state_all if inputs.state_ok or rule.metric.startswith("platform.consul.") else None
            changed += step(by_rule[rule.name], rule, observe(rule, cfg.per_service, cfg.cluster, state, series, now),
                            now)
        self.alerts = {fp: a for mine in by_rule.values() for fp, a in mine.items()}
        in_force = {r.name for r in cfg.rules}
        for fp, a in list(self.alerts.items()):
            if a.name in in_force:
                continue
            if a.state == PENDING:  # its rule was removed or disabled
                del self.alerts[fp]
            elif a.state == FIRING:
                a.state, a.resolved_at = RESOLVED, now
                changed.append(a)
        return changed

    def notify(self, cfg: Config, silences: list[route.Silence], nodes_of: dict, now: float,
               extras: Callable[[Alert], dict[str, str]]) -> tuple[list[route.Notification],
                                                                   list[notify.Delivery], list[dict],
                                                                   dict[str, route.Sent | None]]:
        """What is due now: notifications, their deliveries and the KV
        operations that record all of it (the caller applies them, then
        :meth:`saved_ok`)."""
        alerts = list(self.alerts.values())
        notes, changes = route.plan(alerts, self.log, cfg.directory, silences, nodes_of, cfg.timing, now)
        out: list[notify.Delivery] = []
        for n in notes:
            extra = {a.fingerprint: extras(a) for a in n.firing + n.resolved}
            contact = cfg.directory.contacts.get(n.receiver) or {}
            payload = route.webhook_payload(n, cfg.cluster, cfg.web, extra)
            out += notify.deliveries(n.receiver, contact, route.subject(n, cfg.cluster), route.text(n, cfg.cluster, extra),
                                     payload, now, n.status)
        log_after = {**self.log, **{k: v for k, v in changes.items() if v is not None}}
        for k, v in changes.items():
            if v is None:
                log_after.pop(k, None)
        told = {fp for s in log_after.values() for fp in s.firing}
        ops: list[dict] = []
        for k in self.unsaved - set(changes):
            changes[k] = self.log.get(k)
        for k, v in changes.items():
            ops.append(kvstore.op_set(names.KV_ALERTS_LOG + k, v.to_json()) if v else
                       kvstore.op_delete(names.KV_ALERTS_LOG + k))
        # a resolved alert nobody is still to be told of is over
        for fp, a in list(self.alerts.items()):
            if a.state == RESOLVED and fp not in told:
                del self.alerts[fp]
        for fp, a in self.alerts.items():
            if self.saved.get(fp) != _persisted(a):
                ops.append(kvstore.op_set(names.KV_ALERTS_ACTIVE + fp, a.to_json()))
        for fp in set(self.saved) - set(self.alerts):
            ops.append(kvstore.op_delete(names.KV_ALERTS_ACTIVE + fp))
        ops += [kvstore.op_set(names.KV_ALERTS_OUTBOX + d.id, d.to_json()) for d in out]
        return notes, out, ops, changes

    def saved_ok(self, changes: dict[str, route.Sent | None], in_kv: bool = True) -> None:
        """The round's notifications are told (``in_kv``: and recorded in KV)."""
        for k, v in changes.items():
            if v is None:
                self.log.pop(k, None)
            else:
                self.log[k] = v
        if in_kv:
            self.saved = {fp: _persisted(a) for fp, a in self.alerts.items()}
            self.unsaved = set()
        else:
            self.unsaved |= set(changes)


def silences(store: Store, now: float) -> list[route.Silence]:
    out = []
    for value in store.items(names.KV_ALERTS_SILENCES).values():
        try:
            s = route.Silence.from_json(value)
        except (ValueError, TypeError):
            continue
        if s.ends > now - 86400:  # expired a day ago: still listed, then gone
            out.append(s)
    return out


def failed_recent(store: Store, now: float) -> int:
    count = 0
    for value in store.items(names.KV_ALERTS_FAILED).values():
        try:
            d = notify.Delivery.from_json(value)
        except (ValueError, TypeError):
            continue
        count += now - d.created < FAILED_COUNTED
    return count


class Courier:
    """Sends the outbox (KV), one delivery at a time, with back-off."""

    def __init__(self, store: Callable[[], Store | None], settings: Callable[[], dict], password: Callable[[], str]):
        self.store, self.settings, self.password = store, settings, password
        self.wake = threading.Event()
        #: deliveries KV could not take (Consul without a leader): sent from here
        self.held: list[notify.Delivery] = []
        self.lock = threading.Lock()

    def hold(self, items: list[notify.Delivery]) -> None:
        with self.lock:
            self.held += items
        self.wake.set()

    def _attempt(self, d: notify.Delivery, smtp: notify.Smtp, cfg: dict, now: float) -> str:
        return notify.attempt(d, smtp, now, int(cfg.get("send_attempts", 8)), float(cfg.get("webhook_timeout", 10)),
                              float(cfg.get("send_backoff_max", 300)), cfg.get("webhook_ca_file", ""))

    def smtp(self) -> notify.Smtp:
        s = self.settings().get("smtp") or {}
        return notify.Smtp(s.get("host", ""), int(s.get("port", 25)), s.get("sender", "bay@localhost"),
                           bool(s.get("starttls")), s.get("user", ""), self.password() if s.get("user") else "")

    def once(self, now: float) -> float | None:
        """Every delivery that is due: tried once. When the next retry is due (None: nothing waits)."""
        cfg = self.settings()
        with self.lock:
            held, self.held = self.held, []
        for d in held:
            result = self._attempt(d, self.smtp(), cfg, now) if d.next_try <= now else "retry"
            if result == "retry":
                with self.lock:
                    self.held.append(d)
        store = self.store()
        if store is None:
            return min((d.next_try for d in self.held), default=None)
        items = sorted(((k, notify.Delivery.from_json(v)) for k, v in store.items(names.KV_ALERTS_OUTBOX).items()),
                       key=lambda kv: kv[1].created)
        smtp = self.smtp() if items else None
        for key, d in items:
            if d.next_try > now:
                continue
            result = self._attempt(d, smtp, cfg, now)
            if result == "sent":
                store.apply([kvstore.op_delete(key)])
            elif result == "retry":
                store.apply([kvstore.op_set(key, d.to_json())])
            else:
                store.apply([kvstore.op_delete(key), kvstore.op_set(names.KV_ALERTS_FAILED + d.id, d.to_json())])
        # failed ones are kept a day for `bay alerts`
        old = [k for k, v in store.items(names.KV_ALERTS_FAILED).items()
               if now - notify.Delivery.from_json(v).created > FAILED_KEPT]
        if old:
            store.apply([kvstore.op_delete(k) for k in old])
        waiting = [d.next_try for _k, d in items if d.next_try > now] + [d.next_try for d in self.held]
        return min(waiting, default=None)

    def run(self, idle: float = 30.0) -> None:
        """Send when a round wrote deliveries (it wakes this) or a retry is due;
        otherwise look at the outbox every ``idle`` seconds (what a restart left)."""
        wait = 0.0
        while True:
            self.wake.wait(wait)
            self.wake.clear()
            try:
                due = self.once(time.time())
                wait = idle if due is None else min(idle, max(0.0, due - time.time()))
            except Exception as err:  # noqa: BLE001 - the next turn tries again
                log.warning("alerts: sending: %s (trying again)", err)
                wait = 1.0


def extras_for(cfg: Config, store: Store) -> Callable[[Alert], dict[str, str]]:
    """A dashboard link for every alert, and a failed group's last output."""
    def extras(a: Alert) -> dict[str, str]:
        out = {}
        svc = a.labels.get("service")
        if cfg.web:
            name = dashboards.dashboard_name(cfg.cluster, svc if a.scope == "service" else None)
            out["dashboard"] = f"{cfg.web.rstrip('/')}/dashboard/{name}"
        if a.name == "GroupFailed" and svc:
            try:
                raw = store.get(names.kv_failed_output(svc, a.labels.get("group", "")))
            except Exception:  # noqa: BLE001 - the alert goes without it
                raw = None
            if raw:
                out["output"] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return out

    return extras


def one_round(ev: Evaluator, cfg: Config, store: Store, inputs: Inputs, now: float,
              hold: Callable[[list[notify.Delivery]], None] | None = None) -> tuple[list[Alert],
                                                                          list[notify.Delivery]]:
    """Evaluate, plan and record one round. When KV does not take the
    record (Consul without a leader) the deliveries go to ``hold`` (sent
    from memory) and the record is written once KV takes it again; without
    ``hold`` the store's error is raised and nothing is taken as told."""
    if not ev.loaded:
        ev.load(store)
    changed = ev.evaluate(cfg, inputs, now)
    for a in changed:
        log.info("alert %s %s: %s", a.state, a.name, a.summary)
    try:
        quiet = silences(store, now)
    except Exception:  # noqa: BLE001 - KV away: the silences last read hold
        if hold is None:
            raise
        quiet = ev.last_silences
    ev.last_silences = quiet
    notes, out, ops, changes = ev.notify(cfg, quiet, inputs.nodes_of, now, extras_for(cfg, store))
    try:
        if ops:
            store.apply(ops)
        ev.saved_ok(changes)
    except Exception as err:  # noqa: BLE001
        if hold is None:
            raise
        log.warning("alerts: KV does not take this round (%s): %d deliveries sent from memory", err, len(out))
        ev.saved_ok(changes, in_kv=False)
        hold(out)
    for n in notes:
        log.info("alerts: %s told of %s (%d firing, %d resolved)", n.receiver, n.group, len(n.firing),
                 len(n.resolved))
    return changed, out


def gather(cfg: Config, store: Store | None, consul_leader: bool, nodes_known: set[str], alive: set[str],
           render: RenderClient | None, registry_storage: str, now: float) -> Inputs:
    state, nodes_of, ok = None, {}, True
    try:
        if store is None:
            raise kvstore.Unavailable("no Consul server answers")
        state, nodes_of = sources.state(cfg.cluster, store, nodes_known, alive, now, consul_leader=consul_leader,
                                        registry_storage=registry_storage, render=render,
                                        failed_sends=failed_recent(store, now))
    except Exception as err:  # noqa: BLE001 - Consul without a leader is a thing to alert on, not to stop at
        log.warning("alerts: Bay's state could not be read: %s", err)
        ok = False
        state = {names.metric_platform(cfg.cluster, "consul.leader"): 1.0 if consul_leader else 0.0}
    series = None
    targets, window = sources.graphite_targets(cfg.rules, cfg.cluster)
    if render is not None and targets:
        series = sources.graphite(render, targets, window)
    return Inputs(state, series, nodes_of, ok)


def consul_view(store: Store | None) -> tuple[bool, set[str], set[str]]:
    """(Consul has a leader, nodes Consul knows, nodes alive) from one server."""
    from bay_salt.master import nodes as node_health

    if store is None:
        return False, set(), set()
    try:
        leader = bool(store.client.status.leader())
    except Exception:  # noqa: BLE001 - no answer: no leader seen
        return False, set(), set()
    try:
        _index, checks = store.client.health.state("any")
    except Exception:  # noqa: BLE001
        return leader, set(), set()
    seen, _lost, _back = node_health.node_changes(None, checks)
    return leader, set(seen), node_health.alive(seen)


def _read(path: str) -> str:
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as err:
        log.error("alerts: cannot read %s: %s", path, err.strerror)
        return ""


def run(opts: dict, graphite_user: str = "", graphite_password_file: str = "",
        ca_file: str = "/etc/bay/ca.pem") -> None:
    """The ``bay_alerts`` engine's body: rounds until the master stops.

    Rounds fall on multiples of the interval and each uses that instant as
    its clock, so ``for`` and ``group_wait`` are counted in whole rounds
    (a 30 s ``for`` fires on the sixth round after the condition was first
    seen, not the seventh because a round ran a little early). What the
    nodes report (pillar) is asked for in a thread of its own every 30 s: a
    slow node never delays a round."""
    from bay_salt.master import leader
    from bay_salt.master.reports import NodeReports

    reports = NodeReports(opts, ttl=30.0)
    leader.lead(opts, "alerts", reports)  # stands by while another master evaluates
    ev = Evaluator()
    settings = lambda: reports.alerting.get("alerts") or {}  # noqa: E731
    courier = Courier(lambda: reports.store, settings,
                      lambda: _read((settings().get("smtp") or {}).get("password_file", "")))
    threading.Thread(target=courier.run, name="bay-alerts-courier", daemon=True).start()
    threading.Thread(target=_refresh_reports, args=(reports,), name="bay-alerts-reports", daemon=True).start()
    graphite_password = _read(graphite_password_file)
    cfg: Config | None = None
    cfg_key = ""
    last_error = ""
    log.info("bay alerts started")
    while True:
        interval = float(settings().get("interval") or 5.0)
        now = periodic.sleep_to_next(interval)
        if reports.store is None or reports.settings is None:
            continue  # the nodes have not reported yet
        try:
            m = reports.monitoring
            key = json.dumps([settings(), reports.services, reports.alerting.get("teams"), m.get("web")],
                             sort_keys=True, default=str)
            if key != cfg_key:
                try:
                    cfg = Config.from_settings(m.get("cluster") or "default", settings(), reports.services,
                                               reports.alerting.get("teams") or {}, m.get("web") or "")
                except (rules.RuleError, KeyError, ValueError) as err:
                    log.error("alerts: the rules in pillar cannot be used (the last good ones stay): %s", err)
                cfg_key = key
            if cfg is not None and settings().get("enabled", True):
                render = (RenderClient(m["web"], graphite_user, graphite_password, ca_file if m.get("tls") else "")
                          if m.get("enabled") and m.get("web") else None)
                store = reports.store
                leader, known, alive = consul_view(store)
                inputs = gather(cfg, store, leader, known | set(reports.addresses), alive, render,
                                reports.alerting.get("registry_storage") or "", now)
                _changed, out = one_round(ev, cfg, store, inputs, now, hold=courier.hold)
                if out:
                    courier.wake.set()
            if last_error:
                log.info("alerts: rounds work again")
            last_error = ""
        except Exception as err:  # noqa: BLE001 - the next round tries again
            if str(err) != last_error:  # once per trouble, not every 5 s
                log.warning("alerts: round failed (the next ones try again): %s", err)
            last_error = str(err)


def _refresh_reports(reports, every: float = 30.0) -> None:
    last = ""
    while True:
        try:
            reports.refresh(force=True)
            last = ""
        except Exception as err:  # noqa: BLE001 - the next look tries again
            if str(err) != last:
                log.warning("alerts: the nodes' reports: %s (asking again)", err)
            last = str(err)
        time.sleep(every if reports.settings is not None else 2.0)
