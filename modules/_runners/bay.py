"""
Bay runner: deploy, scale and inspect services declared in pillar under
``bay:services``. A thin adapter over :mod:`bay_salt.control.operations`.
"""

import logging

from salt.exceptions import SaltInvocationError

try:
    from bay_salt import saltloader
    from bay_salt.alerts import operations as alert_ops
    from bay_salt.control import lifecycle, operations
    from bay_salt.kv.store import TxnError, Unavailable
    from bay_salt.logs import operations as log_ops
    from bay_salt.master import saltbackend
    from bay_salt.metrics import dashboards as bay_dashboards
    from bay_salt.model.services import SpecError
    from bay_salt.scheduling.backend import DeployError

    HAS_BAY = True
except ImportError:  # pragma: no cover
    HAS_BAY = False

log = logging.getLogger(__name__)

__virtualname__ = "bay"


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs the salt-master")
    return saltloader.virtual(__file__, __virtualname__)


def _event(tag, data):
    log.info("%s %s", tag, data)
    __salt__["event.send"](tag, data)


def _run(fn, *args, **kwargs):
    """The operation with the master's backend, as the user who called it (an
    owner operates their own services only); every failure is one line."""
    user = globals().get("__user__")  # Salt gives runners the caller (eauth name, root, sudo_NAME)
    try:
        return fn(saltbackend.for_master(__opts__), *args, user=user, **kwargs)
    except operations.NotOwner as exc:
        raise SaltInvocationError(f"refused: {exc}") from None
    except (SpecError, ValueError, DeployError, TxnError) as exc:
        raise SaltInvocationError(str(exc)) from None
    except Unavailable as exc:
        raise SaltInvocationError(str(exc)) from None


def deploy(name):
    """
    Deploy service ``name``: every group to its declared instances and spec
    (scale, roll). An invalid spec or a group that does not fit changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run bay.deploy web
    """
    out = _run(operations.deploy, name, event=_event)
    # the service's dashboard (a group may be new); a monitoring node that does not answer is logged, not fatal
    try:
        made = saltbackend.for_master(__opts__).provision_dashboards()
    except Exception as exc:  # noqa: BLE001 - the deploy itself succeeded
        made = {"?": str(exc)}
    for node, names_or_error in made.items():
        if not isinstance(names_or_error, list):
            log.warning("bay.deploy %s: dashboards not written on %s: %s", name, node, names_or_error)
    return out


def plan(name):
    """
    What ``bay.deploy NAME`` would do, changing nothing (per group: instances
    to start and stop, whether it is a roll). Fails like deploy would.

    CLI Example:

    .. code-block:: bash

        salt-run bay.plan web
    """
    return _run(operations.plan, name)


def scale(target, count):
    """
    Scale one group (``SERVICE.GROUP``) to ``count`` instances now. Pillar
    keeps its declared count for the next ``bay.deploy``.

    CLI Example:

    .. code-block:: bash

        salt-run bay.scale web.api 5
    """
    service, _, group = str(target).partition(".")
    try:
        count = int(count)
    except ValueError:
        raise SaltInvocationError(f"usage: bay.scale SERVICE.GROUP COUNT (got {target!r} {count!r})") from None
    if not group or count < 0:
        raise SaltInvocationError(f"usage: bay.scale SERVICE.GROUP COUNT (got {target!r} {count})")
    return _run(operations.scale, f"{service}.{group}", count, event=_event)


def rollback(name, to=None):
    """
    Deploy an earlier revision of service ``name`` again (default: the one
    before the newest), as a new revision: its specs and images, at the
    counts the groups run now.

    CLI Example:

    .. code-block:: bash

        salt-run bay.rollback web
        salt-run bay.rollback web to=3
    """
    try:
        to = None if to is None else int(to)
    except ValueError:
        raise SaltInvocationError(f"usage: bay.rollback NAME [to=REVISION] (got to={to!r})") from None
    return _run(lifecycle.rollback, str(name), to, event=_event)


def history(name):
    """
    The kept revisions of service ``name``: number, time, who, what.

    CLI Example:

    .. code-block:: bash

        salt-run bay.history web
    """
    return {"revisions": _run(lifecycle.revisions, str(name))}


def remove(target, purge=False):
    """
    Take ``SERVICE`` or ``SERVICE.GROUP`` away: deregistered, drained,
    stopped, its accepted spec and routes gone; ``purge=True`` (a whole
    service): its log topic too.

    CLI Example:

    .. code-block:: bash

        salt-run bay.remove web.api
        salt-run bay.remove web purge=True
    """
    return _run(lifecycle.remove, str(target), purge=purge is True or str(purge).lower() == "true", event=_event)


def restart(target):
    """
    Replace every instance of ``SERVICE.GROUP``, rolling (each new one
    healthy before an old one goes).

    CLI Example:

    .. code-block:: bash

        salt-run bay.restart web.api
    """
    return _run(lifecycle.restart, str(target), event=_event)


def describe(target):
    """
    One group (``SERVICE.GROUP``) or instance (``SERVICE.GROUP/ID``): its
    accepted spec, instances, revision, recent events and last exits.

    CLI Example:

    .. code-block:: bash

        salt-run bay.describe web.api
    """
    return _run(lifecycle.describe, str(target))


def events(after=None, service=None, limit=100):
    """
    The platform's journal: the controller's decisions and the operations,
    oldest first (``after``: a key from an earlier answer, to follow on).

    CLI Example:

    .. code-block:: bash

        salt-run bay.events service=web limit=20
    """
    try:
        limit = int(limit)
    except ValueError:
        raise SaltInvocationError(f"limit={limit!r}: a number") from None
    return {"events": _run(lifecycle.events, None if after is None else str(after),
                           None if service is None else str(service), limit)}


