"""Services in a real `bay up` cluster: the demo service deployed by `bay up`,
routed by HAProxy on every node; a small service of the demo's image (``shop``:
web 2, api 1) scaled, rolled, and refused when invalid or unschedulable (with
nothing changed). The small service keeps each rolling deploy to two
containers; the demo, which every other e2e test relies on, is left as it is."""

import copy

import pytest

from bay_salt.cluster.local import BayError
from tests.e2e.helpers import API, WEB, containers, demo_image_service, registered, restoring, wait_routed

SHOP = "shop"
SHOP_WEB, SHOP_API = 10140, 10141  # its own frontends (other e2e services hold 10080-10130)


@pytest.fixture(scope="module")
def shop(cluster):
    body = {"health": "demo", "liveness": "demo", "owners": ["platform-team"], "max_surge": 1,
            "groups": {"web": {"instances": 2, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": SHOP_WEB},
                       "api": {"instances": 1, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": SHOP_API}}}
    with demo_image_service(cluster, SHOP, body, timeout=120):
        yield SHOP


@pytest.fixture
def spec(cluster, shop):
    """The services pillar to change; restored, and shop redeployed from it, after the test."""
    with restoring(cluster, shop) as services:
        yield services


def shop_containers(cluster, group):
    return containers(cluster, group, service=SHOP)


def test_demo_is_routed_on_every_node(cluster):
    web = wait_routed(cluster, WEB, "web", 3)
    assert containers(cluster, "web") == web
    wait_routed(cluster, API, "api", 2)


def test_deploy_unchanged_spec_changes_nothing(cluster):
    before = containers(cluster, "web") | containers(cluster, "api")
    out = cluster.runner("bay.deploy", "demo")
    assert all(r["started"] == [] and r["stopped"] == [] for r in out.values()), out
    assert containers(cluster, "web") | containers(cluster, "api") == before


def test_scale_2_4_1_routing_follows(cluster, spec):
    cluster.runner("bay.scale", f"{SHOP}.web", "4")
    four = wait_routed(cluster, SHOP_WEB, "web", 4, service=SHOP)
    assert shop_containers(cluster, "web") == four
    cluster.runner("bay.scale", f"{SHOP}.web", "1")
    one = wait_routed(cluster, SHOP_WEB, "web", 1, service=SHOP)
    assert one < four and shop_containers(cluster, "web") == one


def test_roll_to_a_new_image(cluster, spec):
    old = registered(cluster, "web", SHOP)
    shop = spec["bay"]["services"][SHOP]
    shop["groups"]["web"]["image"] = shop["image"].replace(":1", ":2")
    cluster.set_services(spec)
    out = cluster.runner("bay.deploy", SHOP)
    assert len(out[f"{SHOP}.web"]["started"]) == 2 and sorted(out[f"{SHOP}.web"]["stopped"]) == sorted(old)
    assert out[f"{SHOP}.api"]["started"] == []  # the other group is untouched
    new = wait_routed(cluster, SHOP_WEB, "web", 2, version="v2", service=SHOP)
    assert not new & old and shop_containers(cluster, "web") == new


def test_failing_new_version_stops_the_roll_old_keeps_serving(cluster, spec):
    old = registered(cluster, "web", SHOP)
    web = spec["bay"]["services"][SHOP]["groups"]["web"]
    web["command"] = ["/bin/sh", "-c", "sleep 600"]  # never answers its health check
    web["health"] = {"http": "/healthz", "interval": "1s", "timeout": "500ms", "start_period": "4s"}
    cluster.set_services(spec)
    with pytest.raises(BayError, match="did not pass the health check; roll stopped, the old instances keep serving"):
        cluster.runner("bay.deploy", SHOP)
    assert registered(cluster, "web", SHOP) == old
    wait_routed(cluster, SHOP_WEB, "web", 2, service=SHOP)
    assert shop_containers(cluster, "web") == old  # the failed new container was removed


def test_invalid_spec_is_refused_and_changes_nothing(cluster, spec):
    before = shop_containers(cluster, "web") | shop_containers(cluster, "api")
    spec["bay"]["services"][SHOP]["groups"]["api"]["memory"] = "lots"
    spec["bay"]["services"][SHOP]["groups"]["web"]["instances"] = 5
    cluster.set_services(spec)
    with pytest.raises(BayError, match=rf"invalid service spec: {SHOP}\.api: memory: 'lots' is not a memory size"):
        cluster.runner("bay.deploy", SHOP)
    assert shop_containers(cluster, "web") | shop_containers(cluster, "api") == before


def test_unschedulable_group_says_what_is_missing(cluster, spec):
    before = shop_containers(cluster, "web")
    with pytest.raises(BayError, match=rf"{SHOP}\.web: cannot place \d+ of \d+ instances .* lacks"):
        cluster.runner("bay.scale", f"{SHOP}.web", "500")
    assert shop_containers(cluster, "web") == before


def orchestrate(cluster, *extra):
    out = cluster.runner("state.orchestrate", "orch.deploy", f'pillar={{"service": "{SHOP}"}}', *extra)
    (state,) = out["data"]["master"].values()
    return state


def test_orchestrate_bay_service_running_honours_test_mode(cluster, spec):
    before = shop_containers(cluster, "web")
    changed = copy.deepcopy(spec)
    changed["bay"]["services"][SHOP]["groups"]["web"]["instances"] = 3
    cluster.set_services(changed)
    dry = orchestrate(cluster, "test=True")
    assert dry["result"] is None and dry["changes"]["planned"][f"{SHOP}.web"]["start"] == 1, dry
    assert shop_containers(cluster, "web") == before
    real = orchestrate(cluster)
    assert real["result"] is True and f"{SHOP}.web: scaled to 3 (+1 -0)" in real["comment"], real
    wait_routed(cluster, SHOP_WEB, "web", 3, service=SHOP)
    again = orchestrate(cluster)
    assert again["result"] is True and again["changes"] == {}
