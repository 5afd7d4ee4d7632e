"""Services in a real `bay up` cluster: the demo service deployed by `bay up`,
routed by HAProxy on every node, scaled, rolled, and refused when invalid or
unschedulable (with nothing changed)."""

import copy
import time
import urllib.request

import pytest

from bay_salt.cluster.local import BayError

WEB, API = 10080, 10081


def ids_via(address, port, tries=24):
    seen = set()
    for _ in range(tries):
        try:
            body = urllib.request.urlopen(f"http://{address}:{port}/", timeout=2).read().decode().split()
            seen.add((body[1], body[2]))
        except OSError:
            pass
    return seen


def registered(cluster, group):
    st = cluster.runner("bay.status", "demo")[f"demo.{group}"]
    return {line.split("@")[0] for line in st["instances"]}


def wait_routed(cluster, port, group, expect_count, version="v1", timeout=30):
    """Every node's HAProxy routes exactly the registered instances."""
    deadline = time.monotonic() + timeout
    while True:
        want = registered(cluster, group)
        got = {n.id: ids_via(n.address, port) for n in cluster.nodes()}
        ok = len(want) == expect_count and all({i for i, _ in g} == want and {v for _, v in g} == {version}
                                              for g in got.values())
        if ok:
            return want
        if time.monotonic() > deadline:
            raise AssertionError(f"routing did not converge: registered {sorted(want)}, seen {got}")
        time.sleep(0.5)


def containers(cluster, group):
    out = set()
    for n in cluster.nodes():
        res = cluster.client.containers.get(n.container).exec_run(
            ["docker", "ps", "--filter", f"label=io.bay.group={group}", "--format", "{{.Label \"io.bay.instance\"}}"])
        out |= set(res.output.decode().split())
    return out


@pytest.fixture
def pillar(cluster):
    """The demo services pillar, restored (and redeployed) after the test."""
    original = cluster.services_pillar()
    yield copy.deepcopy(original)
    cluster.set_services(original)
    cluster.runner("bay.deploy", "demo")


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
