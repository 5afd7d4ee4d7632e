"""One real `bay up` cluster (3 nodes) for the whole session, shared by the e2e
tests and removed at the end with `bay down` (by its cluster label).

Tests that restart or remove part of the shared cluster carry
``@pytest.mark.disruptive(order=N)``: they run after all the others, in that
order, whatever their file names."""

import logging
import os

import pytest
import testinfra

from bay_salt.cluster.local import LocalCluster
from bay_salt.cluster.progress import Progress
from tests.e2e.helpers import restoring
from tests.e2e.prebuild import CLUSTER, NODES, STATUS_ENV, build, prebuilt

log = logging.getLogger(__name__)


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
        if keep and c.nodes():  # BAY_E2E_KEEP=1 reuses a kept cluster (for development)
            pass
        elif (why := prebuilt(c, os.environ.get(STATUS_ENV))) is None:
            log.info("e2e: using cluster %s, built in the background by scripts/test.sh", c.name)
        else:
            if os.environ.get(STATUS_ENV):
                log.warning("e2e: building the cluster here: %s", why)
            build(c)
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
    with restoring(cluster, "demo") as services:
        yield services
