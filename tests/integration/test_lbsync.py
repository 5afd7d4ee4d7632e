"""bay-lb-sync against a real Consul and a real HAProxy (master-worker), with
real HTTP backends on loopback addresses."""

import http.server
import json
import os
import signal
import threading
import time
import urllib.request

import pytest

from bay_salt.host.haproxy_runtime import RuntimeAPI
from bay_salt.kv import store as kv
from bay_salt.kv.records import Instance
from bay_salt.kv.store import ConsulStore
from bay_salt.model import names
from bay_salt.node import lbsync
from tests.support.daemons import free_port, wait_for

#: checks that tolerate a loaded machine: with a 0.2 s timeout and fall 1, a backend
#: answering late (the e2e cluster shares the 2 cores) flapped out of rotation
HEALTH = {"http": "/healthz", "interval": 0.5, "timeout": 2, "rise": 1, "fall": 3}


class Backend(http.server.ThreadingHTTPServer):
    daemon_threads = True


def start_backend(name):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = Backend(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def backends():
    servers = {f"b{n}": start_backend(f"b{n}") for n in range(1, 12)}
    yield {k: s.server_address[1] for k, s in servers.items()}
    for s in servers.values():
        s.shutdown()
        s.server_close()


@pytest.fixture
def sync(consul_agent, haproxy):
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)
    pid = haproxy["proc"].pid
    s = lbsync.LBSync(ConsulStore(consul_agent), RuntimeAPI(haproxy["socket"]), haproxy["config"], haproxy["services"],
                      lambda: os.kill(pid, signal.SIGUSR2))
    yield s
    consul_agent.kv.delete(f"{names.KV_PREFIX}/", recurse=True)


def route_ops(listen):
    rec = {"service": "web", "group": "api", "listen": listen, "health": HEALTH}
    return [kv.op_set(names.kv_route("web", "api"), json.dumps(rec))]


def inst(name, port, health="passing"):
    return Instance("web", "api", name, "node1", "127.0.0.1", port, health)


def seen(listen, tries=40):
    out = set()
    for _ in range(tries):
        try:
            out.add(urllib.request.urlopen(f"http://127.0.0.1:{listen}/", timeout=2).read().decode())
        except OSError:
            pass
    return out


def snapshot(client):
    return ConsulStore(client).routing()


def test_new_group_reload_then_scale_through_runtime_api(consul_agent, haproxy, sync, backends):
    listen = free_port()
    ConsulStore(consul_agent).apply(route_ops(listen) + kv.register_ops([inst("i1", backends["b1"]), inst("i2", backends["b2"])]))
    plan = sync.apply(*snapshot(consul_agent))
    assert plan.reload and sync.stats["reloads"] == 1
    wait_for(lambda: seen(listen) == {"b1", "b2"}, 15, "both backends serving")

    api = RuntimeAPI(haproxy["socket"])
    worker = api.info()["Pid"]
    ConsulStore(consul_agent).apply(kv.register_ops([inst("i3", backends["b3"])]) + kv.deregister_ops([inst("i1", 0)]))
    plan = sync.apply(*snapshot(consul_agent))
    assert not plan.reload and plan.commands
    assert api.info()["Pid"] == worker, "a runtime update must not reload"
    wait_for(lambda: seen(listen) == {"b2", "b3"}, 15, "routing follows KV")
    text = haproxy["services"].read_text()
    assert f"127.0.0.1:{backends['b3']}\n" in text and f"127.0.0.1:{backends['b1']}" not in text

    # marked critical: out of rotation at once, without waiting for health checks
    ConsulStore(consul_agent).apply(kv.register_ops([inst("i2", backends["b2"], "critical")]))
    sync.apply(*snapshot(consul_agent))
    assert seen(listen, 20) == {"b3"}


def test_slots_run_out_then_restart_from_rendered_config(consul_agent, haproxy, sync, backends):
    listen = free_port()
    ConsulStore(consul_agent).apply(route_ops(listen) + kv.register_ops([inst("i1", backends["b1"])]))
    sync.apply(*snapshot(consul_agent))
    many = [inst(f"i{n}", backends[f"b{n}"]) for n in range(1, 12)]
    ConsulStore(consul_agent).apply(kv.register_ops(many))
    plan = sync.apply(*snapshot(consul_agent))
    assert plan.reload and "free slots" in plan.reasons[0]
    wait_for(lambda: len(seen(listen, 60)) == 11, 40, "all 11 backends serving")

    # a cold restart of HAProxy from the files alone routes the same set
    haproxy["proc"].send_signal(signal.SIGTERM)
    haproxy["proc"].wait(10)
    from tests.support.daemons import Daemon
    proc = Daemon(["haproxy", "-W", "-db", "-f", str(haproxy["config"]), "-f", str(haproxy["services"])],
                  haproxy["log"].with_name("restart.log"))
    try:
        wait_for(lambda: len(seen(listen, 60)) == 11, 40, "the restarted HAProxy serving all 11")
        after = lbsync.lb.plan(*snapshot(consul_agent), sync.current())
        assert after.commands == [] and not after.reload, "runtime state and config agree after restart"
    finally:
        proc.stop()


def test_run_loop_follows_kv_changes(consul_agent, haproxy, sync, backends):
    listen = free_port()
    ConsulStore(consul_agent).apply(route_ops(listen) + kv.register_ops([inst("i1", backends["b1"])]))
    stop = threading.Event()
    t = threading.Thread(target=sync.run, args=(stop, "5s"), daemon=True)
    t.start()
    try:
        wait_for(lambda: seen(listen) == {"b1"}, 20, "initial routing")
        start = time.monotonic()
        ConsulStore(consul_agent).apply(kv.register_ops([inst("i4", backends["b4"])]))
        wait_for(lambda: "i4" in haproxy["services"].read_text() or f":{backends['b4']}\n" in haproxy["services"].read_text(),
                 10, "the sync to apply the change")
        assert time.monotonic() - start < 2
        wait_for(lambda: seen(listen) == {"b1", "b4"}, 10, "routing to the new instance")
    finally:
        stop.set()
        t.join(40)
