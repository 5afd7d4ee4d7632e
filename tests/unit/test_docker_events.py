"""Docker events about Bay containers, as the node's watcher forwards them."""

from bay_salt.model import names
from bay_salt.node.docker_events import from_docker


def docker_event(action, **attrs):
    base = {names.LABEL_SERVICE: "demo", names.LABEL_GROUP: "web", names.LABEL_INSTANCE: "ab12", "name": "bay-demo-web-ab12"}
    return {"Type": "container", "Action": action, "Actor": {"Attributes": {**base, **attrs}}, "timeNano": 1}


def test_die_oom_unhealthy_start():
    tag, data = from_docker(docker_event("die", exitCode="137"), "node1")
    assert tag == names.TAG_CONTAINER_DIED and data["exit_code"] == 137 and data["node"] == "node1"
    assert data["instance"] == "ab12" and data["service"] == "demo" and data["group"] == "web"
    assert from_docker(docker_event("oom"), "n")[0] == names.TAG_CONTAINER_OOM
    assert from_docker(docker_event("health_status: unhealthy"), "n")[0] == names.TAG_CONTAINER_UNHEALTHY
    assert from_docker(docker_event("health_status: healthy"), "n") is None
    assert from_docker(docker_event("start"), "n")[0] == names.TAG_CONTAINER_STARTED


def test_non_bay_containers_and_other_types_are_ignored():
    ev = docker_event("die")
    del ev["Actor"]["Attributes"][names.LABEL_SERVICE]
    assert from_docker(ev, "n") is None
    assert from_docker({"Type": "network", "Action": "connect"}, "n") is None
