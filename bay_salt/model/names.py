"""The one definition of every name Bay shares between processes.

Docker labels, Consul KV keys, Salt event tags and local-cluster resource
names are defined here and imported everywhere else; nothing spells them out
a second time.
"""

from __future__ import annotations

import time

# --- Docker labels ---------------------------------------------------------
LABEL_PREFIX = "io.bay"
#: every Docker object ``bay up`` creates on the host carries this label (value: cluster name)
LABEL_CLUSTER = f"{LABEL_PREFIX}.cluster"
#: role of a local-cluster container: "master" or "node"
LABEL_ROLE = f"{LABEL_PREFIX}.role"
#: labels on service containers
LABEL_SERVICE = f"{LABEL_PREFIX}.service"
LABEL_GROUP = f"{LABEL_PREFIX}.group"
LABEL_INSTANCE = f"{LABEL_PREFIX}.instance"
#: CPUs and MiB a container reserves (placement reads them back from the node)
LABEL_CPU = f"{LABEL_PREFIX}.cpu"
LABEL_MEMORY = f"{LABEL_PREFIX}.memory_mb"
LABEL_PORT = f"{LABEL_PREFIX}.port"
#: hash of what a container was started from (image, command, env, limits, port): a change rolls the group
LABEL_SPEC = f"{LABEL_PREFIX}.spec"
#: what the container may reach beyond the sandbox (its group's ``egress``, JSON; absent: nothing)
LABEL_EGRESS = f"{LABEL_PREFIX}.egress"
#: the nftables table of the service containers' sandbox on every node (bay_salt.node.sandbox)
SANDBOX_TABLE = "bay_sandbox"


def service_container(service: str, group: str, instance: str) -> str:
    """Docker name of an instance's container on its node."""
    return f"bay-{service}-{group}-{instance}"

# --- Consul KV -------------------------------------------------------------
#: a node's last hygiene round (bay_salt.node.hygiene writes it, the metrics agent reads it)
HYGIENE_STATE = "/var/lib/bay/hygiene.json"

KV_PREFIX = "bay"


def kv_instance(service: str, group: str, instance: str) -> str:
    """Key of one running instance's record."""
    return f"{KV_PREFIX}/instances/{service}/{group}/{instance}"


def kv_instances_prefix(service: str | None = None, group: str | None = None) -> str:
    """Prefix of every instance record (of one service, or of one group)."""
    prefix = f"{KV_PREFIX}/instances/"
    if service:
        prefix += f"{service}/"
        if group:
            prefix += f"{group}/"
    return prefix


def kv_placement(service: str, group: str, instance: str) -> str:
    """A replacement decided but not yet registered (a restarted controller resumes it)."""
    return f"{KV_PREFIX}/placements/{service}/{group}/{instance}"


def kv_failed(service: str, group: str) -> str:
    """Set when the controller gives up on a crash-looping group (the reason);
    it restarts nothing there until the next deploy of the group clears it."""
    return f"{KV_PREFIX}/failed/{service}/{group}"


def kv_scale(service: str, group: str) -> str:
    """Autoscaling state of a group: recommendations in the window, the last decision."""
    return f"{KV_PREFIX}/scale/{service}/{group}"


def kv_placements_prefix() -> str:
    return f"{KV_PREFIX}/placements/"


def parse_kv_placement(key: str) -> tuple[str, str, str]:
    """``(service, group, instance)`` of a placement key (:func:`kv_placement`)."""
    service, group, instance = key[len(kv_placements_prefix()):].split("/")[:3]
    return service, group, instance


def kv_routes_prefix() -> str:
    return f"{KV_PREFIX}/routes/"


def kv_spec(service: str, group: str) -> str:
    """A group's accepted spec: what ``bay.deploy`` validated and deployed (at
    the count ``bay.scale`` set since); the control loop works from it, never
    from pillar nobody deployed."""
    return f"{KV_PREFIX}/specs/{service}/{group}"


def kv_specs_prefix() -> str:
    return f"{KV_PREFIX}/specs/"


def kv_deploying(service: str, group: str) -> str:
    """Set while a deploy or scale works on a group: the control loop leaves it alone."""
    return f"{KV_PREFIX}/deploying/{service}/{group}"


