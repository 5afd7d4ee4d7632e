"""The files ``bay.metrics`` (every node) and ``bay.monitoring`` (nodes with
role ``monitoring``) put in place, from the validated settings: what the Salt
states write is decided here, so it is unit tested and the same everywhere.
"""

from __future__ import annotations

import json
import os

from bay_salt.metrics import graphite
from bay_salt.model import names

AGENT_CONFIG = "/etc/bay/metrics.json"
STATSD_DIR = "/opt/bay/statsd"
STATSD_VERSION = "0.9.0"
STATSD_CONFIG = "/etc/bay/statsd.json"
#: the agent's line receiver (statsd flushes into it) and statsd's own ports, all on loopback
RELAY_PORT, STATSD_INNER_PORT, STATSD_MGMT_PORT = 2013, 8126, 8127
GRAPHITE_VENV = "/opt/bay/graphite"
GRAPHITE_BASE = "/var/lib/bay/graphite"
GRAPHITE_USER = "bay-graphite"
#: cert and key in one file, as HAProxy's ``crt`` takes them (root only)
MONITORING_PEM = "/etc/haproxy/bay-monitoring.pem"
#: what graphite-web needs installed in its venv (pyproject's `monitoring` extra says the same)
GRAPHITE_PACKAGES = ("carbon==1.1.10", "whisper==1.1.10", "graphite-web==1.1.10", "gunicorn>=21", "whitenoise>=5.3,<6")


def layout() -> dict:
    """Where bay.metrics and bay.monitoring put things (the SLS reads it from here)."""
    base = GRAPHITE_BASE
    return {"statsd_dir": STATSD_DIR, "statsd_version": STATSD_VERSION,
            "statsd_js": f"{STATSD_DIR}/node_modules/statsd/stats.js",
            "graphite_venv": GRAPHITE_VENV, "graphite_base": base, "graphite_user": GRAPHITE_USER,
            "graphite_conf": f"{base}/conf", "graphite_packages": list(GRAPHITE_PACKAGES),
            "graphite_dirs": [f"{base}/storage/whisper", f"{base}/storage/lists", f"{base}/storage/log/webapp",
                              f"{base}/static"]}


def carbon_target(cfg: dict) -> dict:
    """Where this node's agent sends (host, port, and its certificate when TLS)."""
    m = cfg["monitoring"]
    host, _, port = m["carbon_address"].rpartition(":")
    tls = m["tls"] if m["tls"]["ca_file"] else {"cert_file": "", "key_file": "", "ca_file": ""}
    return {"host": host, "port": int(port), **tls}


def cache_count(cfg: dict) -> int:
    """How many carbon-caches the senders shard over: Bay's (a site's own carbon is one address)."""
    m = cfg["monitoring"]
    return 1 if m["carbon"] else m["carbon_caches"]


def agent_config(cfg: dict) -> dict:
    m = cfg["monitoring"]
    disks = ["/"] + ([cfg["docker"]["data_root"]] if cfg["docker"]["data_root"] != "/" else [])
    return {"cluster": cfg["cluster"], "node": cfg["node"]["id"], "carbon": carbon_target(cfg),
            "carbon_caches": cache_count(cfg),
            "interval": m["interval"], "cadvisor_port": cfg["cadvisor"]["port"],
            "haproxy_socket": cfg["haproxy"]["socket"], "disks": disks, "buffer_points": m["buffer_points"],
            "statsd_listen_port": m["statsd_port"], "statsd_port": STATSD_INNER_PORT, "relay_port": RELAY_PORT}


def agent_unit(cfg: dict) -> str:
    venv = cfg["python"]["bin_env"]
    return f"""[Unit]
Description=Bay metrics agent (cAdvisor, server, components, HAProxy, statsd -> carbon)
After=docker.service cadvisor.service haproxy.service

[Service]
Type=simple
ExecStart={venv}/bin/bay-metrics --config {AGENT_CONFIG}
Restart=always
RestartSec=2
# never in the services' way: a slow carbon costs the agent, not them
Nice=10
MemoryMax=256M

[Install]
WantedBy=multi-user.target
"""


def statsd_config(cfg: dict) -> dict:
    """statsd 0.9 (npm) on loopback: its flush interval is the finest retention,
    and it flushes into the agent's line receiver under ``bay.C.services``."""
    m = cfg["monitoring"]
    return {
        "address": "127.0.0.1", "port": STATSD_INNER_PORT,
        "mgmt_address": "127.0.0.1", "mgmt_port": STATSD_MGMT_PORT,
        "graphiteHost": "127.0.0.1", "graphitePort": RELAY_PORT,
        "flushInterval": int(m["interval"] * 1000),
        "backends": ["./backends/graphite"],
        "deleteIdleStats": True,
        "prefixStats": f"_statsd.{names.metric_part(cfg['node']['id'])}",
        "graphite": {"legacyNamespace": False, "globalPrefix": names.metric_services_prefix(cfg["cluster"]),
                     "prefixCounter": "", "prefixTimer": "", "prefixGauge": "", "prefixSet": ""},
    }


