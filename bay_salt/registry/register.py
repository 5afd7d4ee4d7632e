"""Put this node's registry instance into Consul KV, so every node's HAProxy
serves the cluster's registry on ``bay:registry:port`` from all instances
(run by the bay-registry unit once the server answers, on every start; and
again by the bay-registry-register timer while the registry runs, which writes
only what KV lacks: a record deleted or changed by anything comes back).

    bay-registry-register --consul http://127.0.0.1:8500 --node node1 \\
        --address 10.0.0.1 --port 5001 --listen 5000
"""

from __future__ import annotations

import argparse
import socket
import urllib.parse

from bay_salt.kv import store as kvstore
from bay_salt.kv.records import Health, Instance, Route
from bay_salt.model import names
from bay_salt.util import retry

#: HAProxy's check of every registry instance: a TCP connect (a plain registry answers /v2/
#: only with credentials); with TLS (ended by the registry node's HAProxy, which accepts
#: while the instance behind it is down) ``GET /v2/`` over TLS, 200 or 401 (it answers)
HEALTH = {"tcp": True, "interval": 2.0, "timeout": 1.0, "rise": 1, "fall": 2, "start_period": 30.0}
TLS_HEALTH = {**HEALTH, "tls_http": "/v2/"}


def route(listen: int, tls: bool = False) -> Route:
    """Every node's HAProxy frontend of the registry (TLS, if any, passed through)."""
    return Route(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, listen, TLS_HEALTH if tls else HEALTH)


def instance(node: str, address: str, port: int) -> Instance:
    # no container: the registry is a host service of the node (the controller leaves it alone)
    return Instance(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, node, node, address, port, Health.PASSING)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bay-registry-register", description=__doc__.split("\n\n")[0])
    p.add_argument("--consul", default="http://127.0.0.1:8500")
    p.add_argument("--node", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--wait", type=float, default=120.0)
    p.add_argument("--probe", help="where the instance itself listens: HOST:PORT or a UNIX socket's path "
                                   "(default: --address:--port)")
    p.add_argument("--tls", action="store_true", help="clients reach it with TLS (ended by its node's HAProxy)")
    args = p.parse_args(argv)
    u = urllib.parse.urlparse(args.consul)
    store = kvstore.ConsulStore(kvstore.client(u.hostname, u.port or 8500))
    def listens() -> None:
        if args.probe and args.probe.startswith("/"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(args.probe)
            return
        host, _, port = (args.probe or "").rpartition(":")
        socket.create_connection((host, int(port)) if args.probe else (args.address, args.port), timeout=2).close()

    def register() -> list[str]:
        listens()
        return missing(store, [route(args.listen, args.tls), instance(args.node, args.address, args.port)])

    try:
        written = retry.call(register, "the registry answers and is registered", timeout=args.wait, interval=1,
                             on=(OSError, kvstore.Unavailable, kvstore.TxnError))
    except (OSError, kvstore.Unavailable, kvstore.TxnError) as err:
        print(f"bay-registry-register: gave up: {err}")
        return 1
    where = f"{args.node} {args.address}:{args.port} behind :{args.listen}"
    print(f"registered {where} (wrote {', '.join(written)})" if written else f"{where}: registered already")
    return 0


def missing(store: kvstore.Store, records: list[Route | Instance]) -> list[str]:
    """Write, in one transaction, those of ``records`` KV does not hold as they
    are (nothing when all are there: no watcher wakes); the keys written."""
    stale = [r for r in records if store.get(r.key) != r.to_json().encode()]
    if stale:
        store.apply([kvstore.op_put(r) for r in stale])
    return [r.key for r in stale]

if __name__ == "__main__":
    raise SystemExit(main())
