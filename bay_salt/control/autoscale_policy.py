"""Autoscaling: "scale up fast, scale down slowly".

:func:`decide` is the whole policy, a pure function of the group's policy,
its recent samples, its saved state and the time:

* utilisation = CPU used by the group's *ready* instances / CPU they reserve;
* desired = ceil(ready x utilisation / target), left alone inside the
  tolerance band (noise);
* up: at once and in proportion (all the instances needed in one step),
  bounded only by ``max`` (placement bounds it by capacity when applied);
* down: the highest recommendation seen over the stabilisation window
  (so a dip in an oscillating load removes nothing), and at most
  ``scale_down_step`` of the instances per step; never while an instance
  is starting or failing its health check (it is no idle capacity);
* no decision on partial data (a node whose cAdvisor did not answer).

The state (recommendations in the window, the last decision) lives in Consul
KV under ``bay/scale/SERVICE/GROUP``, so a restarted controller keeps its
windows and does not scale twice.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Policy:
    min: int
    max: int
    target_cpu: float  # CPU utilisation, 0-1, of what the instances reserve
    tolerance: float = 0.1
    scale_down_window: float = 300.0  # seconds
    scale_down_step: float = 0.5  # largest share of the instances removed per step (at least 1)

    @classmethod
    def from_spec(cls, spec) -> Policy:
        """From a group's validated ``autoscale`` (:class:`bay_salt.model.services.Autoscale`)."""
        return cls(**spec.model_dump())


@dataclass(frozen=True)
class Sample:
    """One look at a group: its instances, how many are ready (passing their
    health check), the CPU the ready ones used (cores) and reserve (cores)."""

    time: float
    instances: int
    ready: int
    cpu_used: float
    cpu_reserved: float
    complete: bool = True  # False: some node's metrics are missing
    missing: tuple[str, ...] = ()

    @property
    def utilisation(self) -> float | None:
        return self.cpu_used / self.cpu_reserved if self.cpu_reserved > 0 else None


@dataclass
class State:
    """Saved between decisions (and controller restarts): the recommendations
    within the scale-down window and the last decision."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    desired: int | None = None
    decided_at: float | None = None
    #: recent scale decisions (time, +1 up / -1 down): oscillation lengthens the scale-down window
    moves: list[tuple[float, int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> State:
        data = data or {}
        return cls([(float(t), int(n)) for t, n in data.get("recommendations", [])], data.get("desired"),
                   data.get("decided_at"), [(float(t), int(d)) for t, d in data.get("moves", [])])


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    reason: str
    recommendation: int | None = None
    utilisation: float | None = None

    @property
    def changes(self) -> bool:
        return self.desired != self.current


def recommend(policy: Policy, ready: int, utilisation: float) -> int:
    """The raw recommendation: the instances that would bring utilisation to target."""
    if ready == 0:
        return policy.min
    ratio = utilisation / policy.target_cpu
    if abs(ratio - 1.0) <= policy.tolerance:
        return ready
    return math.ceil(ready * ratio - 1e-9)


def clamp(policy: Policy, n: int) -> int:
    return max(policy.min, min(policy.max, n))


#: a scale-down undone by a scale-up within this many windows was premature (load oscillates) ...
PREMATURE = 4.0
#: ... and doubles the scale-down window, up to this factor; reversals older than FLAP_MEMORY
#: seconds (or 12 windows, if longer) are forgotten, so the group probes a smaller size again
MAX_FACTOR = 4
FLAP_MEMORY = 3600.0


def flap_memory(policy: Policy) -> float:
    return max(FLAP_MEMORY, 12 * policy.scale_down_window)


def window_factor(policy: Policy, moves: list[tuple[float, int]], now: float) -> int:
    """How many times the base scale-down window applies now: doubled for
    every recent scale-down that a scale-up soon undid (oscillating load),
    at most :data:`MAX_FACTOR`."""
    w = policy.scale_down_window
    recent = [(t, d) for t, d in moves if now - t < flap_memory(policy)]
    reversals = sum(1 for (t1, d1), (t2, d2) in zip(recent, recent[1:]) if d1 < 0 < d2 and t2 - t1 < PREMATURE * w)
    return min(MAX_FACTOR, 2 ** reversals)


def decide(policy: Policy, sample: Sample, state: State, now: float) -> tuple[Decision, State]:
    """The decision for one group now, and the state to save."""
    current = sample.instances
    keep = policy.scale_down_window * MAX_FACTOR
    recs = [(t, n) for t, n in state.recommendations if now - t < keep]
    moves = [(t, d) for t, d in state.moves if now - t < flap_memory(policy)]

    def out(desired: int, reason: str, rec: int | None = None, util: float | None = None):
        changed = desired != current
        new = State(recs, desired if changed else state.desired, now if changed else state.decided_at,
                    moves + ([(now, 1 if desired > current else -1)] if changed else []))
        return Decision(desired, current, reason, rec, util), new

    if current == 0:  # stopped on purpose (bay.scale to 0): not resurrected
        return out(0, "no decision: the group is scaled to 0")
    if current < policy.min or current > policy.max:  # the bounds first (e.g. a policy just changed)
        return out(clamp(policy, current), f"outside min {policy.min} / max {policy.max}")
    if not sample.complete:
        return out(current, f"no decision: metrics missing from {', '.join(sample.missing)}")
    util = sample.utilisation
    if util is None:
        return out(current, "no decision: no ready instance to measure")
    rec = clamp(policy, recommend(policy, sample.ready, util))
    recs.append((now, rec))
    if rec > current:  # up: at once, all of it
        return out(rec, "up", rec, util)
    if rec == current or sample.ready < current:
        why = "within tolerance" if rec == current else "no scale-down while instances are starting or unhealthy"
        return out(current, why, rec, util)
    # down: the highest recommendation over the window (longer while the load
    # oscillates), a bounded share per step
    factor = window_factor(policy, moves, now)
    stable = max(n for t, n in recs if now - t < policy.scale_down_window * factor)
    if stable >= current:
        longer = f" ({factor}x: the load oscillates)" if factor > 1 else ""
        return out(current, f"down deferred: {stable} recommended within the window{longer}", rec, util)
    step = max(1, math.floor(current * policy.scale_down_step))
    return out(max(stable, current - step, policy.min), "down", rec, util)
