"""The autoscaler's tests (tests/unit/test_autoscale_round.py) again, over a real
Consul agent instead of the in-memory store."""

import pytest

from bay_salt.kv.store import ConsulStore
from bay_salt.model import names
from tests.unit.test_autoscale_round import *  # noqa: F403 - the same tests, over the store below


@pytest.fixture
def store(consul_agent):
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
    yield ConsulStore(consul_agent)
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