def kv_deploying_prefix() -> str:
    return f"{KV_PREFIX}/deploying/"


def kv_drained(node: str) -> str:
    """Set while a node is drained (``bay drain``): nothing is placed there."""
    return f"{KV_PREFIX}/drained/{node}"


def kv_drained_prefix() -> str:
    return f"{KV_PREFIX}/drained/"


def kv_failed_prefix() -> str:
    return f"{KV_PREFIX}/failed/"


def kv_scale_prefix() -> str:
    return f"{KV_PREFIX}/scale/"


def kv_history(service: str, revision: int) -> str:
    """One accepted revision of a service (``bay history``, ``bay rollback``):
    its groups' specs as deployed, when and by whom."""
    return f"{KV_PREFIX}/history/{service}/{revision:08d}"


def kv_history_prefix(service: str) -> str:
    return f"{KV_PREFIX}/history/{service}/"


#: the platform's journal (``bay events``): the controller's decisions and the
#: runner's operations, a key per event, time-ordered, the oldest pruned
KV_EVENTS = f"{KV_PREFIX}/events/"


#: what the control loop's last reconciliation pass found and when it ran
KV_RECONCILE = f"{KV_PREFIX}/controller/reconcile"

#: the masters' engines that act alone: one of each leads, the others stand by (bay_salt.master.leader)
LEADER_ROLES = ("controller", "alerts")


def kv_leader(role: str) -> str:
    """The Consul session lock of ``role`` (one of :data:`LEADER_ROLES`): who leads, since when."""
    if role not in LEADER_ROLES:
        raise ValueError(f"no leader role {role!r} (one of {', '.join(LEADER_ROLES)})")
    return f"{KV_PREFIX}/leader/{role}"


def kv_failed_output(service: str, group: str) -> str:
    """The last lines of the container whose crash loop failed the group (its alert shows them)."""
    return f"{KV_PREFIX}/failed-output/{service}/{group}"


#: alerts (bay_salt.alerts): each alert's state, what each receiver was last
#: told of each group, deliveries not made yet, deliveries given up, silences
KV_ALERTS = f"{KV_PREFIX}/alerts"
KV_ALERTS_ACTIVE = f"{KV_ALERTS}/active/"
KV_ALERTS_LOG = f"{KV_ALERTS}/log/"
KV_ALERTS_OUTBOX = f"{KV_ALERTS}/outbox/"
KV_ALERTS_FAILED = f"{KV_ALERTS}/failed/"
KV_ALERTS_SILENCES = f"{KV_ALERTS}/silences/"


def kv_route(service: str, group: str) -> str:
    """Key of a group's routing record (frontend port, health check)."""
    return f"{KV_PREFIX}/routes/{service}/{group}"


# --- HAProxy ---------------------------------------------------------------


def haproxy_backend(service: str, group: str) -> str:
    """Frontend and backend name of a service group in every node's HAProxy."""
    return f"{service}.{group}"


def is_group_backend(name: str) -> bool:
    """True for a service group's frontend/backend (the base config's own have no dot)."""
    return name.count(".") == 1


#: name of the n-th server slot of a backend (1-based)
def haproxy_slot(n: int) -> str:
    return f"s{n}"


# --- Bay's registry ----------------------------------------------------------
#: its instances are registered in KV like a service group (host services of the
#: registry nodes, not containers) so every node's HAProxy serves it
REGISTRY_SERVICE = "bay-registry"
REGISTRY_GROUP = "api"
#: a registry node's HAProxy frontend that ends the registry's TLS (open only while its instance runs)
REGISTRY_TLS_FRONTEND = "bay-registry-tls"

