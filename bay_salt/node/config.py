"""Configuration files of a Bay node's daemons, as data, from validated settings.

The SLS files write what these functions return; nothing here touches the
system, so all of it is unit-tested without Salt.
"""

from __future__ import annotations

from bay_salt.node.templating import render


def salt_unit(what: str, venv: str) -> str:
    """systemd unit for ``salt-minion``/``salt-master`` run from ``venv`` (the
    node image and the Ansible bootstrap install the same one)."""
    return render("salt-daemon.service.j2", what=what, venv=venv)


def docker_daemon_config(cfg: dict) -> dict:
    """``/etc/docker/daemon.json``: json-file logs rotated by size and count,
    live-restore, Bay's registry as insecure registry and mirror."""
    d = cfg["docker"]
    conf: dict = {
        "data-root": d["data_root"],
        "log-driver": d["log_driver"],
        "log-opts": {"max-size": d["log_max_size"], "max-file": str(d["log_max_file"])},
        "live-restore": d["live_restore"],
    }
    if d["registry"]:
        conf["insecure-registries"] = [d["registry"]]
        conf["registry-mirrors"] = [f"http://{d['registry']}"]
    return conf


def consul_config(cfg: dict) -> dict:
    """The agent's JSON config: server on the nodes the pillar lists (with
    bootstrap_expect), client elsewhere; every agent retry-joins the servers."""
    c, node = cfg["consul"], cfg["node"]
    if not node["address"]:
        raise ValueError(f"node {node['id']}: no address in bay:nodes and none found in grains")
    conf: dict = {
        "datacenter": c["datacenter"],
        "node_name": node["id"],
        "data_dir": c["data_dir"],
        "bind_addr": node["address"],
        "advertise_addr": node["address"],
        "client_addr": " ".join(dict.fromkeys(["127.0.0.1", node["address"]])),
        "ports": {"http": c["http_port"], "dns": c["dns_port"]},
        "retry_join": [a for a in c["server_addresses"] if a != node["address"]] or c["server_addresses"],
        "server": node["consul_server"],
        "ui": c["ui"],
        "leave_on_terminate": not node["consul_server"],
        "disable_update_check": True,
    }
    if node["consul_server"]:
        conf["bootstrap_expect"] = len(c["servers"])
        conf["performance"] = {"raft_multiplier": c["raft_multiplier"]}
        conf["autopilot"] = {"cleanup_dead_servers": c["cleanup_dead_servers"]}
    if c["encrypt"]:
        conf["encrypt"] = c["encrypt"]
    return conf


def haproxy_config(cfg: dict) -> str:
    """The base ``haproxy.cfg``: master-worker, an admin Runtime API socket
    readable by root only, and a stats page."""
    return render("haproxy.cfg.j2", haproxy=cfg["haproxy"], node=cfg.get("node", {}))


def cadvisor_environment(cfg: dict) -> str:
    """``/etc/default/cadvisor`` for Debian's cadvisor unit."""
    c = cfg["cadvisor"]
    return (
        "# Managed by Salt (bay.cadvisor)\n"
        'CADVISOR_DOCKER_ENDPOINT="unix:///var/run/docker.sock"\n'
        f'CADVISOR_PORT="{c["port"]}"\n'
        'CADVISOR_STORAGE_DRIVER=""\n'
        # Debian's unit passes every one of these as a flag: none may be empty
        'CADVISOR_STORAGE_DRIVER_HOST="localhost:8086"\n'
        'CADVISOR_STORAGE_DRIVER_USER="root"\n'
        'CADVISOR_STORAGE_DRIVER_PASSWORD="root"\n'
        'CADVISOR_STORAGE_DRIVER_SECURE="false"\n'
        'CADVISOR_LOG_TO_STDERR="true"\n'
        # the unit passes ${DAEMON_ARGS} as ONE argument (systemd does not split ${...})
        f'DAEMON_ARGS="--housekeeping_interval={c["housekeeping_interval"]}"\n'
    )


def mesos_agent_files(cfg: dict) -> dict[str, str]:
    """Mesos agent configuration in the Mesosphere package layout:
    ``/etc/mesos/zk`` and one file per flag under ``/etc/mesos-slave``."""
    m = cfg["mesos"]
    files = {
        "/etc/mesos/zk": m["zk"] + "\n",
        "/etc/mesos-slave/containerizers": ",".join(m["containerizers"]) + "\n",
        "/etc/mesos-slave/work_dir": m["work_dir"] + "\n",
    }
    node = cfg.get("node") or {}
    if node.get("address"):
        files["/etc/mesos-slave/ip"] = node["address"] + "\n"
        files["/etc/mesos-slave/hostname"] = node["id"] + "\n"
    if m["attributes"]:
        files["/etc/mesos-slave/attributes"] = ";".join(f"{k}:{v}" for k, v in sorted(m["attributes"].items())) + "\n"
    if m["resources"]:
        files["/etc/mesos-slave/resources"] = ";".join(f"{k}:{v}" for k, v in sorted(m["resources"].items())) + "\n"
    return files


def haproxy_environment(cfg: dict) -> str:
    """``/etc/default/haproxy``: Debian's unit appends ``$EXTRAOPTS`` to start,
    reload and its ``-c`` check, so the services file is loaded after the base."""
    h = cfg["haproxy"]
    return (
        "# Managed by Salt (bay.haproxy)\n"
        f'EXTRAOPTS="-S /run/haproxy-master.sock -f {h["services_config"]}"\n'
    )


def lbsync_unit(cfg: dict) -> str:
    """systemd unit of bay-lb-sync, run from the minion's venv."""
    h = cfg["haproxy"]
    return render("bay-lb-sync.service.j2", venv=cfg["python"]["bin_env"], consul_port=cfg["consul"]["http_port"],
                  socket=h["socket"], base=h["config"], services=h["services_config"])


def registry_storage_dir(cfg: dict) -> str:
    """The registry's directory on this node for ``file://`` storage; "" for HDFS."""
    storage = cfg["registry"]["storage"]
    return storage[len("file://"):] if storage.startswith("file://") else ""


def registry_unit(cfg: dict) -> str:
    """systemd unit of Bay's registry on a node with role registry (run from the
    minion's venv; registers itself in KV once it answers)."""
    r = dict(cfg["registry"], storage_kind=cfg["registry"]["storage"].split(":")[0])
    # a cache only for remote storage: a file:// registry already reads its own disk
    if r["storage_kind"] != "hdfs":
        r["cache_bytes"] = 0
    return render("bay-registry.service.j2", registry=r, venv=cfg["python"]["bin_env"], node=cfg["node"]["id"],
                  address=cfg["node"]["address"], consul_port=cfg["consul"]["http_port"])


def events_unit(cfg: dict) -> str:
    """systemd unit of bay-events (the Docker event watcher), run from the minion's venv."""
    return render("bay-events.service.j2", venv=cfg["python"]["bin_env"], consul_port=cfg["consul"]["http_port"])
