from bay_salt.kv.records import Instance, Route
from bay_salt.node import routing as lb

HTTP = {"http": "/healthz", "interval": 2.0, "timeout": 1.0, "rise": 2, "fall": 3}
ROUTE = Route("web", "api", 10080, HTTP)


def inst(n, health="passing", group="api"):
    return Instance("web", group, f"i{n}", "node1", f"127.0.0.{n}", 9000 + n, health)


def test_new_group_needs_reload_and_renders_slots():
    p = lb.plan([ROUTE], [inst(1), inst(2)], {})
    assert p.reload and p.reasons == ["web.api: new group"]
    slots = p.slots["web.api"]
    assert len(slots) == lb.MIN_SLOTS
    assert [(s.addr, s.port, s.maint) for s in slots[:2]] == [("127.0.0.1", 9001, False), ("127.0.0.2", 9002, False)]
    text = lb.render([ROUTE], p.slots)
    assert "frontend web.api\n    bind *:10080\n    mode http" in text
    assert "option httpchk GET /healthz" in text
    assert "server s1 127.0.0.1:9001\n" in text and "server s3 0.0.0.0:0 disabled\n" in text
    assert "default-server inter 2000ms fastinter 1000ms rise 2 fall 3 check" in text


def test_scale_within_slots_is_runtime_only():
    current = lb.plan([ROUTE], [inst(1), inst(2)], {}).slots
    p = lb.plan([ROUTE], [inst(1), inst(3)], current)  # 2 removed, 3 added
    assert not p.reload
    assert p.commands == [
        "set server web.api/s2 state maint",
        "set server web.api/s2 addr 0.0.0.0 port 0",
        "set server web.api/s2 addr 127.0.0.3 port 9003",
        "set server web.api/s2 state ready",
    ]
    assert lb.plan([ROUTE], [inst(1), inst(3)], p.slots).commands == []  # converged: nothing to do


def test_critical_instance_is_taken_out_at_once():
    current = lb.plan([ROUTE], [inst(1), inst(2)], {}).slots
    p = lb.plan([ROUTE], [inst(1), inst(2, health="critical")], current)
    assert p.commands[0] == "set server web.api/s2 state maint" and not p.reload


def test_slots_running_out_forces_a_reload_with_more_slots():
    current = lb.plan([ROUTE], [inst(1)], {}).slots
    many = [inst(n) for n in range(1, 12)]
    p = lb.plan([ROUTE], many, current)
    assert p.reload and "11 new" not in p.reasons[0] and "free slots" in p.reasons[0]
    assert len(p.slots["web.api"]) == lb.slot_count(11) == 32
    assert sum(not s.free for s in p.slots["web.api"]) == 11


def test_removed_group_forces_reload_but_base_backends_are_ignored():
    current = lb.plan([ROUTE], [inst(1)], {}).slots
    current["bay-stats"] = []
    p = lb.plan([], [], current)
    assert p.reload and p.reasons == ["web.api: group removed"]


def test_tcp_route_has_no_http_check():
    route = Route("db", "main", 15432, {"tcp": True, "interval": 1.0, "timeout": 0.5, "rise": 1, "fall": 2})
    text = lb.render([route], {})
    assert "mode tcp" in text and "httpchk" not in text and "retry-on" not in text


HEADER_FIELDS = ("be_id", "be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state",
                 "srv_uweight", "srv_iweight", "srv_time_since_last_change", "srv_check_status",
                 "srv_check_result", "srv_check_health", "srv_check_state", "srv_agent_state", "bk_f_forced_id",
                 "srv_f_forced_id", "srv_fqdn", "srv_port", "srvrecord", "srv_use_ssl", "srv_check_port",
                 "srv_check_addr", "srv_agent_addr", "srv_agent_port")


def test_parse_servers_state():
    # HAProxy's own header line, as it prints it
    header = "# " + " ".join(HEADER_FIELDS)
    text = "1\n" + header + """
3 web.api 1 s1 127.0.0.1 2 0 1 1 0 1 0 2 6 0 0 0 - 9001 - 0 0 - - 0
3 web.api 2 s2 0.0.0.0 0 4 1 1 1 17 2 0 6 0 0 0 - 0 - 0 0 - - 0
3 web.api 3 s3 127.0.0.3 2 4 1 1 0 1 0 2 6 0 0 0 - 9003 - 0 0 - - 0
3 web.api 4 s4 127.0.0.4 2 1 1 1 0 1 0 2 6 0 0 0 - 9004 - 0 0 - - 0
"""
    state = lb.parse_servers_state(text)
    assert [(s.name, s.addr, s.port, s.maint, s.free) for s in state["web.api"]] == [
        ("s1", "127.0.0.1", 9001, False, False), ("s2", "0.0.0.0", 0, True, True),
        # "disabled" in the config, then set ready at runtime: serving, not in maintenance
        ("s3", "127.0.0.3", 9003, False, False),
        ("s4", "127.0.0.4", 9004, True, False)]
