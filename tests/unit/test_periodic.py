"""The periodic loops' tick: whole multiples of the interval, never in the past."""

from bay_salt.util import periodic


def test_the_next_tick_is_the_next_whole_interval():
    assert periodic.next_tick(10, 1000.0) == 1010.0
    assert periodic.next_tick(10, 1003.7) == 1010.0
    assert periodic.next_tick(2.5, 7.4) == 7.5


def test_sleeping_to_the_next_tick_sleeps_what_is_left_and_returns_it():
    slept, now = [], [1003.5]
    assert periodic.sleep_to_next(10, clock=lambda: now[0], sleep=slept.append) == 1010.0
    assert slept == [6.5]
    now[0] = 1020.0 - 1e-9
    periodic.sleep_to_next(10, clock=lambda: now[0], sleep=slept.append)
    assert 0 <= slept[-1] < 1e-6
