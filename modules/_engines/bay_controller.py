"""
Bay controller engine (runs in the salt-master): follows ``bay/container/``
events from the nodes and replaces dead containers. A thin adapter over
:mod:`bay_salt.reactive`.

Master config::

    engines:
      - bay_controller: {}
"""

import concurrent.futures
import logging
import time

import salt.client
import salt.utils.event

try:
    from bay_salt import names, reactive
    from bay_salt.controller import SaltBackend

    HAS_BAY = True
except ImportError:  # pragma: no cover
    HAS_BAY = False

log = logging.getLogger(__name__)


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs the salt-master")
    return "bay_controller"


def _backend():
    # one LocalClient per handler: LocalClient is not shared between threads
    return SaltBackend(salt.client.get_local_client(__opts__["conf_file"]))


def start(workers=4, services_ttl=10):
    bus = salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True)
    cache = {"at": 0.0, "services": {}, "consul": None}

    def fire(tag, data):
        bus.fire_event(data, tag)

    def services():
        if time.monotonic() - cache["at"] > services_ttl:
            b = _backend()
            cache.update(at=time.monotonic(), services=b.services(), consul=b.consul())
        return cache["services"]

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    log.info("bay controller started")
    while True:
        ev = bus.get_event(full=True, wait=1, tag=f"{names.EVENT_PREFIX}/container/", match_type="startswith")
        if not ev:
            continue

        def run(tag=ev["tag"], data=ev["data"]):
            try:
                services()  # fresh enough pillar and a Consul client
                ctl = reactive.Controller(_backend(), cache["consul"], fire, services)
                ctl.handle(tag, data)
            except Exception:  # noqa: BLE001 - one bad event must not stop the controller
                log.exception("bay controller: handling %s failed", tag)

        pool.submit(run)
