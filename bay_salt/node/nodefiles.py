"""Configuration files of a Bay node's daemons, as data, from validated settings.

The SLS files write what these functions return; nothing here touches the
system, so all of it is unit-tested without Salt.
"""

from __future__ import annotations

import base64

from bay_salt.model import names
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
    if d["registry"] and not cfg["registry"]["tls"]["ca_file"]:  # plain HTTP: Docker must be told
        conf["insecure-registries"] = [d["registry"]]
        conf["registry-mirrors"] = [f"http://{d['registry']}"]
    return conf


def docker_client_config(cfg: dict) -> dict:
    """``/root/.docker/config.json``: the node's login to Bay's registry (its
    pulls, the docker SDK's included, use it; a secret: root only)."""
    a, registry = cfg["registry"]["auth"], cfg["docker"]["registry"]
    if a["mode"] == "none" or not registry:
        return {"auths": {}}
    login = base64.b64encode(f"{a['node_user']}:{a['node_password']}".encode()).decode()
    return {"auths": {registry: {"auth": login}}}


def registry_auth_file(cfg: dict) -> dict:
    """The registry's access policy (:class:`bay_salt.registry.auth.Policy`):
    who may do what, from the services pillar, the admins and teams."""
    from bay_salt.registry import auth

    a = cfg["registry"]["auth"]
    grants = auth.grants_for(cfg.get("services") or {}, cfg["docker"]["registry"], cfg["admins"], a["node_user"],
                             cfg["teams"])
    return {"mode": a["mode"], "secret": a["secret"], "token_ttl": a["token_ttl"],
            "anonymous_pull": a["anonymous_pull"], "users": a["users"], "grants": grants}


def consul_config(cfg: dict) -> dict:
    """The agent's JSON config: server on the nodes the pillar lists (with
    bootstrap_expect), client elsewhere; every agent retry-joins the servers.
    The HTTP API listens on loopback; a server's API is also on the node's
    address, for the master (with ACLs on: a token for anything): HTTPS on
    ``https_port`` with a CA given, else HTTP. ACLs deny by default; with a
    CA given, RPC is TLS both ways."""
    c, node = cfg["consul"], cfg["node"]
    if not node["address"]:
        raise ValueError(f"node {node['id']}: no address in bay:nodes and none found in grains")
    tls = c["tls"]
    # a server's API on its address, for the master: HTTPS with a CA (the token never in clear), else HTTP
    public_http = node["consul_server"] and not tls["ca_file"]
    conf: dict = {
        "datacenter": c["datacenter"],
        "node_name": node["id"],
        "data_dir": c["data_dir"],
        "bind_addr": node["address"],
        "advertise_addr": node["address"],
        "client_addr": " ".join(dict.fromkeys(["127.0.0.1"] + ([node["address"]] if public_http else []))),
        # no WAN gossip: Bay runs one datacenter, so a server listens on 8300 and 8301 only
        "ports": {"http": c["http_port"], "dns": c["dns_port"], "serf_wan": -1},
        # DNS answers on loopback only, on servers too (their HTTP API is on the address for the master)
        "addresses": {"dns": "127.0.0.1"},
        "retry_join": [a for a in c["server_addresses"] if a != node["address"]] or c["server_addresses"],
        "server": node["consul_server"],
        "ui": c["ui"],
        "leave_on_terminate": not node["consul_server"],
        "disable_update_check": True,
        # the same on every agent: a silent node is declared failed in seconds (ConsulGossip)
        "gossip_lan": dict(c["gossip_lan"]),
    }
    if node["consul_server"]:
        conf["bootstrap_expect"] = len(c["servers"])
        conf["performance"] = {"raft_multiplier": c["raft_multiplier"]}
        conf["autopilot"] = {"cleanup_dead_servers": c["cleanup_dead_servers"]}
    if c["encrypt"]:
        conf["encrypt"] = c["encrypt"]
    acl = c["acl"]
    if acl["enabled"]:
        # its own token (it may write this node only) where the site gives one, else the shared one
        tokens = {"agent": acl["node_tokens"].get(node["id"]) or acl["tokens"]["agent"]}
        if node["consul_server"]:
            tokens["master"] = acl["tokens"]["management"]  # Consul 1.8's name for the initial management token
        conf["acl"] = {"enabled": True, "default_policy": "deny", "down_policy": "extend-cache",
                       "enable_token_persistence": True, "tokens": tokens}
    if tls["ca_file"]:
        # verify_incoming_rpc, not verify_incoming: HTTPS clients (the master) show a token, not a certificate
        conf.update({"ca_file": tls["ca_file"], "cert_file": tls["cert_file"], "key_file": tls["key_file"],
                     "verify_incoming_rpc": True, "verify_outgoing": True, "verify_server_hostname": True})
        if node["consul_server"]:
            conf["ports"]["https"] = c["https_port"]
            conf["addresses"]["https"] = node["address"]
    return conf


def consul_token_env(cfg: dict, role: str) -> str:
    """An environment file giving a Bay daemon its Consul token (mode 0600:
    root only); empty with ACLs off."""
    acl = cfg["consul"]["acl"]
    token = acl["tokens"].get(role, "") if acl["enabled"] else ""
    return "# Managed by Salt (bay); a secret: root only\n" + (f"CONSUL_HTTP_TOKEN={token}\n" if token else "")