# --- Salt event tags -------------------------------------------------------
EVENT_PREFIX = "bay"
TAG_CONTAINER_DIED = f"{EVENT_PREFIX}/container/died"
TAG_CONTAINER_OOM = f"{EVENT_PREFIX}/container/oom"
TAG_CONTAINER_UNHEALTHY = f"{EVENT_PREFIX}/container/unhealthy"
TAG_CONTAINER_STARTED = f"{EVENT_PREFIX}/container/started"
#: a container frozen (docker pause): hung, replaced
TAG_CONTAINER_PAUSED = f"{EVENT_PREFIX}/container/paused"
#: the node agent's readiness checks: an instance stopped (or started again) answering
TAG_INSTANCE_UNREADY = f"{EVENT_PREFIX}/instance/unready"
TAG_INSTANCE_READY = f"{EVENT_PREFIX}/instance/ready"
#: the controller wrote an instance's readiness into KV (every HAProxy follows)
TAG_INSTANCE_MARKED = f"{EVENT_PREFIX}/instance/marked"

TAG_CONTAINER_REPLACED = f"{EVENT_PREFIX}/container/replaced"
TAG_CONTAINER_BACKOFF = f"{EVENT_PREFIX}/container/backoff"
TAG_EVENT_REJECTED = f"{EVENT_PREFIX}/event/rejected"
TAG_GROUP_FAILED = f"{EVENT_PREFIX}/group/failed"
TAG_NODE_LOST = f"{EVENT_PREFIX}/node/lost"
TAG_NODE_BACK = f"{EVENT_PREFIX}/node/back"
TAG_STRAY_REMOVED = f"{EVENT_PREFIX}/node/stray-removed"
TAG_CONTROLLER_RESUMED = f"{EVENT_PREFIX}/controller/resumed"
#: a reconciliation pass found something wrong and healed it (what it found is in the event)
TAG_CONTROLLER_RECONCILED = f"{EVENT_PREFIX}/controller/reconciled"
TAG_SCALE_DECIDED = f"{EVENT_PREFIX}/scale/decided"
TAG_DEPLOY_STARTED = f"{EVENT_PREFIX}/deploy/started"
TAG_DEPLOY_STOPPED = f"{EVENT_PREFIX}/deploy/stopped"
#: a service changed by an operation (deploy, scale, rollback, restart, remove): who, what
TAG_SERVICE_CHANGED = f"{EVENT_PREFIX}/service/changed"

# --- Metrics in Graphite (docs/metrics.md) --------------------------------
#: every Bay metric lives under ``bay.CLUSTER.``; the second part says what it is about
METRIC_ROOT = "bay"


def metric_part(name: str) -> str:
    """One path element from a name (node ids may be FQDNs): Graphite
    separates on dots and globs on ``*?[]{}``, so those become ``_``."""
    out = "".join("_" if ch in ".*?[]{}() /\\,;=" else ch for ch in str(name))
    return out or "_"


def metric_path(cluster: str, *parts: str) -> str:
    return ".".join([METRIC_ROOT, metric_part(cluster), *(metric_part(p) for p in parts)])


def metric_container(cluster: str, service: str, group: str, instance: str, what: str) -> str:
    """A container instance's metric: ``bay.C.containers.SERVICE.GROUP.INSTANCE.WHAT``."""
    return metric_path(cluster, "containers", service, group, instance) + "." + what


def metric_group(cluster: str, service: str, group: str, what: str) -> str:
    """A group's metric (the master's): ``bay.C.groups.SERVICE.GROUP.WHAT``."""
    return metric_path(cluster, "groups", service, group) + "." + what


def metric_traffic(cluster: str, service: str, group: str, node: str, what: str) -> str:
    """A group's traffic through one node's HAProxy: ``bay.C.traffic.SERVICE.GROUP.NODE.WHAT``."""
    return metric_path(cluster, "traffic", service, group, node) + "." + what


def metric_node(cluster: str, node: str, what: str) -> str:
    """A server's metric: ``bay.C.nodes.NODE.WHAT`` (components: ``components.NAME``)."""
    return metric_path(cluster, "nodes", node) + "." + what


def metric_platform(cluster: str, what: str) -> str:
    """The platform's own metric (the master's): ``bay.C.platform.WHAT``."""
    return metric_path(cluster, "platform") + "." + what


def metric_services_prefix(cluster: str) -> str:
    """Where statsd flushes services' own metrics: ``bay.C.services`` +
    ``.SERVICE.GROUP.NODE.METRIC`` (the node's agent adds the service, group and node)."""
    return metric_path(cluster, "services")


