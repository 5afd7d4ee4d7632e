"""The formula's daemon configurations, run by the real daemons."""

import os
import signal
import stat
import urllib.request

from bay_salt.node.haproxy_runtime import RuntimeAPI
from tests.support.daemons import wait_for


def test_consul_agent_with_the_formula_config_elects_itself_and_serves_kv(consul_agent):
    assert consul_agent.status.leader()
    consul_agent.kv.put("bay/test/key", "value")
    _, item = consul_agent.kv.get("bay/test/key")
    assert item["Value"] == b"value"
    members = consul_agent.agent.members()
    assert [m["Name"] for m in members] == ["host"] and members[0]["Status"] == 1


def test_haproxy_runtime_api_answers_and_is_root_only(haproxy):
    api = RuntimeAPI(haproxy["socket"])
    info = api.info()
    assert info["Name"] == "HAProxy"
    assert int(info["Nbthread"]) >= 1
    mode = stat.S_IMODE(os.stat(haproxy["socket"]).st_mode)
    assert mode == 0o600, oct(mode)
    assert "bay-stats" in api.execute("show stat")


def test_haproxy_stats_page_and_hitless_reload(haproxy):
    url = f"http://127.0.0.1:{haproxy['stats_port']}/stats"
    assert urllib.request.urlopen(url, timeout=5).status == 200
    before = RuntimeAPI(haproxy["socket"]).info()["Pid"]
    os.kill(haproxy["proc"].pid, signal.SIGUSR2)  # master-worker reload
    wait_for(lambda: RuntimeAPI(haproxy["socket"]).info()["Pid"] != before, 15, "a new worker")
    assert urllib.request.urlopen(url, timeout=5).status == 200
