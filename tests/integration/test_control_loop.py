"""The control loop's tests (tests/unit/test_control_loop.py) again, over a
real Consul agent instead of the in-memory store: the same decisions, the
same transactions, Consul's own semantics. The Salt/Docker side is still the
recording backend (tests/support/fakes.py); the whole path with real
containers runs in tests/e2e/test_controller.py."""

import pytest

from bay_salt.kv.store import ConsulStore
from bay_salt.model import names
from tests.unit.test_control_loop import *  # noqa: F403 - the same tests, over the store below


@pytest.fixture
def store(consul_agent):
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
    yield ConsulStore(consul_agent)
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
