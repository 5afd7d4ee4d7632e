"""A service container as the node starts it, on the host's real Docker: the
service's process is not PID 1 (Docker's init is), so a stop reaches it even
when it would ignore SIGTERM as PID 1 (a shell script, busybox httpd); it is
hardened by default, and a spec gives back only what Bay drops."""

import uuid

import docker
import pytest

from bay_salt.cluster.demo import BUSYBOX_IMAGE, ensure_busybox
from bay_salt.cluster.progress import Progress
from bay_salt.model import names
from bay_salt.model.services import parse
from bay_salt.node import containers


@pytest.fixture(scope="module")
def dc():
    c = docker.from_env(timeout=60)
    ensure_busybox(c, Progress())
    return c


def test_a_stop_reaches_a_service_that_ignores_sigterm_as_pid_1(dc):
    service = f"init{uuid.uuid4().hex[:6]}"
    group = parse({service: {"image": BUSYBOX_IMAGE, "owners": ["t"], "command": ["sh", "-c", "sleep 600"],
                             "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 8000,
                                                "listen": 10999}}}})[service].groups()["web"]
    made = containers.run(dc, group, "i1")
    c = dc.containers.get(made["container"])
    try:
        assert c.attrs["HostConfig"]["Init"] is True
        # hardened by default: no raw sockets, no new privileges, a PID limit
        host = c.attrs["HostConfig"]
        assert set(host["CapDrop"]) >= {"NET_RAW", "MKNOD"} and "no-new-privileges:true" in host["SecurityOpt"]
        assert host["PidsLimit"] == containers.HARDENING["pids_limit"]
        res = c.exec_run(["busybox", "ping", "-c", "1", "-W", "1", "127.0.0.1"])  # pings without NET_RAW
        assert res.exit_code != 0 and b"permission denied" in res.output, res
        c.stop(timeout=30)
        c.reload()
        # 143: the shell died of the SIGTERM passed on by init; 137 would be the kill after the timeout
        assert c.attrs["State"]["ExitCode"] == 143, c.attrs["State"]
    finally:
        c.remove(force=True)


def test_a_spec_gives_back_raw_sockets_and_makes_its_root_filesystem_read_only(dc):
    service = f"sec{uuid.uuid4().hex[:6]}"
    group = parse({service: {"image": BUSYBOX_IMAGE, "owners": ["t"], "command": ["sh", "-c", "sleep 600"],
                             "security": {"cap_add": ["NET_RAW"], "read_only": True, "pids_limit": 64},
                             "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 8000,
                                                "listen": 10998}}}})[service].groups()["web"]
    made = containers.run(dc, group, "i1")
    c = dc.containers.get(made["container"])
    try:
        host = c.attrs["HostConfig"]
        assert host["CapDrop"] == ["MKNOD"] and host["PidsLimit"] == 64 and host["ReadonlyRootfs"] is True
        assert "no-new-privileges:true" in host["SecurityOpt"]  # never given back
        assert c.exec_run(["busybox", "ping", "-c", "1", "-W", "1", "127.0.0.1"]).exit_code == 0
        res = c.exec_run(["sh", "-c", "echo x > /etc/bay-test"])
        assert res.exit_code != 0 and b"Read-only file system" in res.output, res
        assert c.exec_run(["sh", "-c", "echo x > /tmp/scratch && echo x > /run/scratch"]).exit_code == 0
    finally:
        c.remove(force=True)


def test_a_node_starts_a_groups_instances_at_once_and_leaves_none_when_one_cannot_start(dc):
    service = f"par{uuid.uuid4().hex[:6]}"
    raw = {"image": BUSYBOX_IMAGE, "owners": ["t"], "command": ["busybox", "httpd", "-f", "-p", "8000"],
           "health": {"tcp": True, "interval": "200ms", "timeout": "200ms", "start_period": "20s"},
           "groups": {"web": {"instances": 12, "cpu": 0.01, "memory": 16, "port": 8000, "listen": 10997}}}
    group = parse({service: raw})[service].groups()["web"]
    ids = [f"i{k:02d}" for k in range(12)]
    try:
        out = containers.start_many(group, ids, "127.0.0.1")
        assert [o["instance"] for o in out] == ids and all(o["healthy"] and not o.get("error") for o in out), out
        assert len(dc.containers.list(filters={"label": f"{names.LABEL_SERVICE}={service}"})) == 12
        # an image nobody has: every entry says so, and nothing of the group is left started
        bad = parse({service: {**raw, "image": "127.0.0.1:1/nothing/here:1"}})[service].groups()["web"]
        out = containers.start_many(bad, ["x1", "x2"], "127.0.0.1")
        assert all(o["error"] and not o["healthy"] for o in out), out
        assert {c.labels[names.LABEL_INSTANCE] for c in dc.containers.list(
            all=True, filters={"label": f"{names.LABEL_SERVICE}={service}"})} == set(ids)
    finally:
        containers.stop_many([names.service_container(service, "web", i) for i in ids], timeout=1)


def test_the_nodes_list_of_its_containers_is_one_call_and_says_what_inspecting_each_says(dc):
    """bay_docker.instances (what the controller compares with KV every pass) reads Docker's list
    once instead of inspecting every container; both say the same of a running and a stopped one."""
    service = f"lst{uuid.uuid4().hex[:6]}"
    group = parse({service: {"image": BUSYBOX_IMAGE, "owners": ["t"], "command": ["sh", "-c", "sleep 600"],
                             "groups": {"web": {"instances": 2, "cpu": 0.1, "memory": 32, "port": 8000,
                                                "listen": 10997}}}})[service].groups()["web"]
    made = [containers.run(dc, group, i) for i in ("i1", "i2")]
    try:
        dc.containers.get(made[1]["container"]).stop(timeout=1)
        listed = {r["container"]: r for r in containers.list_instances(dc) if r["service"] == service}
        for m in made:
            inspected = containers.describe(dc.containers.get(m["container"]))
            got = listed[m["container"]]
            assert abs(got.pop("age") - inspected.pop("age")) < 2
            assert got == inspected
        assert listed[made[0]["container"]]["host_port"] and listed[made[1]["container"]]["host_port"] is None
    finally:
        for m in made:
            dc.containers.get(m["container"]).remove(force=True)