def drain(node):
    """
    Take ``node`` out of service: nothing new is placed there, and what it runs
    is moved to the other nodes first (started and healthy before the node's
    instances stop). Reboot or repair it, then ``bay.undrain``.

    CLI Example:

    .. code-block:: bash

        salt-run bay.drain node2
    """
    return _run(operations.drain, str(node))


def node_clean(node, dry_run=True, dead_after=None):
    """
    What Docker left behind on ``node``: port-forwarding rules and conntrack
    entries of addresses no container holds, veths in no bridge, Bay's
    long-dead containers, dangling images and volumes beyond the caps
    (``bay:docker:hygiene``). With ``dry_run`` (the default) what would go;
    ``dry_run=False`` removes them now. Each node's agent does this on its own
    every ``bay:docker:hygiene:interval``.

    CLI Example:

    .. code-block:: bash

        salt-run bay.node_clean node2
        salt-run bay.node_clean node2 dry_run=False
        salt-run bay.node_clean node2 dead_after=0   # every Bay container not running, too
    """
    return _run(operations.node_clean, str(node), dry_run=str(dry_run).lower() not in ("false", "0", "no"),
                dead_after=dead_after)


def undrain(node):
    """
    Give ``node`` back once it is safe: its Consul agent alive again and, on a
    server, a Raft voter again (what a rolling restart waits for).

    CLI Example:

    .. code-block:: bash

        salt-run bay.undrain node2
    """
    return _run(operations.undrain, str(node))


def status(name=None):
    """
    Desired and registered instances of every group (or of service ``name``).

    CLI Example:

    .. code-block:: bash

        salt-run bay.status
        salt-run bay.status web
    """
    return _run(operations.status, name)


def dashboards():
    """
    The dashboards' URLs in graphite-web: the platform's and every service's
    (``bay:monitoring:web``, or Bay's graphite-web on the monitoring node).

    CLI Example:

    .. code-block:: bash

        salt-run bay.dashboards
    """
    backend = saltbackend.for_master(__opts__)
    m = backend.monitoring()
    if not m.get("web"):
        raise SaltInvocationError("no graphite-web: no node has role monitoring and bay:monitoring:web is empty")
    return bay_dashboards.urls(m["web"], m["cluster"], backend.services())


def alerts():
    """
    The alerts you may see (pending, firing, resolved but not yet told), the
    silences, and (the platform team) deliveries that gave up.

    CLI Example:

    .. code-block:: bash

        salt-run bay.alerts
    """
    return _run(alert_ops.alerts)


def silence(duration=None, reason=None, **matchers):
    """
    Silence the alerts whose labels match every ``LABEL=VALUE`` (``*`` and
    ``?`` allowed) for ``duration`` (``30m``, ``2h``), with a ``reason``. An
    owner names one of their services (``service=NAME``).

    CLI Example:

    .. code-block:: bash

        salt-run bay.silence service=demo group=web duration=2h reason="moving the database"
    """
    given = [f"{k}={v}" for k, v in matchers.items() if not k.startswith("__")]
    if not given or not duration:
        raise SaltInvocationError("usage: bay.silence LABEL=VALUE... duration=2h reason=WHY")
    return _run(alert_ops.silence, given, str(duration), str(reason or ""))


def silences():
    """
    The silences you may see, active and ended in the last day.

    CLI Example:

    .. code-block:: bash

        salt-run bay.silences
    """
    return _run(alert_ops.silences)


def unsilence(silence_id):
    """
    End a silence now.

    CLI Example:

    .. code-block:: bash

        salt-run bay.unsilence 3f2a9c0d1e2b
    """
    return _run(alert_ops.unsilence, str(silence_id))


def _signing_key():
    path = __opts__.get("bay_logs_key_file", log_ops.KEY_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise SaltInvocationError(f"the master cannot sign log tokens: {path}: {exc.strerror}") from None


def logs(target, previous=False):
    """
    Where the output of ``SERVICE.GROUP`` (or ``SERVICE.GROUP/INSTANCE``) is:
    its live instances and what the nodes keep of removed ones (``previous``:
    only the newest removed one), each with the URL its node serves it at,
    and a token that lets you read that service's output for a while
    (``bay logs`` reads the URLs with it).

    CLI Example:

    .. code-block:: bash

        salt-run bay.logs demo.web previous=True
    """
    return _run(log_ops.locate, str(target), previous=bool(previous), signing_key=_signing_key())


def archived_logs(service, since="1h", grep=None, limit=1000, until=None):
    """
    Archived log records of ``service`` from HDFS since ``since`` (``10m``,
    ``2h``, an RFC 3339 time) holding the fixed string ``grep``,
    oldest first, the last ``limit``.

    CLI Example:

    .. code-block:: bash

        salt-run bay.archived_logs demo since=2h grep=error
    """
    return _run(log_ops.archived, str(service), str(since), grep=str(grep) if grep else None, limit=int(limit),
                until=str(until) if until else None)



def search_logs(service, query=None, since="1h", limit=1000, until=None):
    """
    Log records of ``service`` from the search store since ``since`` (``10m``,
    ``2h``, an RFC 3339 time) matching ``query`` (words, "phrases",
    -exclusions, field:value), oldest first, the newest ``limit``.

    CLI Example:

    .. code-block:: bash

        salt-run bay.search_logs demo query='timeout -healthz' since=2h
    """
    try:
        limit = int(limit)
    except ValueError:
        raise SaltInvocationError(f"limit={limit!r}: a number") from None
    return _run(log_ops.searched, str(service), None if query is None else str(query), str(since), limit,
                until=str(until) if until else None)
