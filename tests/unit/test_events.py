from bay_salt import events, names


def docker_event(action, **attrs):
    base = {names.LABEL_SERVICE: "demo", names.LABEL_GROUP: "web", names.LABEL_INSTANCE: "ab12", "name": "bay-demo-web-ab12"}
    return {"Type": "container", "Action": action, "Actor": {"Attributes": {**base, **attrs}}, "timeNano": 1}


def test_die_oom_unhealthy_start():
    tag, data = events.from_docker(docker_event("die", exitCode="137"), "node1")
    assert tag == names.TAG_CONTAINER_DIED and data["exit_code"] == 137 and data["node"] == "node1"
    assert data["instance"] == "ab12" and data["service"] == "demo" and data["group"] == "web"
    assert events.from_docker(docker_event("oom"), "n")[0] == names.TAG_CONTAINER_OOM
    assert events.from_docker(docker_event("health_status: unhealthy"), "n")[0] == names.TAG_CONTAINER_UNHEALTHY
    assert events.from_docker(docker_event("health_status: healthy"), "n") is None
    assert events.from_docker(docker_event("start"), "n")[0] == names.TAG_CONTAINER_STARTED


def test_non_bay_containers_and_other_types_are_ignored():
    ev = docker_event("die")
    del ev["Actor"]["Attributes"][names.LABEL_SERVICE]
    assert events.from_docker(ev, "n") is None
    assert events.from_docker({"Type": "network", "Action": "connect"}, "n") is None


def test_trust_only_the_node_the_event_is_about():
    payload = {"node": "node1", "instance": "ab12"}
    assert events.trusted("node1", payload, "node1") == (True, "")
    ok, why = events.trusted("node2", payload, "node1")
    assert not ok and "node2 names node 'node1'" in why
    ok, why = events.trusted("node2", dict(payload, node="node2"), "node1")
    assert not ok and "event from node2 about an instance on node1" in why
    assert not events.trusted(None, payload, "node1")[0]
    assert not events.trusted("node1", payload, None)[0]


def test_backoff_grows_caps_resets_and_fails():
    assert events.backoff([], 100) == (0.0, False)
    assert events.backoff([99], 100) == (1.0, False)
    assert events.backoff([97, 98, 99], 100) == (4.0, False)
    assert events.backoff([90 + k for k in range(7)], 100, cap=10) == (10.0, False)
    assert events.backoff([90 + k for k in range(8)], 100) == (0.0, True)
    assert events.backoff([1, 2, 3], 1000, reset_after=300) == (0.0, False)  # a long run resets it


def test_node_changes_from_serf_health():
    checks = [{"Node": "node1", "CheckID": "serfHealth", "Status": "passing"},
              {"Node": "node2", "CheckID": "serfHealth", "Status": "critical"},
              {"Node": "node2", "CheckID": "service:x", "Status": "passing"}]
    now, lost, back = events.node_changes({"node1": "passing", "node2": "passing", "node3": "passing"}, checks)
    assert lost == ["node2", "node3"] and back == [] and now["node3"] == "critical"
    now, lost, back = events.node_changes(now, [{"Node": n, "CheckID": "serfHealth", "Status": "passing"}
                                                for n in ("node1", "node2", "node3")])
    assert lost == [] and back == ["node2", "node3"]
    assert events.node_changes(None, checks)[1:] == (["node2"], [])  # first look: critical nodes are lost
    # a node reaped from the list while down, then passing again: back
    assert events.node_changes({"node1": "passing"}, checks[:1] + [
        {"Node": "node9", "CheckID": "serfHealth", "Status": "passing"}])[2] == ["node9"]
