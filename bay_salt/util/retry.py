"""Bay's one retry policy (tenacity): how anything that waits for something
else (a daemon to answer, a minion to come back, Consul to elect a leader)
retries and when it gives up, with a message naming what it waited for.

    retry.call(fn, "the minion of node1 answers", timeout=90, interval=2, on=(DeployError,))
    retry.until(lambda: sock.exists(), "HAProxy's Runtime API socket", timeout=15)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")
log = logging.getLogger("bay.retry")


class GaveUp(TimeoutError):
    """What was waited for did not happen in time; the message says what, and the last error."""


def policy(what: str, timeout: float | None = None, interval: float = 1.0, max_interval: float | None = None,
           attempts: int | None = None, on: tuple[type[BaseException], ...] = (Exception,),
           sleep: Callable[[float], None] = time.sleep, jitter: float = 0.0) -> tenacity.Retrying:
    """Retry on the exceptions ``on`` every ``interval`` seconds (doubling up
    to ``max_interval`` if given, plus up to ``jitter`` seconds at random, so
    several machines racing for the same thing part) until ``timeout`` seconds or ``attempts``
    tries have passed; the last error is raised as it is."""
    stops = []
    if timeout is not None:
        stops.append(tenacity.stop_after_delay(timeout))
    if attempts is not None:
        stops.append(tenacity.stop_after_attempt(attempts))
    stop = tenacity.stop_any(*stops) if stops else tenacity.stop_never
    wait = (tenacity.wait_exponential(multiplier=interval, min=interval, max=max_interval) if max_interval
            else tenacity.wait_fixed(interval))
    if jitter:
        wait = wait + tenacity.wait_random(0, jitter)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        log.debug("%s: attempt %d failed (%s); retrying", what, state.attempt_number, err)

    return tenacity.Retrying(stop=stop, wait=wait, retry=tenacity.retry_if_exception_type(on), reraise=True,
                             before_sleep=before_sleep, sleep=sleep)


def call(fn: Callable[[], T], what: str, **kwargs) -> T:
    """``fn()`` under :func:`policy` (same arguments)."""
    return policy(what, **kwargs)(fn)


def at_boot(fn: Callable[[], T], what: str, interval: float = 5.0,
            on: tuple[type[BaseException], ...] = (Exception,), sleep: Callable[[float], None] = time.sleep,
            logger: logging.Logger | None = None) -> T:
    """``fn()`` until it works, however long: what a daemon needs (HDFS,
    the search store, Docker's bridge) may come up after it at boot. Each
    failure is a warning naming ``what`` and the error, every ``interval`` s."""
    def warn(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        (logger or log).warning("%s: not yet (%s); trying again in %g s", what, str(err)[:200], interval)

    return tenacity.Retrying(stop=tenacity.stop_never, wait=tenacity.wait_fixed(interval),
                             retry=tenacity.retry_if_exception_type(on), reraise=True, before_sleep=warn,
                             sleep=sleep)(fn)


def until(predicate: Callable[[], object], what: str, timeout: float, interval: float = 0.1,
          on: tuple[type[BaseException], ...] = (Exception,), sleep: Callable[[float], None] = time.sleep):
    """Poll ``predicate`` until it returns something true, and return that;
    errors of the types ``on`` count as "not yet". :class:`GaveUp` names
    ``what`` and the last error. An AssertionError ends the wait at once."""
    last: list[BaseException | None] = [None]

    def once():
        try:
            value = predicate()
        except AssertionError:
            raise
        except on as err:
            last[0] = err
            raise _NotYet from None
        if not value:
            raise _NotYet
        return value

    try:
        return policy(what, timeout=timeout, interval=interval, on=(_NotYet,), sleep=sleep)(once)
    except _NotYet:
        raise GaveUp(f"{what}: not reached within {timeout:g} s"
                     + (f" (last error: {last[0]})" if last[0] else "")) from None


class _NotYet(Exception):
    pass
