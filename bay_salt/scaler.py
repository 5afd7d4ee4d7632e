"""The autoscaler's loop step (run by the controller engine every few seconds).

For every group with an ``autoscale`` policy and not failed: measure it
(:mod:`bay_salt.metrics`), decide (:func:`bay_salt.autoscale.decide`), store
the decision and the window in KV (``bay/scale/SERVICE/GROUP``) *before*
acting on it, fire ``bay/scale/decided`` with inputs and outcome, then apply
it through :class:`bay_salt.deploy.Deployer`: up as far as capacity allows;
down gracefully (out of every HAProxy first, drained, then stopped).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from bay_salt import autoscale, kv, metrics, names, services
from bay_salt.deploy import Backend, Deployer

log = logging.getLogger("bay.autoscale")


def load_state(client, service: str, group: str) -> tuple[autoscale.State, dict]:
    _, item = client.kv.get(names.kv_scale(service, group))
    data = json.loads(item["Value"]) if item and item.get("Value") else {}
    return autoscale.State.from_dict(data.get("state")), data.get("last") or {}


class Autoscaler:
    def __init__(self, backend: Backend, client, fire: Callable[[str, dict], None], drain_seconds: float = 2.0):
        self.backend = backend
        self.client = client
        self.fire = fire
        self.drain = drain_seconds

    def tick(self, now: float, specs: dict, nodes: dict[str, str], cadvisor_port: int,
             usage: tuple[dict, dict] | None = None) -> list[dict]:
        """One round over every autoscaled group. ``nodes``: alive node ->
        address; ``usage`` (tests): ``(usage, errors)`` instead of asking
        cAdvisor. Returns the decisions made."""
        groups = [g for spec in services.parse(specs).values() for g in spec.groups().values() if g.get("autoscale")]
        if not groups:
            return []
        used, errors = usage if usage is not None else metrics.fetch_all(nodes, cadvisor_port)
        out = []
        for g in groups:
            if self.client.kv.get(names.kv_failed(g["service"], g["group"]))[1]:
                continue  # the controller gave up on it (crash loop) until the next deploy
            out.append(self.group(now, g, used, errors))
        return out

    def group(self, now: float, g: dict, used: dict, errors: dict) -> dict:
        name = f"{g['service']}.{g['group']}"
        policy = autoscale.Policy.from_spec(g["autoscale"])
        _, records = kv.read_instances(self.client, g["service"], g["group"])
        sample = metrics.group_sample(now, records, g["cpu"], used, errors)
        state, last = load_state(self.client, g["service"], g["group"])
        decision, new_state = autoscale.decide(policy, sample, state, now)
        record = {"group": name, "desired": decision.desired, "current": decision.current,
                  "reason": decision.reason, "recommendation": decision.recommendation,
                  "utilisation": None if decision.utilisation is None else round(decision.utilisation, 3),
                  "ready": sample.ready, "cpu_used": round(sample.cpu_used, 3),
                  "cpu_reserved": round(sample.cpu_reserved, 3), "missing": list(sample.missing), "time": now}
        # stored before acting: a restarted controller keeps the window and the decision
        kv.apply(self.client, [kv.op_set(names.kv_scale(g["service"], g["group"]),
                                         json.dumps({"state": new_state.to_dict(), "last": record}))])
        if decision.changes or decision.reason != last.get("reason"):
            log.info("%s %s", names.TAG_SCALE_DECIDED, record)
            self.fire(names.TAG_SCALE_DECIDED, record)
        if decision.changes:
            report = Deployer(self.backend, self.client, drain_seconds=self.drain).reconcile(
                dict(g, instances=decision.desired), fit=True)
            record["applied"] = report.summary()
        return record
