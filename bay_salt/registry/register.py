"""Put this node's registry instance into Consul KV, so every node's HAProxy
serves the cluster's registry on ``bay:registry:port`` from all instances
(run by the bay-registry unit once the server answers; repeated on every start,
so a node back from a loss is served again).

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

#: HAProxy's check of every registry instance: a TCP connect (the instances may speak TLS,
#: which HAProxy passes through, and answer /v2/ only with credentials)
HEALTH = {"tcp": True, "interval": 2.0, "timeout": 1.0, "rise": 1, "fall": 2, "start_period": 30.0}


def route(listen: int) -> Route:
    return Route(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, listen, HEALTH)


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
    args = p.parse_args(argv)
    u = urllib.parse.urlparse(args.consul)
    store = kvstore.ConsulStore(kvstore.client(u.hostname, u.port or 8500))

    def register():
        socket.create_connection((args.address, args.port), timeout=2).close()  # it listens
        store.apply([kvstore.op_put(route(args.listen)), kvstore.op_put(instance(args.node, args.address, args.port))])

    try:
        retry.call(register, "the registry answers and is registered", timeout=args.wait, interval=1,
                   on=(OSError, kvstore.Unavailable, kvstore.TxnError))
    except (OSError, kvstore.Unavailable, kvstore.TxnError) as err:
        print(f"bay-registry-register: gave up: {err}")
        return 1
    print(f"registered {args.node} {args.address}:{args.port} behind :{args.listen}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
