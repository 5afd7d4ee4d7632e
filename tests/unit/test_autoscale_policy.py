"""The autoscaling policy (bay_salt.autoscale.decide) against load shapes:
step, ramp, spike, square wave, noisy flat load, missing data."""

import math
import random

from bay_salt.control.autoscale_policy import Policy, Sample, State, decide, recommend

CPU = 0.5  # cores each instance reserves (and may use: the cgroup limit)
POLICY = Policy(min=2, max=40, target_cpu=0.6, scale_down_window=120.0, scale_down_step=0.5)


def sample(t, n, demand, ready=None):
    ready = n if ready is None else ready
    used = min(demand, ready * CPU)  # a container cannot use more than its limit
    return Sample(t, n, ready, used, ready * CPU)


def run(load, seconds, interval=5.0, policy=POLICY, n=2):
    """Replay ``load(t)`` (cores wanted); instances start within one interval.
    Returns [(t, instances, decision)]."""
    state, out = State(), []
    t = 0.0
    while t <= seconds:
        d, state = decide(policy, sample(t, n, load(t)), state, t)
        out.append((t, n, d))
        n = d.desired
        t += interval
    return out


def needed(demand, policy=POLICY):
    return max(policy.min, min(policy.max, math.ceil(demand / (CPU * policy.target_cpu) - 1e-9)))


def test_recommendation_and_tolerance():
    assert recommend(POLICY, 4, 0.6) == 4
    assert recommend(POLICY, 4, 0.65) == 4  # inside the 10 % band
    assert recommend(POLICY, 4, 0.9) == 6
    assert recommend(POLICY, 10, 0.3) == 5


def test_step_is_met_in_one_decision_interval():
    # from 1 core to 3 cores: within what a saturated group can show (1/target of its capacity)
    trace = run(lambda t: 1.0 if t < 60 else 1.6, 200)
    after = [(t, n) for t, n, _ in trace if t > 60]
    assert after[0][1] >= needed(1.6)  # the first decision after the step asked for all of it
    ups = [d for _, _, d in trace if d.reason == "up"]
    assert len(ups) == 2  # the initial fit, then the step: one event, several instances at once


def test_big_step_grows_geometrically_while_saturated():
    trace = run(lambda t: 0.5 if t < 30 else 12.0, 120)
    sizes = [n for t, n, _ in trace if t >= 30]
    need = needed(12.0)
    k = next(i for i, n in enumerate(sizes) if n >= need)
    assert k <= math.ceil(math.log(need / sizes[0], 1 / POLICY.target_cpu)) + 1
    assert all(b >= a for a, b in zip(sizes, sizes[1:]))


def test_ramp_follows_up_without_lag_of_more_than_one_interval():
    trace = run(lambda t: 0.5 + t / 30.0, 300)
    for (t, _n, _d), (_t2, n2, _) in zip(trace, trace[1:]):
        # at most one interval behind, give or take the tolerance band
        assert n2 * CPU * POLICY.target_cpu * (1 + POLICY.tolerance) >= 0.5 + t / 30.0 - 1e-9, (t, n2)


def test_spike_scales_up_and_comes_down_only_after_the_window():
    trace = run(lambda t: 4.0 if 100 <= t < 110 else 0.5, 500)
    peak_t = max(trace, key=lambda r: r[1])[0]
    first_down = next(t for t, _, d in trace if d.reason == "down")
    assert first_down - peak_t >= POLICY.scale_down_window - 5
    assert trace[-1][1] == needed(0.5)


def test_square_wave_does_not_flap():
    period = 60.0  # high 30 s, low 30 s: shorter than the window
    trace = run(lambda t: 3.0 if (t % period) < period / 2 else 0.6, 900)
    events = [d for _, _, d in trace if d.changes]
    assert len(events) <= 3  # up to the peak, and stays there
    assert max(n for _, n, _ in trace) == needed(3.0)
    assert all(n >= needed(3.0) for t, n, _ in trace if t > 60)  # never caught short on the next high


