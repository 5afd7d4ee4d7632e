"""One real `bay up` cluster (3 nodes) for the whole session, shared by the e2e
tests and removed at the end with `bay down` (by its cluster label).

Tests that restart or remove part of the shared cluster carry
``@pytest.mark.disruptive(order=N)``: they run after all the others, in that
order, whatever their file names."""

import copy
import os

import pytest
import testinfra

from bay_salt.cluster.local import LocalCluster
from bay_salt.cluster.progress import Progress

CLUSTER = os.environ.get("BAY_E2E_CLUSTER", "e2e")
NODES = 3


def pytest_collection_modifyitems(config, items):
    """Disruptive e2e tests last, by their declared order (a stable sort: the rest keep theirs)."""
    def key(item):
        mark = item.get_closest_marker("disruptive")
        return (0, 0) if mark is None else (1, mark.kwargs.get("order", 0))
    items.sort(key=key)


@pytest.fixture(scope="session")
def cluster():
    c = LocalCluster(CLUSTER, progress=Progress())
    keep = bool(os.environ.get("BAY_E2E_KEEP"))
    try:
        if not (keep and c.nodes()):  # BAY_E2E_KEEP=1 reuses a kept cluster (for development)
            c.down()  # leftovers of an interrupted run of this same cluster
            c.up(NODES)
        yield c
    finally:
        if not keep:
            c.down()


@pytest.fixture(scope="session")
def nodes(cluster):
    return cluster.nodes()


@pytest.fixture(scope="session", params=range(1, NODES + 1), ids=lambda i: f"node{i}")
def node(request, cluster):
    """A testinfra host for each node container (docker:// backend)."""
    info = next(n for n in cluster.nodes() if n.id == f"node{request.param}")
    host = testinfra.get_host(f"docker://{info.container}")
    host.info = info
    return host


@pytest.fixture
def pillar(cluster):
    """The demo services pillar, restored (and redeployed) after the test."""
    original = cluster.services_pillar()
    yield copy.deepcopy(original)
    cluster.set_services(original)
    cluster.runner("bay.deploy", "demo")