# --- Logs (docs/logs.md) ----------------------------------------------------
#: a service's log topic in Kafka (one per service; the relay writes, the archiver reads)
LOG_TOPIC_PREFIX = "bay.logs."
#: the archiver's consumer group (its committed offsets say what is in HDFS)
LOG_ARCHIVER_GROUP = "bay-log-archiver"
#: the log indexer's consumer group (bay_salt.logs.search), beside the archiver's
LOG_INDEXER_GROUP = "bay-log-indexer"
#: the search store's indices: one per service per UTC day, ``bay-logs.SERVICE.YYYY-MM-DD``
#: (a dot: no service name holds one, so one service's pattern never matches another's)
SEARCH_INDEX_PREFIX = "bay-logs."


def search_index(service: str, ts: float) -> str:
    day = time.strftime("%Y-%m-%d", time.gmtime(ts))
    return f"{SEARCH_INDEX_PREFIX}{service}.{day}"


def search_pattern(service: str) -> str:
    """Every index of ``service`` (and no other service's)."""
    return f"{SEARCH_INDEX_PREFIX}{service}.*"


def parse_search_index(index: str) -> tuple[str, float] | None:
    """(service, its day's start in epoch seconds) of one of Bay's indices, else None."""
    import calendar

    if not index.startswith(SEARCH_INDEX_PREFIX):
        return None
    service, _, day = index[len(SEARCH_INDEX_PREFIX):].rpartition(".")
    try:
        return service, float(calendar.timegm(time.strptime(day, "%Y-%m-%d")))
    except ValueError:
        return None
#: what each record carries (the node's relay sets them from the sender; a service cannot forge them)
LOG_LABELS = ("service", "group", "instance", "node")
#: a node's log endpoint: the output of one instance (live or kept), and the list of a group's
LOG_URL_PREFIX = "/v1/logs"
#: the environment every container gets: the relay (line protocol) and its topic (Kafka is closed to containers)
ENV_LOG_HOST, ENV_LOG_PORT = "BAY_LOG_HOST", "BAY_LOG_PORT"
ENV_LOG_TOPIC = "BAY_LOG_TOPIC"


def log_topic(service: str) -> str:
    return f"{LOG_TOPIC_PREFIX}{service}"


def log_topic_service(topic: str) -> str | None:
    """The service a log topic is of (None: not a Bay log topic)."""
    return topic[len(LOG_TOPIC_PREFIX):] if topic.startswith(LOG_TOPIC_PREFIX) else None


def log_path(service: str, group: str, instance: str | None = None) -> str:
    """The path (on a node's log endpoint) of a group's list, or of one instance's output."""
    return f"{LOG_URL_PREFIX}/{service}/{group}" + (f"/{instance}" if instance else "")


def log_url(address: str, port: int, service: str, group: str, instance: str) -> str:
    """Where a node serves an instance's output (HTTPS; a bearer token from ``bay.logs``)."""
    return f"https://{address}:{port}{log_path(service, group, instance)}"


def archive_dir(service: str, date: str | None = None, hour: str | None = None) -> str:
    """A service's archived logs in HDFS, under the archive's root: ``SERVICE/DATE/HOUR``."""
    return "/".join(p for p in (service, date, hour) if p)


# --- Local cluster (`bay up`) ----------------------------------------------
DEFAULT_CLUSTER = "default"


def network_name(cluster: str) -> str:
    return f"bay-{cluster}"


def master_container(cluster: str, index: int = 1) -> str:
    """The ``index``-th master's container (the first keeps the name a one-master cluster had)."""
    return f"bay-{cluster}-master" if index == 1 else f"bay-{cluster}-master{index}"


def node_container(cluster: str, index: int) -> str:
    return f"bay-{cluster}-node{index}"


def node_id(index: int) -> str:
    """Minion id (and hostname) of the ``index``-th local node."""
    return f"node{index}"


MASTER_ID = "master"


def master_id(index: int) -> str:
    """Salt id of the ``index``-th local master."""
    return MASTER_ID if index == 1 else f"{MASTER_ID}{index}"
