"""Real daemons started on this machine for tests and benchmarks (Consul,
HAProxy), each in its own process group, stopped by that id only."""

from __future__ import annotations

import json
from pathlib import Path

import consul

from bay_salt.cluster.processes import Daemon, free_port, start_minidfs
from bay_salt.util import retry

__all__ = ["Daemon", "free_port", "start_consul", "start_minidfs", "wait_for"]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; an AssertionError from it ends the wait at once."""
    try:
        retry.until(predicate, what, timeout=timeout, interval=0.1)
    except retry.GaveUp as err:
        raise AssertionError(str(err)) from None


def start_consul(workdir: Path, config: dict, dev: bool = False) -> tuple[Daemon, int]:
    """A Consul agent from ``config`` (an agent JSON config) on free loopback
    ports; returns the daemon and its HTTP port once it has a leader.
    ``dev``: ``consul agent -dev`` (in-memory Raft, no fsync)."""
    workdir.mkdir(parents=True, exist_ok=True)
    http = free_port()
    conf = dict(config) if dev else dict(config, data_dir=str(workdir / "data"))
    conf["ports"] = dict(conf.get("ports", {}), http=http, dns=free_port(), serf_lan=free_port(),
                         serf_wan=-1, server=free_port(), grpc=-1)
    (workdir / "agent.json").write_text(json.dumps(conf))
    cmd = ["consul", "agent", *(["-dev"] if dev else []), f"-config-file={workdir / 'agent.json'}"]
    daemon = Daemon(cmd, workdir / "consul.log")
    client = consul.Consul(host="127.0.0.1", port=http)
    tokens = (conf.get("acl") or {}).get("tokens") or {}
    management = tokens.get("initial_management") or tokens.get("master")

    def acl_ready() -> bool:
        # a new leader sets its initial management token up a moment after it is elected:
        # until then that token is "ACL not found" (seen in CI, the first test of the session)
        if not management:
            return True
        try:
            consul.Consul(host="127.0.0.1", port=http, token=management).kv.get("bay-acl-probe")
            return True
        except consul.ACLPermissionDenied:
            return False

    try:
        wait_for(lambda: daemon.alive() and client.status.leader() and acl_ready(), 60, "a Consul leader")
    except BaseException:
        daemon.stop()
        raise
    return daemon, http
