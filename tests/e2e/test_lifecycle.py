"""A service's whole life through the ``bay`` CLI run inside the masters, as
on a real site: no ``docker exec`` by the CLI and no local cluster state,
only Salt's client API on the master (the test reaches the masters the way
an operator's ssh would). ``life``, of the demo's image: deployed, planned,
scaled (an undeployed pillar edit stays undeployed), rolled to v2, rolled
back to v1, restarted, described, its events read, then removed, leaving no
container, KV record or HAProxy backend anywhere; an owner of nothing is
refused each command."""

import base64
import json

import pytest

from bay_salt.model import names
from tests.e2e.helpers import bay_containers, eventually, haproxy_servers, kv_get, wait_routed

LIFE = "life"
LIFE_WEB = 10160  # its own frontend (other e2e services hold 10080-10150)
VENV_BAY = "/opt/bay/venv/bin/bay"


def bay(cluster, *args, master=0, env=None) -> tuple[int, str]:
    """``bay ARGS`` on a master (index ``master``), as root there: (exit code, stdout+stderr)."""
    m = cluster.masters()[master]
    res = m.exec_run([VENV_BAY, *args], environment=env or {}, demux=True)
    out = (res.output[0] or b"").decode() + (res.output[1] or b"").decode()
    return res.exit_code, out


def bay_json(cluster, *args, master=0):
    code, out = bay(cluster, *args, "--json", master=master)
    assert code == 0, out
    return json.loads(out)


def images_running(cluster) -> set[str]:
    recs = kv_get(cluster, names.kv_instances_prefix(LIFE, "web"), recurse=True)
    return {json.loads(base64.b64decode(r["Value"]))["image"] for r in recs}


def events(cluster) -> list[dict]:
    code, lines = bay(cluster, "events", LIFE, "--json", "--limit", "200")
    assert code == 0, lines
    return [json.loads(line) for line in lines.splitlines()]


@pytest.fixture(scope="module")
def life(cluster):
    original = cluster.site.services_pillar()
    pillar = json.loads(json.dumps(original))
    demo = pillar["bay"]["services"]["demo"]
    pillar["bay"]["services"][LIFE] = {
        "image": demo["image"], "health": demo["health"], "owners": ["platform-team"], "max_surge": 1,
        "groups": {"web": {"instances": 2, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": LIFE_WEB}}}
    cluster.set_services(pillar)
    try:
        yield pillar
    finally:
        bay(cluster, "remove", LIFE)  # (a no-op once the test removed it)
        cluster.set_services(original)


def test_a_service_from_deploy_to_remove_through_the_cli_on_the_masters(cluster, life):
    v1 = life["bay"]["services"][LIFE]["image"]
    v2 = v1.replace(":1", ":2")
    kept = bay_json(cluster, "history", LIFE)["revisions"]  # (a cluster that ran this before has some)
    n = kept[-1]["revision"] if kept else 0
    seen = {e["key"] for e in events(cluster)}
    out = bay_json(cluster, "deploy", LIFE)
    assert out[f"{LIFE}.web"]["started"], out
    wait_routed(cluster, LIFE_WEB, "web", 2, service=LIFE)

    # a pillar edit nobody deployed: plan names it, scale does not roll it out
    life["bay"]["services"][LIFE]["image"] = v2
    cluster.set_services(life)
    plan = bay_json(cluster, "plan", LIFE, master=1)  # any master answers
    assert f"image: {v1} -> {v2}" in plan[f"{LIFE}.web"]["changes"], plan
    bay_json(cluster, "scale", f"{LIFE}.web", "3")
    wait_routed(cluster, LIFE_WEB, "web", 3, service=LIFE)
    assert images_running(cluster) == {v1}

    bay_json(cluster, "deploy", LIFE)  # now it rolls, a revision, at pillar's count
    wait_routed(cluster, LIFE_WEB, "web", 2, version="v2", service=LIFE)
    revs = bay_json(cluster, "history", LIFE)["revisions"]
    assert [(r["revision"], r["action"], r["by"]) for r in revs[-2:]] == [(n + 1, "deploy", "root"),
                                                                          (n + 2, "deploy", "root")]
    assert revs[1]["groups"]["web"]["image"] == v2

    bay_json(cluster, "rollback", LIFE, master=1)  # the previous spec and its image, today's count
    wait_routed(cluster, LIFE_WEB, "web", 2, version="v1", service=LIFE)
    assert images_running(cluster) == {v1}
    last = bay_json(cluster, "history", LIFE)["revisions"][-1]
    assert (last["revision"], last["action"], last["source"]) == (n + 3, "rollback", n + 1)

    before = {i["instance"] for i in bay_json(cluster, "describe", f"{LIFE}.web")["instances"]}
    bay_json(cluster, "restart", f"{LIFE}.web")
    d = bay_json(cluster, "describe", f"{LIFE}.web")
    after = {i["instance"] for i in d["instances"]}
    assert len(after) == 2 and not before & after and d["passing"] == 2 and d["revision"] == n + 3
    one = sorted(after)[0]
    assert [i["instance"] for i in bay_json(cluster, "describe", f"{LIFE}.web/{one}")["instances"]] == [one]
    code, text = bay(cluster, "services", LIFE)
    assert code == 0 and f"{LIFE}.web" in text

    actions = [e["data"].get("action") for e in events(cluster)
               if e["tag"] == names.TAG_SERVICE_CHANGED and e["key"] not in seen]
    assert actions == ["deploy", "scale", "deploy", "rollback", "restart"], actions

    # an owner of nothing, on either master (bay user-add makes the account on each): refused, one line, exit 1
    cluster.add_user("ella", "pw-ella-7")
    for k, args in enumerate((["describe", f"{LIFE}.web"], ["rollback", LIFE], ["remove", LIFE],
                              ["scale", f"{LIFE}.web", "1"])):
        code, text = bay(cluster, "--as", "ella", *args, env={"BAY_PASSWORD": "pw-ella-7"}, master=k % 2)
        assert code == 1 and "refused: ella may not operate service life" in text, (args, text)
        assert "Traceback" not in text

    out = bay_json(cluster, "remove", LIFE)
    assert out[f"{LIFE}.web"]["summary"] == f"{LIFE}.web: removed (-2)", out
    assert kv_get(cluster, names.kv_instances_prefix(LIFE), recurse=True) == []
    assert kv_get(cluster, names.kv_spec(LIFE, "web")) == [] and kv_get(cluster, names.kv_route(LIFE, "web")) == []
    backend = names.haproxy_backend(LIFE, "web")

    def gone_everywhere():
        return all(not any(n.startswith(f"bay-{LIFE}-") for n in bay_containers(cluster, node))
                   and backend not in haproxy_servers(cluster, node) for node in cluster.nodes())

    eventually(gone_everywhere, 30, f"no {LIFE} container or HAProxy backend on any node")
    code, text = bay(cluster, "scale", f"{LIFE}.web", "2")
    assert code == 1 and f"{LIFE}.web is not deployed" in text and "Traceback" not in text
    assert bay_json(cluster, "history", LIFE)["revisions"][-1]["action"] == "remove"
