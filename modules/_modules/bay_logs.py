"""
Bay logs on this node: containers' output kept here, the service log
topics in Kafka, the archive in HDFS, and the files of ``bay.logs`` and
``bay.kafka``. A thin adapter over :mod:`bay_salt.logs`.
"""

from salt.exceptions import CommandExecutionError

try:
    from bay_salt import saltloader
    from bay_salt.logs import archive, kept, nodefiles
    from bay_salt.logs import kafka as bay_kafka
    from bay_salt.logs import search as bay_search

    HAS_LIBS = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - depends on the minion's Python
    HAS_LIBS = False
    IMPORT_ERROR = str(exc)

__virtualname__ = "bay_logs"


def __virtual__():
    if not HAS_LIBS:
        return (False, f"bay_salt (and confluent-kafka) must be installed in the minion's Python: {IMPORT_ERROR}")
    return saltloader.virtual(__file__, __virtualname__)


def _cfg():
    return __salt__["bay.settings"](redact=False)


def kept_output(service, group=None):
    """
    What this node keeps of removed containers of ``service`` (and ``group``),
    newest first: instance, container, exit code, OOM kill, times, size.

    CLI Example:

    .. code-block:: bash

        salt '*' bay_logs.kept_output demo web
    """
    try:
        return [k.to_dict() for k in kept.entries(_cfg()["logs"]["dir"], service, group)]
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from None


def collect():
    """
    Remove kept output now by age and by this node's cap (``bay:logs``);
    returns what went.

    CLI Example:

    .. code-block:: bash

        salt '*' bay_logs.collect
    """
    lg = _cfg()["logs"]
    return kept.collect(lg["dir"], lg["retention"], lg["node_max_bytes"])


def ensure_topic(service, partitions, retention):
    """
    The log topic of ``service`` exists with at least ``partitions``
    partitions and ``retention`` seconds (the deploy asks a node: nodes hold
    Kafka's password, the master does not).

    CLI Example:

    .. code-block:: bash

        salt node1 bay_logs.ensure_topic demo 3 604800
    """
    cfg = _cfg()
    try:
        return bay_kafka.ensure_topic(bay_kafka.Client.of(cfg), service, int(partitions), float(retention))
    except bay_kafka.KafkaError as exc:
        raise CommandExecutionError(str(exc)) from None


def delete_topic(service):
    """
    Delete the log topic of ``service`` (``bay remove SERVICE --purge``):
    what Kafka still holds of its records goes; the HDFS archive stays.

    CLI Example:

    .. code-block:: bash

        salt node1 bay_logs.delete_topic demo
    """
    try:
        return bay_kafka.delete_topic(bay_kafka.Client.of(_cfg()), service)
    except bay_kafka.KafkaError as exc:
        raise CommandExecutionError(str(exc)) from None


def archived(service, since, until=None, grep=None, limit=1000):
    """
    Archived log records of ``service`` from HDFS (``since``/``until``: epoch
    seconds) holding the fixed string ``grep``, oldest first, at
    most ``limit``. Run on a node that reaches the archive (role ``kafka``).

    CLI Example:

    .. code-block:: bash

        salt node1 bay_logs.archived demo 1795770000 grep=error
    """
    a = _cfg()["logs"]["archive"]
    if not a["hdfs"]:
        raise CommandExecutionError("bay:logs:archive:hdfs is not set: there is no archive")
    try:
        storage = archive.storage_for(a["hdfs"], a["user"])
        return archive.read(storage, service, float(since), float(until) if until else None, grep, int(limit))
    except Exception as exc:  # noqa: BLE001 - the hdfs package's errors, one line
        raise CommandExecutionError(f"archive {a['hdfs']}: {str(exc).splitlines()[0][:300]}") from None


def search(service, since, query=None, until=None, limit=1000):
    """
    Log records of ``service`` in the search store from ``since`` to
    ``until`` (epoch seconds) matching ``query`` (words, "phrases",
    -exclusions), oldest first, the newest ``limit``. Run on a kafka node
    (Bay's OpenSearch listens on its loopback; a site's store is reached from there).

    CLI Example:

    .. code-block:: bash

        salt node1 bay_logs.search demo 1795770000 query='timeout -healthz'
    """
    cfg = _cfg()
    s = cfg["logs"]["search"]
    if not s["enabled"]:
        raise CommandExecutionError("bay:logs:search:enabled is false: logs are not indexed")
    store = bay_search.Store(nodefiles.search_url(cfg), s["user"], s["password"], s["ca_file"])
    try:
        return store.search(service, query or None, float(since), float(until) if until else None, int(limit))
    except (bay_search.SearchError, ValueError) as exc:
        raise CommandExecutionError(str(exc)) from None


def search_files():
    """The files of the indexer (and Bay's OpenSearch) on a kafka node (they hold Kafka's password)."""
    return nodefiles.search_files(_cfg())


def search_layout():
    """
    Where the indexer and Bay's OpenSearch go on this node.

    CLI Example:

    .. code-block:: bash

        salt -G 'bay_roles:kafka' bay_logs.search_layout
    """
    return nodefiles.search_layout(_cfg())


def files():
    """
    The files of ``bay.logs`` on this node (they hold Kafka's password: the
    state renders them; do not call this where the return is kept).
    """
    return nodefiles.files(_cfg())


def kafka_files():
    """The files of ``bay.kafka`` on a node with role ``kafka`` (they hold Kafka's password)."""
    return nodefiles.kafka_files(_cfg())


def kafka_layout():
    """
    Where ``bay.kafka`` puts things on this node.

    CLI Example:

    .. code-block:: bash

        salt -G 'bay_roles:kafka' bay_logs.kafka_layout
    """
    return nodefiles.kafka_layout(_cfg())
