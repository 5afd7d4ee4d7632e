"""
Bay execution module: the node's validated settings and the daemon
configurations derived from them. A thin adapter over :mod:`bay_salt`.
"""

import logging

import salt.config
import salt.exceptions
from salt.exceptions import CommandExecutionError

try:
    from bay_salt import saltloader
    from bay_salt.master import site
    from bay_salt.metrics import dashboards, nodefiles
    from bay_salt.model import settings as bay_settings
    from bay_salt.node import aptsources, sandbox
    from bay_salt.node import nodefiles as nodeconf

    HAS_BAY = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - depends on the minion's Python
    HAS_BAY = False
    IMPORT_ERROR = str(exc)

log = logging.getLogger(__name__)

__virtualname__ = "bay"


def __virtual__():
    if not HAS_BAY:
        return (False, f"bay_salt is not installed in the Python that runs Salt: {IMPORT_ERROR}")
    return saltloader.virtual(__file__, __virtualname__)


#: the formula's defaults as the last state.apply left them on this node (states/bay/python.sls)
LOCAL_DEFAULTS = "/etc/bay/defaults.yaml"


def _defaults():
    """The formula's defaults: this node's copy, else the master's file server (before the first state.apply)."""
    import salt.utils.yaml

    try:
        with open(LOCAL_DEFAULTS, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        text = __salt__["cp.get_file_str"]("salt://bay/defaults.yaml", saltenv=__opts__.get("saltenv") or "base")
    if not text:
        raise CommandExecutionError("salt://bay/defaults.yaml is not on the master's file server")
    return salt.utils.yaml.safe_load(text)["bay"]


def settings(defaults=None, redact=True):
    """
    The validated ``bay:`` settings of this minion: formula defaults merged
    with pillar, plus ``node`` (this minion's id, address, roles). An invalid
    pillar raises an error naming the key, so nothing is applied.

    defaults
        the ``bay`` key of ``defaults.yaml`` (map.jinja passes it; read from
        ``salt://bay/defaults.yaml`` when omitted)
    redact
        secrets (the gossip key, Consul tokens, registry secrets, services'
        secret env) shown as ``<redacted>``, as a return goes to the master's
        job cache; the formula renders with ``redact=False``

    CLI Example:

    .. code-block:: bash

        salt '*' bay.settings
    """
    if defaults is None:
        defaults = _defaults()
    own = bay_settings.pick_address(__grains__.get("ip4_interfaces", {}))
    try:
        data = bay_settings.load(defaults, __pillar__.get("bay", {}), __opts__["id"], own)
    except bay_settings.SettingsError as exc:
        raise CommandExecutionError(str(exc)) from None
    return bay_settings.redacted(data) if redact else data


def node_report():
    """
    What the controller needs from this node in one answer: its settings view
    (address, roles), the ``bay:services`` and ``bay:controller`` pillar, capacity and the Bay
    containers running here.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.node_report
    """
    cfg = settings(redact=False)
    return {
        **site.report(cfg),  # no secret: what goes to the master is redacted
        "node": cfg["node"],
        "capacity": __grains__.get("bay_capacity", {}),
        "containers": __salt__["bay_docker.instances"](),
    }


def docker_daemon_config(cfg=None):
    """
    The content of ``/etc/docker/daemon.json`` for this node.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.docker_daemon_config
    """
    return nodeconf.docker_daemon_config(cfg or settings(redact=False))


def consul_config(cfg=None):
    """
    The Consul agent configuration for this node (server or client).

    CLI Example:

    .. code-block:: bash

        salt '*' bay.consul_config
    """
    try:
        return nodeconf.consul_config(cfg or settings(redact=False))
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from None


def haproxy_config(cfg=None):
    """
    The rendered ``haproxy.cfg`` for this node.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.haproxy_config
    """
    return nodeconf.haproxy_config(cfg or settings(redact=False))


def haproxy_environment(cfg=None):
    """
    The content of ``/etc/default/haproxy`` (loads the services config too).

    CLI Example:

    .. code-block:: bash

        salt '*' bay.haproxy_environment
    """
    return nodeconf.haproxy_environment(cfg or settings(redact=False))


def consul_token_env(role, cfg=None):
    """
    The environment file that gives Bay's daemons their Consul token for
    ``role`` (reader, registry). A secret: write it root-only, never show it.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.consul_token_env reader
    """
    return nodeconf.consul_token_env(cfg or settings(redact=False), role)


def docker_client_config(cfg=None):
    """
    Docker's own login to Bay's registry on this node (``/root/.docker/config.json``).
    A secret: write it root-only, never show it.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.docker_client_config
    """
    return nodeconf.docker_client_config(cfg or settings(redact=False))


def registry_auth_file(cfg=None):
    """
    The registry's access policy (users' hashes, the token secret, grants from
    the services pillar). A secret: write it root-only, never show it.

    CLI Example:

    .. code-block:: bash

        salt -G 'roles:registry' bay.registry_auth_file
    """
    return nodeconf.registry_auth_file(cfg or settings(redact=False))


def lbsync_unit(cfg=None):
    """
    The systemd unit of bay-lb-sync on this node.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.lbsync_unit
    """
    return nodeconf.lbsync_unit(cfg or settings(redact=False))


def sandbox_config(cfg=None):
    """
    What the service containers' sandbox on this node is made from
    (``/etc/bay/sandbox.json``): the platform's addresses (this minion's
    masters among them), the site's egress, the relay's and statsd's ports.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.sandbox_config
    """
    return sandbox.node_config(cfg or settings(redact=False), _masters())


def _masters():
    """Every master this minion is configured with (a connection's own opts name only its master)."""
    masters = __opts__.get("master") or []
    if __opts__.get("conf_file"):
        try:
            masters = salt.config.minion_config(__opts__["conf_file"]).get("master") or masters
        except (OSError, salt.exceptions.SaltException) as err:
            log.warning("reading %s: %s", __opts__["conf_file"], err)
    return [masters] if isinstance(masters, str) else list(masters)


def events_unit(cfg=None):
    """
    The systemd unit of bay-events (Docker events -> Salt events) on this node.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.events_unit
    """
    return nodeconf.events_unit(cfg or settings(redact=False))


def hygiene_path():
    """
    Where bay-events reads its hygiene settings.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.hygiene_path
    """
    return nodeconf.HYGIENE_CONFIG


def hygiene_config(cfg=None):
    """
    What this node's bay-events clears up after Docker (``bay:docker:hygiene``)
    and where it keeps a removed container's output.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.hygiene_config
    """
    return nodeconf.hygiene_config(cfg or settings(redact=False))


def registry_storage_dir(cfg=None):
    """
    The registry's directory on this node (file:// storage), or "" (HDFS).

    CLI Example:

    .. code-block:: bash

        salt -G 'roles:registry' bay.registry_storage_dir
    """
    return nodeconf.registry_storage_dir(cfg or settings(redact=False))


def registry_unit(cfg=None):
    """
    The systemd unit of Bay's registry (nodes with role registry).

    CLI Example:

    .. code-block:: bash

        salt -G 'roles:registry' bay.registry_unit
    """
    return nodeconf.registry_unit(cfg or settings(redact=False))


def registry_keep_unit(cfg=None):
    """
    The systemd unit that keeps this node's registry instance in Consul KV
    while the registry runs (bay-registry-keep).

    CLI Example:

    .. code-block:: bash

        salt -G 'roles:registry' bay.registry_keep_unit
    """
    return nodeconf.registry_keep_unit(cfg or settings(redact=False))


def cadvisor_unit_override(cfg=None):
    """
    The drop-in that runs cAdvisor on loopback only, for this node.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.cadvisor_unit_override
    """
    return nodeconf.cadvisor_unit_override(cfg or settings(redact=False))


def container_usage():
    """
    CPU (cores) and memory (bytes) of this node's containers, from its own
    cAdvisor on loopback (what the autoscaler measures with).

    CLI Example:

    .. code-block:: bash

        salt '*' bay.container_usage
    """
    from bay_salt.metrics import cadvisor

    try:
        return cadvisor.fetch("127.0.0.1", settings()["cadvisor"]["port"])
    except OSError as exc:
        raise CommandExecutionError(str(exc)) from None


def cadvisor_environment(cfg=None):
    """
    The content of ``/etc/default/cadvisor`` for this node.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.cadvisor_environment
    """
    return nodeconf.cadvisor_environment(cfg or settings(redact=False))


def mesos_agent_files(cfg=None):
    """
    The Mesos agent's configuration files (path -> content).

    CLI Example:

    .. code-block:: bash

        salt '*' bay.mesos_agent_files
    """
    return nodeconf.mesos_agent_files(cfg or settings(redact=False))


def bullseye_source():
    """
    An apt source for Debian bullseye on this node's own mirror (read from its
    apt sources), for Consul 1.8.7.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.bullseye_source
    """
    try:
        return aptsources.bullseye_source()
    except LookupError as exc:
        raise CommandExecutionError(f"cannot derive a bullseye source: {exc}") from None


def bullseye_pin():
    """
    The apt preferences that keep bullseye at low priority.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.bullseye_pin
    """
    return aptsources.BULLSEYE_PIN


def metrics_files(cfg=None):
    """
    The files of ``bay.metrics`` on this node (the metrics agent's and statsd's
    configuration and units): ``{path: {contents, mode}}``.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.metrics_files
    """
    return nodefiles.files(cfg or settings(redact=False))


def monitoring_files(cfg=None):
    """
    The files of ``bay.monitoring`` (carbon's and graphite-web's configuration
    and units) on a node with role ``monitoring``: ``{path: {contents, mode}}``.

    CLI Example:

    .. code-block:: bash

        salt -G 'bay_roles:monitoring' bay.monitoring_files
    """
    return nodefiles.monitoring_files(cfg or settings(redact=False))


def carbon_units(cfg=None):
    """
    The carbon-cache units of ``bay.monitoring`` (``bay:monitoring:carbon_caches``
    of them): ``{running: [...], retired: [...]}``.

    CLI Example:

    .. code-block:: bash

        salt -G 'bay_roles:monitoring' bay.carbon_units
    """
    return nodefiles.carbon_units(cfg or settings(redact=False))


def registry_pem_path():
    """
    Where a registry node's HAProxy reads the registry's certificate and key.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.registry_pem_path
    """
    return nodeconf.REGISTRY_PEM


def registry_pem(cfg=None):
    """
    The registry's certificate and key in one PEM, for this registry node's
    HAProxy (it ends the registry's TLS).

    CLI Example:

    .. code-block:: bash

        salt -G 'bay_roles:registry' bay.registry_pem
    """
    return nodeconf.registry_pem(cfg or settings(redact=False))


def monitoring_pem(cfg=None):
    """
    This node's certificate and key in one PEM, for HAProxy's carbon and
    graphite-web frontends (a secret: the state writes it root only).
    """
    try:
        return nodefiles.monitoring_pem(cfg or settings(redact=False))
    except OSError as exc:
        raise CommandExecutionError(f"bay:monitoring:tls: {exc}") from None


def provision_dashboards(cfg=None):
    """
    Write the platform's dashboard and every service's into this monitoring
    node's graphite-web (on loopback); returns their names.

    CLI Example:

    .. code-block:: bash

        salt node1 bay.provision_dashboards
    """
    cfg = cfg or settings(redact=False)
    try:
        return dashboards.provision(cfg)
    except OSError as exc:
        raise CommandExecutionError(f"graphite-web on {cfg['node']['id']}: {exc}") from None


def metrics_layout():
    """
    Where ``bay.metrics`` and ``bay.monitoring`` put things: statsd's
    directory and version, Graphite's venv, data directory, user and packages.

    CLI Example:

    .. code-block:: bash

        salt '*' bay.metrics_layout
    """
    return nodefiles.layout()
