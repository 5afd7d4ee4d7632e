"""
Bay controller engine (runs in the salt-master): follows ``bay/container/``
events from the nodes and replaces dead containers, follows Consul's node
health (nodes lost and back), and autoscales the groups that have a policy.
A thin adapter over :mod:`bay_salt.reactive` and :mod:`bay_salt.scaler`.

Master config::

    engines:
      - bay_controller: {}
"""

import concurrent.futures
import logging
import threading
import time

import salt.client
import salt.utils.event
import salt.utils.minions

try:
    from bay_salt import events, names, reactive, scaler
    from bay_salt.controller import SaltBackend, first_consul

    HAS_BAY = True
except ImportError:  # pragma: no cover
    HAS_BAY = False

log = logging.getLogger(__name__)


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs the salt-master")
    return "bay_controller"


def _backend(alive=None, refresh_pillar=False):
    # one LocalClient per handler (not shared between threads); aimed only at
    # the nodes Consul sees alive (before the first look: the minions connected
    # to the master), so no call waits out a dead minion's timeout
    targets = sorted(alive or salt.utils.minions.CkMinions(__opts__).connected_ids())
    return SaltBackend(salt.client.get_local_client(__opts__["conf_file"]), targets or "*", report_timeout=10,
                       refresh_pillar=refresh_pillar)


def start(workers=8, services_ttl=10):
    bus = salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True)
    cache = {"at": 0.0, "services": {}, "consul": None, "servers": [], "port": 8500, "alive": None,
             "settings": None, "nodes": {}, "cadvisor_port": 8080}

    def fire(tag, data):
        bus.fire_event(data, tag)

    def services(fresh=False):
        """The pillar as the minions hold it (``bay.deploy`` refreshes it: the
        controller works from what was deployed); ``fresh``: recompiled first
        (a group not known yet), and so is the first look."""
        if fresh or time.monotonic() - cache["at"] > services_ttl:
            b = _backend(cache["alive"], refresh_pillar=fresh or not cache["at"])
            servers, port = b.consul_servers()
            # a node that did not answer this time keeps the address it had
            cache.update(at=time.monotonic(), services=b.services(), consul=first_consul(servers, port),
                         servers=servers, port=port, settings=b.controller_settings(),
                         nodes={**cache["nodes"], **b.node_addresses()}, cadvisor_port=b.cadvisor_port())
        return cache["services"]

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)

    def controller():
        if cache["consul"] is None or cache["settings"] is None:
            services()  # first use: pillar and a Consul client (later: refreshed when the handler needs pillar)
        return reactive.Controller(_backend(cache["alive"]), cache["consul"], fire, services, lambda: cache["settings"])

    def guarded(what, fn, attempts=1):
        # node handlers are idempotent and retried: a lost node may have been the
        # Consul leader, and KV answers "No cluster leader" until a new one is elected
        for attempt in range(1, attempts + 1):
            try:
                fn()
                return
            except Exception:  # noqa: BLE001 - one bad event must not stop the controller
                log.exception("bay controller: %s failed (attempt %d of %d)", what, attempt, attempts)
                if attempt < attempts:
                    time.sleep(2)

    def watch_nodes():
        """Consul serfHealth -> nodes lost and back. Only Consul calls here:
        everything that talks to Salt runs in the pool."""
        seen, index, client = None, None, None
        while True:
            try:
                if client is None:
                    # the servers known from an earlier report: no Salt call (a node just
                    # lost would make one wait out its timeout)
                    if not cache["servers"]:
                        pool.submit(services).result(timeout=25)
                    client = first_consul(cache["servers"], cache["port"])
                    cache["consul"] = client  # the handlers use a server known to answer
                index, checks = client.health.state("any", index=index, wait="30s")
            except Exception as err:  # noqa: BLE001 - Consul server gone: use another
                log.warning("bay controller: node watch: %s", err or type(err).__name__)
                client, index = None, None
                time.sleep(1)
                continue
            first = seen is None
            seen, lost, back = events.node_changes(seen, checks)
            cache["alive"] = {n for n, st in seen.items() if st == "passing"}
            if first:  # a (re)started controller: nodes gone while it was not looking
                alive = set(cache["alive"])
                pool.submit(guarded, "resume", lambda: controller().resume(alive), 15)
                continue
            for n in lost:
                pool.submit(guarded, f"node {n} lost", lambda n=n: controller().node_lost(n), 15)
            for n in back:
                pool.submit(guarded, f"node {n} back", lambda n=n: controller().node_back(n), 15)

    def autoscale_loop():
        """Every autoscale_interval: measure, decide and apply (bay_salt.scaler),
        one round at a time, so a group is never scaled twice at once."""
        while True:
            time.sleep((cache["settings"] or {}).get("autoscale_interval", 5.0))
            if cache["consul"] is None or cache["alive"] is None:
                continue  # not looked at the nodes yet
            try:
                specs = services()
                alive = set(cache["alive"])
                nodes = {n: a for n, a in cache["nodes"].items() if n in alive}
                scaler.Autoscaler(_backend(alive), cache["consul"], fire,
                                  drain_seconds=cache["settings"]["scale_down_drain"]).tick(
                    time.time(), specs, nodes, cache["cadvisor_port"])
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("bay controller: autoscaling round failed")

    threading.Thread(target=watch_nodes, name="bay-node-watch", daemon=True).start()
    threading.Thread(target=autoscale_loop, name="bay-autoscale", daemon=True).start()
    log.info("bay controller started")
    while True:
        ev = bus.get_event(full=True, wait=1, tag=f"{names.EVENT_PREFIX}/container/", match_type="startswith")
        if not ev:
            continue

        pool.submit(guarded, f"handling {ev['tag']}", lambda ev=ev: controller().handle(ev["tag"], ev["data"]))
