"""
Bay service containers on this node (docker SDK): start with limits and
labels and wait for health, stop, list. A thin adapter over
:mod:`bay_salt.node.containers`.
"""

try:
    from bay_salt import saltloader
    from bay_salt.model.services import GroupSpec, secret_values
    from bay_salt.node import containers, hygiene
    from bay_salt.node import nodefiles as nodeconf

    HAS_LIBS = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - depends on the minion's Python
    HAS_LIBS = False
    IMPORT_ERROR = str(exc)

__virtualname__ = "bay_docker"


def __virtual__():
    if not HAS_LIBS:
        return (False, f"the docker SDK and bay_salt must be installed in the minion's Python: {IMPORT_ERROR}")
    return saltloader.virtual(__file__, __virtualname__)


def run(group, instances, wait=True):
    """
    Start ``instances`` (ids) of ``group`` (a group's effective settings,
    ``bay_salt.model.services.GroupSpec.to_dict()``) and, with ``wait``,
    probe each on this node's address until healthy or its start period ends.

    CLI Example:

    .. code-block:: bash

        salt node1 bay_docker.run '{"service": "web", "group": "api", ...}' '["a1b2c3d4"]'
    """
    cfg = __salt__["bay.settings"](redact=False)
    spec = GroupSpec.from_dict(group)
    secrets = secret_values((cfg.get("services") or {}).get(spec.service) or {}, spec.group)
    missing = sorted(set(spec.secret_env) - set(secrets))
    if missing:  # the names came with the spec; the values must be in this node's pillar
        return [{"instance": i, "container": "", "host_port": None, "healthy": False, "address": "",
                 "error": f"secret {', '.join(missing)} of {spec.name} is not in this node's pillar"}
                for i in instances]
    logs = cfg["logs"]
    return containers.start_many(spec, list(instances), cfg["node"]["address"], cfg["docker"]["log_max_size"],
                                 cfg["docker"]["log_max_file"], wait=wait,
                                 secrets={k: secrets[k] for k in spec.secret_env},
                                 statsd_port=cfg["monitoring"]["statsd_port"] if cfg["monitoring"]["enabled"] else None,
                                 log_relay_port=logs["relay_port"] if logs["enabled"] and cfg["kafka"]["bootstrap_servers"]
                                 else None, keep=_keep(cfg))


def _keep(cfg):
    """Where this node keeps removed containers' output (None: bay:logs:enabled is false)."""
    logs = cfg["logs"]
    if not logs["enabled"]:
        return None
    return containers.Keep(logs["dir"], cfg["node"]["id"], logs["container_max_bytes"])


def stop(names, timeout=10):
    """
    Stop and remove the named service containers, each one's output kept on
    this node first (``bay:logs``).

    CLI Example:

    .. code-block:: bash

        salt node1 bay_docker.stop '["bay-web-api-a1b2c3d4"]'
    """
    return containers.stop_many(list(names), timeout, keep=_keep(__salt__["bay.settings"](redact=False)))


def output(name, lines=20):
    """
    The last ``lines`` of a service container's output (stdout and stderr;
    "" for a container that is not there).

    CLI Example:

    .. code-block:: bash

        salt node1 bay_docker.output bay-web-api-a1b2c3d4 20
    """
    return containers.output(name, int(lines))


def instances():
    """
    Bay service containers on this node with their labels, state and host port.

    CLI Example:

    .. code-block:: bash

        salt '*' bay_docker.instances
    """
    return containers.list_instances(containers.client())


def clean(dry_run=True, dead_after=None):
    """
    What Docker left behind on this node (stale port-forwarding rules and
    conntrack entries, veths in no bridge, Bay's long-dead containers,
    dangling images and volumes beyond ``bay:docker:hygiene``'s caps): with
    ``dry_run`` what would go, else removed now (each finding seen twice, 2 s
    apart, first), each with a log line. ``dead_after`` (seconds): instead of
    ``bay:docker:hygiene:dead_after`` (0: every Bay container not running).

    CLI Example:

    .. code-block:: bash

        salt node1 bay_docker.clean dry_run=False
    """
    cfg = __salt__["bay.settings"](redact=False)
    h = nodeconf.hygiene_config(cfg)
    report = hygiene.clean(containers.client(), h["dead_after"] if dead_after is None else float(dead_after),
                           h["images_kept"], h["volumes_kept"],
                           dry_run=bool(dry_run), keep=_keep(cfg))
    if not dry_run:
        hygiene.write_state(report)
    return report