def test_noisy_flat_load_causes_no_scaling():
    rng = random.Random(7)
    trace = run(lambda t: 1.8 * (1 + rng.uniform(-0.08, 0.08)), 900, n=needed(1.8))
    assert [d for _, _, d in trace if d.changes] == []


def test_scale_down_removes_a_bounded_share_per_step():
    state = State([(0.0, 2)])
    d, state = decide(POLICY, sample(200.0, 20, 0.6), state, 200.0)
    assert d.reason == "down" and d.desired == 10  # half of 20, not straight to 2
    d, state = decide(POLICY, sample(205.0, 10, 0.6), state, 205.0)
    assert d.desired == 5


def test_missing_metrics_mean_no_decision():
    partial = Sample(0.0, 4, 4, 0.1, 2.0, complete=False, missing=("node2",))
    d, state = decide(POLICY, partial, State(), 0.0)
    assert not d.changes and "node2" in d.reason
    assert state.recommendations == []


def test_starting_or_unhealthy_instances_are_not_idle_capacity():
    # 6 instances, only 2 ready and busy: no scale-down; the ready ones' load drives scale-up
    d, _ = decide(POLICY, sample(0.0, 6, 0.1, ready=2), State(), 0.0)
    assert d.desired == 6 and "starting" in d.reason
    d, _ = decide(POLICY, sample(0.0, 6, 10.0, ready=2), State(), 0.0)
    assert d.desired == 6  # ready 2 saturated -> ceil(2 * 1/0.6) = 4 < 6 already there: wait for them


def test_a_group_scaled_to_zero_stays_stopped():
    d, _ = decide(POLICY, sample(0.0, 0, 0.0, ready=0), State(), 0.0)
    assert d.desired == 0 and "scaled to 0" in d.reason


def test_bounds_and_a_restarted_controller_keeps_its_window():
    d, _ = decide(POLICY, sample(0.0, 1, 0.0), State(), 0.0)
    assert d.desired == POLICY.min
    d, _ = decide(POLICY, sample(0.0, 50, 0.0), State(), 0.0)
    assert d.desired == POLICY.max
    high = State.from_dict(State([(100.0, 8)], 8, 100.0).to_dict())  # as saved in KV
    d, _ = decide(POLICY, sample(150.0, 8, 0.3), high, 150.0)
    assert not d.changes and "deferred" in d.reason


def test_square_wave_longer_than_the_window_lengthens_it():
    """High 6 min / low 6 min with a 2 min window: the first low phase
    scales down, the next high undoes it, so the window doubles, and doubles
    again; from then on the group stays at the peak instead of flapping."""
    period = 720.0
    trace = run(lambda t: 3.0 if (t % period) < period / 2 else 0.6, 4 * 3600)
    downs = [t for t, _, d in trace if d.reason == "down"]
    ups = [t for t, _, d in trace if d.reason == "up" and t > 0]
    assert downs and ups
    bursts = [t for k, t in enumerate(downs) if k == 0 or t - downs[k - 1] > 60]
    assert [t for t in bursts if 2 * period < t < 3600] == []  # learnt after two cycles: stays at the peak
    # afterwards it probes a smaller size again about once an hour (two downs, relearnt): 8 of 20 cycles
    assert len(bursts) <= 2 * 4 < 4 * 3600 / period
    late = [d.reason for t, _, d in trace if 2 * period < t < 3600 and "deferred" in d.reason]
    assert late and all("oscillates" in r for r in late[-3:])


def test_window_factor_forgets_old_reversals():
    from bay_salt.control.autoscale_policy import flap_memory, window_factor

    w = POLICY.scale_down_window
    moves = [(0.0, -1), (w, 1), (3 * w, -1), (3.5 * w, 1)]
    assert window_factor(POLICY, moves, 4 * w) == 4
    assert window_factor(POLICY, moves, 0.5 * w + flap_memory(POLICY)) == 2  # the first reversal is forgotten
    assert window_factor(POLICY, [(0.0, -1), (5 * w, 1)], 6 * w) == 1  # undone only much later: not premature
