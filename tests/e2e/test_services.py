"""Services in a real `bay up` cluster: the demo service deployed by `bay up`,
routed by HAProxy on every node, scaled, rolled, and refused when invalid or
unschedulable (with nothing changed)."""

import copy

import pytest

from bay_salt.cluster.local import BayError
from tests.e2e.helpers import API, WEB, containers, registered, wait_routed


def test_demo_is_routed_on_every_node(cluster):
    web = wait_routed(cluster, WEB, "web", 3)
    assert containers(cluster, "web") == web
    wait_routed(cluster, API, "api", 2)


def test_deploy_unchanged_spec_changes_nothing(cluster):
    before = containers(cluster, "web") | containers(cluster, "api")
    out = cluster.runner("bay.deploy", "demo")
    assert all(r["started"] == [] and r["stopped"] == [] for r in out.values()), out
    assert containers(cluster, "web") | containers(cluster, "api") == before


def test_scale_3_5_2_routing_follows(cluster, pillar):
    cluster.runner("bay.scale", "demo.web", "5")
    five = wait_routed(cluster, WEB, "web", 5)
    assert containers(cluster, "web") == five
    cluster.runner("bay.scale", "demo.web", "2")
    two = wait_routed(cluster, WEB, "web", 2)
    assert two < five and containers(cluster, "web") == two


def test_roll_to_a_new_image(cluster, pillar):
    old = registered(cluster, "web")
    spec = copy.deepcopy(pillar)
    spec["bay"]["services"]["demo"]["groups"]["web"]["image"] = spec["bay"]["services"]["demo"]["image"].replace(":1", ":2")
    cluster.set_services(spec)
    out = cluster.runner("bay.deploy", "demo")
    assert len(out["demo.web"]["started"]) == 3 and sorted(out["demo.web"]["stopped"]) == sorted(old)
    assert out["demo.api"]["started"] == []  # the other group is untouched
    new = wait_routed(cluster, WEB, "web", 3, version="v2")
    assert not new & old and containers(cluster, "web") == new


def test_failing_new_version_stops_the_roll_old_keeps_serving(cluster, pillar):
    old = registered(cluster, "web")
    spec = copy.deepcopy(pillar)
    web = spec["bay"]["services"]["demo"]["groups"]["web"]
    web["command"] = ["/bin/sh", "-c", "sleep 600"]  # never answers its health check
    web["health"] = {"http": "/healthz", "interval": "1s", "timeout": "500ms", "start_period": "4s"}
    cluster.set_services(spec)
    with pytest.raises(BayError, match="did not pass the health check; roll stopped, the old instances keep serving"):
        cluster.runner("bay.deploy", "demo")
    assert registered(cluster, "web") == old
    wait_routed(cluster, WEB, "web", 3)
    assert containers(cluster, "web") == old  # the failed new container was removed


def test_invalid_spec_is_refused_and_changes_nothing(cluster, pillar):
    before = containers(cluster, "web") | containers(cluster, "api")
    spec = copy.deepcopy(pillar)
    spec["bay"]["services"]["demo"]["groups"]["api"]["memory"] = "lots"
    spec["bay"]["services"]["demo"]["groups"]["web"]["instances"] = 5
    cluster.set_services(spec)
    with pytest.raises(BayError, match=r"invalid service spec: demo\.api: memory: 'lots' is not a memory size"):
        cluster.runner("bay.deploy", "demo")
    assert containers(cluster, "web") | containers(cluster, "api") == before


def test_unschedulable_group_says_what_is_missing(cluster, pillar):
    before = containers(cluster, "web")
    with pytest.raises(BayError, match=r"demo\.web: cannot place \d+ of \d+ instances .* lacks"):
        cluster.runner("bay.scale", "demo.web", "500")
    assert containers(cluster, "web") == before


def orchestrate(cluster, *extra):
    out = cluster.runner("state.orchestrate", "orch.deploy", 'pillar={"service": "demo"}', *extra)
    (state,) = out["data"]["master"].values()
    return state


def test_orchestrate_bay_service_running_honours_test_mode(cluster, pillar):
    before = containers(cluster, "web")
    spec = copy.deepcopy(pillar)
    spec["bay"]["services"]["demo"]["groups"]["web"]["instances"] = 4
    cluster.set_services(spec)
    dry = orchestrate(cluster, "test=True")
    assert dry["result"] is None and dry["changes"]["planned"]["demo.web"]["start"] == 1, dry
    assert containers(cluster, "web") == before
    real = orchestrate(cluster)
    assert real["result"] is True and "demo.web: scaled to 4 (+1 -0)" in real["comment"], real
    wait_routed(cluster, WEB, "web", 4)
    again = orchestrate(cluster)
    assert again["result"] is True and again["changes"] == {}
