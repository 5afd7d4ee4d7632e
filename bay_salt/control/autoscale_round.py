"""The autoscaler's round (run by the control loop every few seconds).

For every group with an ``autoscale`` policy and not failed: measure it
(``measure``: each node's cAdvisor, :mod:`bay_salt.metrics.cadvisor`), decide
(:func:`bay_salt.control.autoscale_policy.decide`), store the decision and the
window in KV (``bay/scale/SERVICE/GROUP``) *before* acting on it, fire
``bay/scale/decided`` with inputs and outcome, then apply it through
:class:`bay_salt.scheduling.deployer.Deployer`: up as far as capacity allows;
down gracefully (out of every HAProxy first, drained, then stopped).
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable

from bay_salt.control import autoscale_policy
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Health, Instance
from bay_salt.kv.store import Store
from bay_salt.model import names
from bay_salt.model.services import GroupSpec
from bay_salt.scheduling.backend import Backend, DeployError, RoundNodes
from bay_salt.scheduling.deployer import Deployer

log = logging.getLogger("bay.autoscale")

#: ``measure(nodes)``: ``({node: {container: usage}}, {node: error})`` for ``{node: address}``
Measure = Callable[[dict[str, str]], tuple[dict, dict]]


def load_state(store: Store, service: str, group: str) -> tuple[autoscale_policy.State, dict]:
    value = store.get(names.kv_scale(service, group))
    data = json.loads(value) if value else {}
    return autoscale_policy.State.from_dict(data.get("state")), data.get("last") or {}


def salt_measure(backend) -> Measure:
    """Measure through Salt: each node reads its own cAdvisor on loopback."""
    return lambda nodes: backend.usage_all(sorted(nodes))


def group_sample(now: float, records: list[Instance], cpu_each: float, usage: dict[str, dict],
                 errors: dict[str, str]) -> autoscale_policy.Sample:
    """The group as the policy sees it. Ready: registered as passing and
    measured (running, with a CPU figure). Instances starting, critical or
    not yet measured count as instances but not as ready (no idle capacity).
    Incomplete if a node holding one of them did not answer."""
    missing = tuple(sorted({r.node for r in records if r.node in errors or r.node not in usage}))
    used, ready = 0.0, 0
    for r in records:
        m = usage.get(r.node, {}).get(r.container)
        if r.health == Health.PASSING and m and m["cpu"] is not None:
            ready += 1
            used += m["cpu"]
    return autoscale_policy.Sample(now, len(records), ready, used, ready * cpu_each, complete=not missing, missing=missing)


class Autoscaler:
    def __init__(self, backend: Backend, store: Store, fire: Callable[[str, dict], None], measure: Measure,
                 drain_seconds: float = 2.0):
        self.backend = backend
        self.store = store
        self.fire = fire
        self.measure = measure
        self.drain = drain_seconds

    def tick(self, now: float, groups: list[GroupSpec], nodes: dict[str, str]) -> list[dict]:
        """One round over every autoscaled group of ``groups`` (their accepted
        specs). ``nodes``: alive node -> address. Returns the decisions made.

        KV is read once for the round (every record, failed group and window),
        every decision and window is written before any is acted on (batched
        transactions: a restarted controller keeps them), then the groups that
        change are deployed over one view of the nodes (:class:`RoundNodes`):
        at 500 groups a round costs a few reads, not four per group."""
        groups = [g for g in groups if g.autoscale]
        if not groups:
            return []
        used, errors = self.measure(nodes)
        failed = self.store.failed_groups()  # the controller gave up on them (crash loop) until the next deploy
        records: dict[tuple[str, str], list[Instance]] = collections.defaultdict(list)
        for r in self.store.instances():
            records[(r.service, r.group)].append(r)
        windows = self.store.items(names.kv_scale_prefix())
        out, ops, act = [], [], []
        for g in groups:
            if (g.service, g.group) in failed:
                continue
            value = windows.get(names.kv_scale(g.service, g.group))
            record, state, changes = decide_group(now, g, records.get((g.service, g.group), []), used, errors,
                                                  json.loads(value) if value else {})
            ops.append(kvstore.op_set(names.kv_scale(g.service, g.group),
                                      json.dumps({"state": state.to_dict(), "last": record})))
            out.append(record)
            if changes:
                act.append((g, record))
        self.store.apply(ops)  # stored before acting
        for record, fired in zip(out, (r.pop("_fire") for r in out), strict=True):
            if fired:
                log.info("%s %s", names.TAG_SCALE_DECIDED, record)
                self.fire(names.TAG_SCALE_DECIDED, record)
        view = RoundNodes(self.backend)
        for g, record in act:
            try:
                report = Deployer(view, self.store, drain_seconds=self.drain).reconcile(
                    g.with_instances(record["desired"]), fit=True)
                record["applied"] = report.summary()
            except DeployError as err:  # this group waits for the next round; the others go on
                log.warning("bay autoscaler: %s", err)
                record["applied"] = f"not applied: {err}"
        return out


def decide_group(now: float, g: GroupSpec, records: list[Instance], used: dict, errors: dict,
                 stored: dict) -> tuple[dict, autoscale_policy.State, bool]:
    """One group's decision from what the round read: ``(record, new window,
    whether it changes the count)``; ``record["_fire"]``: whether to announce it
    (a change, or a reason other than the last one's)."""
    policy = autoscale_policy.Policy.from_spec(g.autoscale)
    sample = group_sample(now, records, g.cpu, used, errors)
    state, last = autoscale_policy.State.from_dict(stored.get("state")), stored.get("last") or {}
    decision, new_state = autoscale_policy.decide(policy, sample, state, now)
    record = {"group": g.name, "desired": decision.desired, "current": decision.current,
              "reason": decision.reason, "recommendation": decision.recommendation,
              "utilisation": None if decision.utilisation is None else round(decision.utilisation, 3),
              "ready": sample.ready, "cpu_used": round(sample.cpu_used, 3),
              "cpu_reserved": round(sample.cpu_reserved, 3), "missing": list(sample.missing), "time": now}
    record["_fire"] = bool(decision.changes or decision.reason != last.get("reason"))
    return record, new_state, bool(decision.changes)
