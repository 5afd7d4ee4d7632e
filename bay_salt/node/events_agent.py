"""bay-events: Bay's agent on every node.

* Docker's events about Bay containers (:mod:`.docker_events`) go to the
  master at once;
* the instances registered on this node are checked here, separately from
  HAProxy and Docker (:mod:`.checks`): readiness changes and hung instances
  (liveness) go to the master;
* what the engine leaves behind (stale rules, conntrack entries, veths,
  dead containers, dangling images and volumes) is found and removed every
  ``bay:docker:hygiene:interval`` (:mod:`.hygiene`), each with a log line;
  the counts go to :data:`.hygiene.STATE` for the metrics agent;
* every event goes through :class:`.sender.Sender`: kept until the master
  whose controller leads (the lock in KV names it) has acknowledged it, sent
  again until then, over Salt's request channel as the node's own minion (the
  master knows which node sent it; a forged sender is rejected there).

    bay-events [--config /etc/salt/minion] [--consul http://127.0.0.1:8500] [--hygiene /etc/bay/hygiene.json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlparse

import docker

from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Instance, Route, read_leader
from bay_salt.kv.store import Store
from bay_salt.model import names
from bay_salt.node import checks, docker_events, hygiene
from bay_salt.node.sender import Sender, salt_master_sender

log = logging.getLogger("bay.events")

#: seconds between two reads of what is registered on this node
REFRESH = 2.0
#: seconds between two looks at which checks are due
TICK = 0.2
EVENTS = {checks.READY: names.TAG_INSTANCE_READY, checks.UNREADY: names.TAG_INSTANCE_UNREADY,
          checks.HUNG: names.TAG_CONTAINER_UNHEALTHY}


class Checker:
    """The checks of every instance registered on ``node`` (from its local
    Consul agent), each at its own interval, in a pool of probe threads;
    what changes is ``put(tag, data)``."""

    def __init__(self, node: str, store: Store, put: Callable[[str, dict], None],
                 docker_client: Callable[[], docker.DockerClient] | None = None, workers: int = 16,
                 clock: Callable[[], float] = time.time):
        self.node = node
        self.store = store
        self.put = put
        self.docker_client = docker_client or (lambda: docker.from_env(timeout=10))
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self.clock = clock
        self.tracks: dict[str, checks.Track] = {}
        self.routes: dict[tuple[str, str], Route] = {}
        self.pending: dict[tuple[str, str], concurrent.futures.Future] = {}
        self.refreshed = float("-inf")

    def refresh(self, now: float) -> None:
        self.routes = {(r.service, r.group): r for r in self.store.routes()}
        mine = {i.key: i for i in self.store.instances() if i.node == self.node and i.is_container}
        for key in set(self.tracks) - set(mine):
            del self.tracks[key]  # deregistered (replaced, scaled down): no longer ours to check
        for key, inst in mine.items():
            t = self.tracks.get(key)
            if t is None or t.instance.container != inst.container:
                self.tracks[key] = checks.Track.of(inst, now)
            else:
                t.instance = inst
        self.refreshed = now

    def _event(self, what: str, inst: Instance, detail: str) -> None:
        data = {"node": self.node, "service": inst.service, "group": inst.group, "instance": inst.instance,
                "container": inst.container, "time_ns": time.time_ns(), "reason": detail}
        log.warning("%s.%s %s: %s (%s)", inst.service, inst.group, inst.instance, what, detail)
        self.put(EVENTS[what], data)

    def _container(self, inst: Instance):
        try:
            return self.docker_client().containers.get(inst.container)
        except docker.errors.DockerException:
            return None

    def tick(self, now: float | None = None) -> None:
        """Start the probes that are due, and read the ones that are done."""
        now = self.clock() if now is None else now
        if now - self.refreshed >= REFRESH:
            try:
                self.refresh(now)
            except (kvstore.Unavailable, OSError) as err:
                log.warning("cannot read what is registered here (checks go on with what was): %s", err)
        for key, t in list(self.tracks.items()):
            route = self.routes.get((t.instance.service, t.instance.group))
            if route is None:
                continue
            for kind, spec in (("ready", route.health), ("live", route.liveness)):
                if not spec:
                    continue
                due = t.next_ready if kind == "ready" else t.next_live
                if (key, kind) in self.pending or now < due:
                    continue
                container = self._container(t.instance) if spec.get("exec") else None
                self.pending[(key, kind)] = self.pool.submit(checks.probe, spec, t.instance.address,
                                                             t.instance.port, container)
                if kind == "ready":
                    t.next_ready = now + float(spec.get("interval", 2.0))
                else:
                    t.next_live = now + float(spec.get("interval", 10.0))
        for (key, kind), fut in list(self.pending.items()):
            if not fut.done():
                continue
            del self.pending[(key, kind)]
            t = self.tracks.get(key)
            route = self.routes.get((t.instance.service, t.instance.group)) if t else None
            if t is None or route is None:
                continue
            ok = bool(fut.result())
            if kind == "ready":
                h = route.health or {}
                what = checks.readiness(t, ok, int(h.get("rise", 2)), int(h.get("fall", 3)))
                detail = f"readiness check {'passed' if ok else 'failed'} {t.ok_streak or t.fail_streak} in a row"
            else:
                lv = route.liveness or {}
                what = checks.liveness(t, ok, now, int(lv.get("failure_threshold", 3)),
                                       float(lv.get("initial_delay", 0.0)))
                detail = f"liveness check failed {t.live_failures} times in a row"
            if what:
                self._event(what, t.instance, detail)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the checks must outlive any one bad tick
                log.exception("checks: tick failed")
            stop.wait(TICK)


def follow_docker(node: str, put: Callable[[str, dict], None], stop: threading.Event) -> None:
    while not stop.is_set():  # dockerd restarts end the stream: follow the new one
        try:
            docker_events.watch(docker.from_env(timeout=None), node, put)
        except (docker.errors.DockerException, OSError) as err:
            log.warning("docker event stream: %s", err)
        stop.wait(1)


def hygiene_loop(config: str, stop: threading.Event, first: float = 60.0) -> None:
    """Clear up after the engine every ``interval`` of ``config`` (read each
    round: a changed pillar applies without a restart); the first look
    ``first`` seconds after the start (a booting node's containers settle)."""
    from bay_salt.node import containers

    wait = first
    while not stop.wait(wait):
        try:
            with open(config) as fh:
                cfg = json.load(fh)
        except (OSError, ValueError) as err:
            log.warning("hygiene: cannot read %s (%s); looking again in 10 min", config, err)
            wait = 600
            continue
        wait = float(cfg["interval"]) or 60.0
        if not cfg["interval"]:
            continue  # only when asked (bay node clean)
        try:
            k = cfg.get("keep")
            report = hygiene.clean(containers.client(), cfg["dead_after"], cfg["images_kept"], cfg["volumes_kept"],
                                   dry_run=not cfg["remove"],
                                   keep=containers.Keep(k["root"], k["node"], k["max_bytes"]) if k else None)
            hygiene.write_state(report)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("hygiene: the round failed; the next one tries again")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bay-events", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="/etc/salt/minion")
    p.add_argument("--consul", default="http://127.0.0.1:8500")
    p.add_argument("--hygiene", help="its hygiene settings (JSON, bay.hygiene_config); none: no hygiene")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    u = urlparse(args.consul)
    store = kvstore.ConsulStore(kvstore.client(u.hostname, u.port or 8500))

    def controller() -> str | None:
        held = read_leader(store, "controller")
        return held.address if held else None

    node, send = salt_master_sender(args.config, leader=controller)
    # tried again at least every 2 s: a master that took over gets what its predecessor missed at once
    sender = Sender(send, retry_max=2.0)
    stop = threading.Event()
    for target, name in ((lambda: sender.drain(stop), "sender"), (lambda: follow_docker(node, sender.put, stop),
                                                                   "docker-events"),
                         (lambda: Checker(node, store, sender.put).run(stop), "checks"),
                         (lambda: args.hygiene and hygiene_loop(args.hygiene, stop), "hygiene")):
        threading.Thread(target=target, name=name, daemon=True).start()
    log.info("bay-events on %s: Docker events and checks to the master", node)
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
