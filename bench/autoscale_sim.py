"""Autoscaling simulator: Bay's policy (bay_salt.autoscale.decide, the code
the controller runs) beside a model of Kubernetes' HPA with its defaults,
replaying the same load traces for a fleet of groups.

Model, the same for both: each instance may use 1 core (its limit) and is
measured at min(1, demand / capacity) utilisation; a new instance is ready
(measured, serving) ``--startup`` seconds after it is decided; the target
utilisation is 0.6 for both.

HPA defaults (kube-controller-manager and autoscaling/v2 behavior): sync every
15 s; tolerance 0.1; scale-up at most max(+100 %, +4 pods) per 15 s;
scale-down stabilisation window 300 s (highest recommendation), then at most
100 % per 15 s. Bay: decides every ``--interval`` seconds (5: the controller's
default), tolerance 0.1, scale-down window 300 s, at most 25 % removed per
step (the default scale_down_step), a longer window while the load oscillates,
no limit on scale-up but max.

Traces (one per group, 100 groups, 60 min): steps to 1.5x (what a saturated
group can show in one look at target 0.6 is 1/0.6 = 1.67x), steps to 4x,
square waves (low then twice as high, periods 4 to 20 min), noisy flat load, ramps, spikes.

Reported per policy: time from a step to the capacity needed (ready
instances enough to bring utilisation to target +10 %), under-provisioned
minutes (demand above what the ready instances can serve), over-provisioned
instance-minutes (ready beyond what target needs), scale events under the
square waves and in total.

    .venv/bin/python bench/autoscale_sim.py [--groups 100] [--minutes 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable

from common import pct
from rich.console import Console
from rich.table import Table

from bay_salt.control.autoscale_policy import Policy, Sample, State, decide

TARGET, TOL = 0.6, 0.1


def at_target(demand: float, mn: int, mx: int) -> int:
    return max(mn, min(mx, math.ceil(demand / TARGET - 1e-9)))


def needed(demand: float, mn: int, mx: int) -> int:
    return max(mn, min(mx, math.ceil(demand / (TARGET * (1 + TOL)) - 1e-9)))


class Group:
    """Instances decided over time; each ready ``startup`` seconds later."""

    def __init__(self, n: int, startup: float):
        self.desired = n
        self.pending: list[tuple[float, int]] = []  # (ready at, count)
        self.ready = n
        self.startup = startup
        self.events = 0

    def set(self, now: float, n: int) -> None:
        if n == self.desired:
            return
        self.events += 1
        if n > self.desired:
            self.pending.append((now + self.startup, n - self.desired))
        else:  # removals: out at once (pending ones first)
            drop = self.desired - n
            while drop and self.pending:
                t, k = self.pending.pop()
                take = min(k, drop)
                drop -= take
                if k > take:
                    self.pending.append((t, k - take))
            self.ready -= drop
        self.desired = n

    def advance(self, now: float) -> None:
        due = [k for t, k in self.pending if t <= now]
        self.pending = [(t, k) for t, k in self.pending if t > now]
        self.ready += sum(due)


def sample(now: float, g: Group, demand: float) -> Sample:
    used = min(demand, g.ready * 1.0)
    return Sample(now, g.desired, g.ready, used, float(g.ready))


class Bay:
    name = "Bay"

    def __init__(self, interval: float, mn: int, mx: int):
        self.interval = interval
        self.policy = Policy(min=mn, max=mx, target_cpu=TARGET, tolerance=TOL, scale_down_window=300.0)
        self.state = State()

    def step(self, now: float, g: Group, demand: float) -> None:
        d, self.state = decide(self.policy, sample(now, g, demand), self.state, now)
        g.set(now, d.desired)


class HPA:
    name = "HPA defaults"
    interval = 15.0

    def __init__(self, interval: float, mn: int, mx: int):
        self.mn, self.mx = mn, mx
        self.recs: list[tuple[float, int]] = []

    def step(self, now: float, g: Group, demand: float) -> None:
        cur = g.desired
        if g.ready == 0:
            return
        util = min(demand, g.ready) / g.ready
        ratio = util / TARGET
        rec = cur if abs(ratio - 1) <= TOL else math.ceil(g.ready * ratio - 1e-9)
        rec = max(self.mn, min(self.mx, rec))
        self.recs = [(t, n) for t, n in self.recs if now - t < 300.0] + [(now, rec)]
        if rec > cur:
            g.set(now, min(rec, max(2 * cur, cur + 4)))
        elif rec < cur:
            stable = max(n for _, n in self.recs)
            if stable < cur:
                g.set(now, max(stable, self.mn))


def traces(groups: int, minutes: int, rng: random.Random) -> list[tuple[str, Callable[[float], float], float | None]]:
    """(kind, demand(t) in cores, step time or None)."""
    out = []
    end = minutes * 60.0
    kinds = ["step1.5", "step4", "square", "noisy", "ramp", "spike"]
    for k in range(groups):
        kind = kinds[k % len(kinds)]
        base = rng.uniform(2.0, 6.0)
        t0 = rng.uniform(600.0, end - 1200.0)
        noise = random.Random(rng.random())
        if kind.startswith("step"):
            f = float(kind[4:])
            out.append((kind, lambda t, b=base, t0=t0, f=f: b * (f if t >= t0 else 1.0), t0))
        elif kind == "square":
            period = rng.choice([240.0, 480.0, 720.0, 960.0, 1200.0])  # low for 2 to 10 min
            out.append((kind, lambda t, b=base, p=period: b * (1.0 if (t % p) < p / 2 else 2.0), None))
        elif kind == "noisy":
            out.append((kind, lambda t, b=base, r=noise: b * (1 + r.uniform(-0.08, 0.08)), None))
        elif kind == "ramp":
            out.append((kind, lambda t, b=base, e=end: b * (1 + 2 * t / e), None))
        else:
            out.append((kind, lambda t, b=base, t0=t0: b * (3.0 if t0 <= t < t0 + 20 else 1.0), None))
    return out


def simulate(policy_cls, trace, minutes: int, interval: float, startup: float, mn: int = 1, mx: int = 200) -> dict:
    kind, demand, t_step = trace
    g = Group(at_target(demand(0.0), mn, mx), startup)
    policy = policy_cls(interval, mn, mx)
    under = over = 0.0
    reached = None
    t = 0.0
    next_decision = 0.0
    while t < minutes * 60:
        g.advance(t)
        d = demand(t)
        if t >= next_decision:
            policy.step(t, g, d)
            next_decision += policy.interval
        need = needed(d, mn, mx)
        if g.ready < d - 1e-9:
            under += 1 / 60
        over += max(0, g.ready - need) / 60
        if t_step is not None and reached is None and t >= t_step and g.ready >= need:
            reached = t - t_step
        t += 1.0
    return {"kind": kind, "under": under, "over": over, "events": g.events, "reach": reached}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--groups", type=int, default=100)
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument("--interval", type=float, default=5.0, help="Bay's autoscale_interval")
    p.add_argument("--startup", type=float, default=3.0, help="seconds from decision to a ready instance")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    fleet = traces(args.groups, args.minutes, random.Random(args.seed))
    results = {cls.name: [simulate(cls, tr, args.minutes, args.interval, args.startup) for tr in fleet]
               for cls in (Bay, HPA)}
    con = Console(width=150)
    t = Table(title=f"{args.groups} groups x {args.minutes} min, same traces; Bay decides every {args.interval:g} s, "
                    f"HPA every 15 s; instances ready {args.startup:g} s after a decision")
    for col in ("figure", "Bay", "HPA defaults", "target"):
        t.add_column(col)

    def reach(name, kind, q):
        vals = [r["reach"] for r in results[name] if r["kind"] == kind and r["reach"] is not None]
        return f"{pct(vals, q):.0f} s" if vals else "never"

    for kind, label in (("step1.5", "step to 1.5x: time to needed capacity"),
                        ("step4", "step to 4x: time to needed capacity")):
        for q, qn in ((0.5, "median"), (0.95, "p95")):
            tgt = f"<= {args.interval:g} s + start" if kind == "step1.5" else ""
            t.add_row(f"{label}, {qn}", reach("Bay", kind, q), reach("HPA defaults", kind, q), tgt)

    def total(name, key, kind=None):
        return sum(r[key] for r in results[name] if kind is None or r["kind"] == kind)

    t.add_row("under-provisioned minutes (demand > ready capacity), all groups",
              f"{total('Bay', 'under'):.1f}", f"{total('HPA defaults', 'under'):.1f}", "Bay <= HPA")
    t.add_row("over-provisioned instance-minutes (beyond target), all groups",
              f"{total('Bay', 'over'):.0f}", f"{total('HPA defaults', 'over'):.0f}", "")
    t.add_row("scale events under square waves", str(total("Bay", "events", "square")),
              str(total("HPA defaults", "events", "square")), "Bay < HPA")
    t.add_row("scale events, all groups", str(total("Bay", "events")), str(total("HPA defaults", "events")), "")
    for kind in ("noisy",):
        t.add_row(f"scale events under {kind} flat load", str(total("Bay", "events", kind)),
                  str(total("HPA defaults", "events", kind)), "")
    con.print(t)



if __name__ == "__main__":
    main()