def statsd_unit(cfg: dict) -> str:
    return f"""[Unit]
Description=statsd for Bay's services (on loopback; bay-metrics relays the containers' UDP to it)
After=network.target

[Service]
Type=simple
DynamicUser=yes
WorkingDirectory={STATSD_DIR}/node_modules/statsd
ExecStart=/usr/bin/node {STATSD_DIR}/node_modules/statsd/stats.js {STATSD_CONFIG}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def graphite_env() -> dict[str, str]:
    conf = f"{GRAPHITE_BASE}/conf"
    return {"PYTHONPATH": conf, "GRAPHITE_SETTINGS_MODULE": graphite.SETTINGS_MODULE,
            "DJANGO_SETTINGS_MODULE": "graphite.settings"}


def carbon_unit_name(instance: str) -> str:
    """The systemd unit of carbon-cache ``instance``: ``bay-carbon`` (``a``), ``bay-carbon-b``, ..."""
    return "bay-carbon" if instance == "a" else f"bay-carbon-{instance}"


def carbon_units(cfg: dict, unit_dir: str = "/etc/systemd/system") -> dict[str, list[str]]:
    """The carbon-cache units a monitoring node runs (``running``) and the
    ones a smaller ``bay:monitoring:carbon_caches`` retired (``retired``: those
    whose unit file is still in ``unit_dir``, to be stopped and removed)."""
    count = cfg["monitoring"]["carbon_caches"]
    return {"running": [carbon_unit_name(i) for i in graphite.INSTANCES[:count]],
            "retired": [u for u in map(carbon_unit_name, graphite.INSTANCES[count:])
                        if os.path.exists(f"{unit_dir}/{u}.service")]}


def carbon_unit(cfg: dict, instance: str = "a") -> str:
    extra = "" if instance == "a" else f" --instance={instance}"
    return f"""[Unit]
Description=carbon-cache {instance} for Bay (whisper files; receivers on loopback)
After=network.target

[Service]
Type=simple
User={GRAPHITE_USER}
ExecStart={GRAPHITE_VENV}/bin/carbon-cache.py --config={GRAPHITE_BASE}/conf/carbon.conf{extra} --nodaemon start
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def web_unit(cfg: dict) -> str:
    env = " ".join(f"{k}={v}" for k, v in graphite_env().items())
    admin = f"{GRAPHITE_VENV}/bin/django-admin"
    return f"""[Unit]
Description=graphite-web for Bay (render API and dashboards, on loopback; HAProxy serves it with a password)
After=bay-carbon.service

[Service]
Type=simple
User={GRAPHITE_USER}
Environment={env}
ExecStartPre={admin} migrate --noinput -v 0
ExecStartPre={admin} collectstatic --noinput -v 0
ExecStart={GRAPHITE_VENV}/bin/gunicorn --bind 127.0.0.1:{graphite.WEB_PORT} --workers 2 --timeout 60 graphite.wsgi:application
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def graphite_files(cfg: dict) -> dict[str, dict]:
    """carbon's and graphite-web's configuration: ``{path: {contents, mode}}``."""
    m = cfg["monitoring"]
    base, conf = GRAPHITE_BASE, f"{GRAPHITE_BASE}/conf"
    webapp = f"{GRAPHITE_VENV}/webapp"
    return {
        f"{conf}/carbon.conf": {"contents": graphite.carbon_conf(f"{base}/storage", conf, count=m["carbon_caches"]), "mode": "0644"},
        f"{conf}/storage-schemas.conf": {"contents": graphite.storage_schemas(m["retention"]), "mode": "0644"},
        f"{conf}/storage-aggregation.conf": {"contents": graphite.storage_aggregation(), "mode": "0644"},
        f"{conf}/{graphite.SETTINGS_MODULE}.py": {
            "contents": graphite.web_settings(f"{base}/storage", f"{base}/static", m["secret_key"], webapp,
                                              m["carbon_caches"]),
            "mode": "0600"},
    }


def files(cfg: dict) -> dict[str, dict]:
    """Every file of ``bay.metrics`` (and of ``bay.monitoring`` on a monitoring
    node): ``{path: {contents, mode}}``; units are under /etc/systemd/system."""
    out = {
        AGENT_CONFIG: {"contents": json.dumps(agent_config(cfg), indent=2) + "\n", "mode": "0644"},
        "/etc/systemd/system/bay-metrics.service": {"contents": agent_unit(cfg), "mode": "0644"},
        STATSD_CONFIG: {"contents": json.dumps(statsd_config(cfg), indent=2) + "\n", "mode": "0644"},
        "/etc/systemd/system/bay-statsd.service": {"contents": statsd_unit(cfg), "mode": "0644"},
    }
    return out


def monitoring_files(cfg: dict) -> dict[str, dict]:
    units = {f"/etc/systemd/system/{carbon_unit_name(i)}.service": {"contents": carbon_unit(cfg, i), "mode": "0644"}
             for i in graphite.INSTANCES[:cfg["monitoring"]["carbon_caches"]]}
    return {**graphite_files(cfg), **units,
            "/etc/systemd/system/bay-graphite-web.service": {"contents": web_unit(cfg), "mode": "0644"}}


def pem_bundle(tls: dict) -> str:
    """``tls``'s certificate and key (``cert_file``, ``key_file``) in one PEM, as HAProxy reads them (read on the node)."""
    with open(tls["cert_file"], encoding="utf-8") as c, open(tls["key_file"], encoding="utf-8") as k:
        return c.read().rstrip("\n") + "\n" + k.read()


def monitoring_pem(cfg: dict) -> str:
    """The node's certificate and key in one PEM for HAProxy (read on the node)."""
    return pem_bundle(cfg["monitoring"]["tls"])


def report(cfg: dict) -> dict:
    """What the master needs to ship its own metrics and to show dashboards."""
    m = cfg["monitoring"]
    return {"enabled": m["enabled"], "cluster": cfg["cluster"], "carbon": m["carbon_address"], "web": m["web_url"],
            "carbon_caches": cache_count(cfg),
            "interval": m["interval"], "nodes": m["nodes"], "tls": bool(m["tls"]["ca_file"])}