#: the registry's certificate and key in one PEM, for the registry node's HAProxy
REGISTRY_PEM = "/etc/haproxy/bay-registry.pem"
#: HAProxy's chroot (Debian's): it reaches UNIX sockets under it, by their path inside
HAPROXY_CHROOT = "/var/lib/haproxy"
#: with TLS, the registry instance's plain HTTP socket, where its node's HAProxy (group haproxy) reaches it
REGISTRY_SOCKET = "bay-registry.sock"


def registry_pem(cfg: dict) -> str:
    """The registry's certificate and key in one PEM for HAProxy (read on the node)."""
    from bay_salt.metrics import nodefiles

    return nodefiles.pem_bundle(cfg["registry"]["tls"])


def registry_tls_section(bind: str, pem: str, socket: str) -> str:
    """The registry node's HAProxy frontend ending the registry's TLS on ``bind``
    (ADDRESS:PORT) with ``pem``, in front of the instance's UNIX ``socket``
    (its path as HAProxy sees it). Benches and tests run the same section."""
    return render("haproxy-registry-tls.cfg.j2", frontend=names.REGISTRY_TLS_FRONTEND, bind=bind, pem=pem,
                  socket=socket)


def haproxy_config(cfg: dict) -> str:
    """The base ``haproxy.cfg``: master-worker, an admin Runtime API socket
    readable by root only, and a stats page."""
    from bay_salt.metrics import graphite, nodefiles

    registry = cfg.get("registry") or {}
    registry_tls = "registry" in cfg.get("node", {}).get("roles", []) and bool((registry.get("tls") or {}).get(
        "cert_file"))
    section = registry_tls_section(f"{cfg['node'].get('address')}:{registry.get('instance_port')}", REGISTRY_PEM,
                                   f"/{REGISTRY_SOCKET}") if registry_tls else ""
    text = render("haproxy.cfg.j2", haproxy=cfg["haproxy"], node=cfg.get("node", {}), monitoring=cfg.get("monitoring"),
                  pem=nodefiles.MONITORING_PEM, carbon_caches=[
                      {"name": nodefiles.carbon_unit_name(c.instance), "pickle_port": c.pickle_port}
                      for c in graphite.caches((cfg.get("monitoring") or {}).get("carbon_caches", 1))],
                  graphite_web_port=graphite.WEB_PORT, registry_tls=registry_tls, registry_section=section,
                  chroot=HAPROXY_CHROOT)
    return text.rstrip("\n") + "\n"


def cadvisor_unit_override(cfg: dict) -> str:
    """A drop-in for Debian's cadvisor unit: the same daemon, listening on
    loopback only (the node's agents and Salt read it there; nothing else
    needs it), with Bay's housekeeping interval."""
    c = cfg["cadvisor"]
    return ("# Managed by Salt (bay.cadvisor): cAdvisor on loopback only\n[Service]\nExecStart=\n"
            f"ExecStart=/usr/bin/cadvisor --docker=unix:///var/run/docker.sock --listen_ip=127.0.0.1 "
            f"--port={c['port']} --housekeeping_interval={c['housekeeping_interval']} --logtostderr=true\n")


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
    r = dict(cfg["registry"], storage_kind=cfg["registry"]["storage"].split(":")[0],
             auth_on=cfg["registry"]["auth"]["mode"] != "none")
    # a cache only for remote storage: a file:// registry already reads its own disk
    if r["storage_kind"] != "hdfs":
        r["cache_bytes"] = 0
    return render("bay-registry.service.j2", registry=r, venv=cfg["python"]["bin_env"], address=cfg["node"]["address"],
                  haproxy_socket=cfg["haproxy"]["socket"], registry_socket=f"{HAPROXY_CHROOT}/{REGISTRY_SOCKET}",
                  register=_registry_register(cfg))


def registry_keep_unit(cfg: dict) -> str:
    """systemd unit that keeps this node's registry instance in KV while the
    registry runs: it puts back at once whatever anything took out."""
    return render("bay-registry-keep.service.j2", register=_registry_register(cfg))


def _registry_register(cfg: dict) -> str:
    """The command that registers this node's registry instance (bay_salt.registry.register)."""
    r = cfg["registry"]
    cmd = (f"{cfg['python']['bin_env']}/bin/bay-registry-register --consul http://127.0.0.1:{cfg['consul']['http_port']}"
           f" --node {cfg['node']['id']} --address {cfg['node']['address']} --port {r['instance_port']}"
           f" --listen {r['port']}")
    return cmd + (f" --probe {HAPROXY_CHROOT}/{REGISTRY_SOCKET} --tls" if r["tls"]["cert_file"] else "")


def events_unit(cfg: dict) -> str:
    """systemd unit of bay-events (the Docker event watcher), run from the minion's venv."""
    return render("bay-events.service.j2", venv=cfg["python"]["bin_env"], consul_port=cfg["consul"]["http_port"],
                  hygiene=HYGIENE_CONFIG)


#: where bay-events reads its hygiene settings (:func:`hygiene_config`)
HYGIENE_CONFIG = "/etc/bay/hygiene.json"


def hygiene_config(cfg: dict) -> dict:
    """What bay-events needs to clear up after the engine (:mod:`bay_salt.node.hygiene`):
    ``bay:docker:hygiene``, and where a removed container's output is kept (None: logs off)."""
    logs = cfg["logs"]
    keep = ({"root": logs["dir"], "node": cfg["node"]["id"], "max_bytes": logs["container_max_bytes"]}
            if logs["enabled"] else None)
    return {**cfg["docker"]["hygiene"], "keep": keep}
