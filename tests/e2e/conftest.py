"""One real `bay up` cluster (3 nodes) for the whole session, shared by the e2e
tests and removed at the end with `bay down` (by its cluster label)."""

import os

import pytest
import testinfra

from bay_salt.cluster.local import LocalCluster
from bay_salt.cluster.progress import Progress

CLUSTER = os.environ.get("BAY_E2E_CLUSTER", "e2e")
NODES = 3


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
