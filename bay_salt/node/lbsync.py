"""bay-lb-sync: keeps this node's HAProxy routing what Consul KV says.

Follows ``bay/`` with Consul blocking queries; each change is applied through
the Runtime API (no reload) when the running config has the slots for it, else
the services config is re-rendered, checked with ``haproxy -c`` and HAProxy is
reloaded hitlessly (master-worker). Either way the services config file is
rewritten (atomically) to state what HAProxy now holds. The same watch keeps
the service containers' sandbox (:mod:`.sandbox`) in line with KV.

    bay-lb-sync --consul http://127.0.0.1:8500 \\
        --socket /run/haproxy/admin.sock --base /etc/haproxy/haproxy.cfg \\
        --services /etc/haproxy/bay-services.cfg --reload "systemctl reload haproxy"
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import consul
import docker
import docker.errors

from bay_salt.host.haproxy_runtime import RuntimeAPI, RuntimeAPIError
from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Instance, Route
from bay_salt.kv.store import ConsulStore
from bay_salt.model import names
from bay_salt.node import routing as lb
from bay_salt.node.sandbox import Sandbox, SandboxError
from bay_salt.util import retry

log = logging.getLogger("bay.lbsync")
_ERRORS = ("No such", "Unknown", "Require", "error", "not found", "Invalid", "cannot", "Can't")


def write_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` via a temp file and rename; False if unchanged."""
    if path.exists() and path.read_text() == text:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


class LBSync:
    def __init__(self, store: ConsulStore | None, api: RuntimeAPI, base: Path, services: Path,
                 reload: Callable[[], None], always_reload: bool = False, sandbox: Sandbox | None = None):
        self.store = store
        #: the service containers' sandbox, fed from the same watch (what containers may reach)
        self.sandbox = sandbox
        self.api = api
        self.base = base
        self.services = services
        self.reload = reload
        #: reference mode for benchmarks: every change by config reload, as template-and-reload tools do
        self.always_reload = always_reload
        self.stats = {"runtime": 0, "reloads": 0}

    def current(self) -> dict[str, list[lb.Slot]]:
        return lb.parse_servers_state(self.api.execute("show servers state"))

    def apply(self, routes: list[Route], instances: list[Instance]) -> lb.Plan:
        plan = lb.plan(routes, instances, self.current())
        if self.always_reload and plan.commands:
            plan.reload = True
            plan.reasons.append("always-reload mode")
        if not plan.reload:
            for cmd in plan.commands:
                out = self.api.execute(cmd).strip()
                if any(e in out for e in _ERRORS):
                    log.warning("runtime command %r failed (%s); reloading instead", cmd, out)
                    plan.reload = True
                    break
        text = lb.render(routes, plan.slots)
        if plan.reload:
            self._reload_with(text, routes)
            self.stats["reloads"] += 1
            log.info("reloaded HAProxy: %s", "; ".join(plan.reasons) or "runtime command failed")
        else:
            write_atomic(self.services, text)
            if plan.commands:
                self.stats["runtime"] += 1
                log.info("runtime update: %d commands", len(plan.commands))
        return plan

    def _reload_with(self, text: str, routes: list[Route]) -> None:
        candidate = self.services.with_name(f".{self.services.name}.candidate")
        candidate.write_text(text)
        try:
            res = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.base), "-f", str(candidate)],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"rendered services config rejected by haproxy -c: {res.stdout}{res.stderr}")
            write_atomic(self.services, text)
        finally:
            candidate.unlink(missing_ok=True)
        self.reload()
        want = {r.backend for r in routes}

        def serving() -> bool:  # the new worker answers with every backend, and no other group's
            have = set(self.current())
            return want <= have and not {b for b in have if names.is_group_backend(b)} - want

        try:
            retry.until(serving, "HAProxy's new worker", timeout=30, interval=0.05, on=(RuntimeAPIError,))
        except retry.GaveUp:
            raise RuntimeError("HAProxy did not come back with the new configuration within 30 s") from None

    def _sandbox(self, routes: list[Route] | None = None, instances: list[Instance] | None = None) -> None:
        if self.sandbox is None:
            return
        try:
            self.sandbox.update(routes, instances)
        except (SandboxError, docker.errors.DockerException, OSError, ValueError) as err:
            log.error("could not write the containers' sandbox: %s", err)

    def run(self, stop: threading.Event | None = None, wait: str = "30s") -> None:
        """Follow ``bay/`` in KV (blocking reads) and apply each change, until ``stop``."""
        stop = stop or threading.Event()
        index = None
        while not stop.is_set():
            try:
                new_index, items = self.store.watch(f"{names.KV_PREFIX}/", index, wait)
            except (kvstore.Unavailable, consul.ConsulException) as err:  # Consul restarting: retry
                log.warning("consul: %s", err)
                stop.wait(1)
                continue
            if new_index == index:
                self._sandbox()  # nothing new in KV: written again now and then all the same
                continue
            if index is not None and int(new_index) < int(index):
                index = None  # index went backwards (Consul restored): start over
                continue
            index = new_index
            routes, instances = kvstore.routing(items)
            self._sandbox(routes, instances)
            try:
                self.apply(routes, instances)
            except (RuntimeAPIError, RuntimeError) as err:
                log.error("could not apply routing: %s", err)
                stop.wait(1)
                index = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bay-lb-sync", description=__doc__.split("\n\n")[0])
    p.add_argument("--consul", default="http://127.0.0.1:8500")
    p.add_argument("--socket", default="/run/haproxy/admin.sock")
    p.add_argument("--base", default="/etc/haproxy/haproxy.cfg")
    p.add_argument("--services", default="/etc/haproxy/bay-services.cfg")
    p.add_argument("--reload", default="systemctl reload haproxy", help="command that reloads HAProxy")
    p.add_argument("--always-reload", action="store_true",
                   help="apply every change by config reload (reference mode for benchmarks)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    url = urlparse(args.consul)
    if url.scheme not in ("", "http"):
        raise SystemExit(f"bay-lb-sync: --consul {args.consul}: the node's own agent over http://127.0.0.1:PORT")
    # its token from CONSUL_HTTP_TOKEN (the unit's environment file); a blocking read waits up to
    # 30 s and Consul adds up to 1/16 of that: the client waits longer
    store = ConsulStore(kvstore.client(url.hostname or "127.0.0.1", url.port or 8500, timeout=45))
    reload_cmd = shlex.split(args.reload)
    sandbox = Sandbox(docker.from_env(timeout=10), events=docker.from_env(timeout=None))  # connect at first use
    sync = LBSync(store, RuntimeAPI(args.socket), Path(args.base), Path(args.services),
                  lambda: subprocess.run(reload_cmd, check=True), always_reload=args.always_reload, sandbox=sandbox)
    threading.Thread(target=sandbox.follow_starts, args=(threading.Event(),), name="sandbox-starts",
                     daemon=True).start()
    sync.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
