"""Put this node's registry instance into Consul KV, so every node's HAProxy
serves the cluster's registry on ``bay:registry:port`` from all instances
(run by the bay-registry unit once the server answers; repeated on every start,
so a node back from a loss is served again).

    python -m bay_salt.registry.register --consul http://127.0.0.1:8500 --node node1 \\
        --address 10.0.0.1 --port 5001 --listen 5000
"""

from __future__ import annotations

import argparse
import time
import urllib.parse
import urllib.request

import consul

from bay_salt import kv, names

#: HAProxy health check of every registry instance
HEALTH = {"http": "/v2/", "interval": 2.0, "timeout": 1.0, "rise": 1, "fall": 2, "start_period": 30.0}


def route(listen: int) -> dict:
    return {"service": names.REGISTRY_SERVICE, "group": names.REGISTRY_GROUP, "listen": listen, "health": HEALTH}


def instance(node: str, address: str, port: int) -> kv.Instance:
    # no container: the registry is a host service of the node (the controller leaves it alone)
    return kv.Instance(names.REGISTRY_SERVICE, names.REGISTRY_GROUP, node, node, address, port, "passing")


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
    client = consul.Consul(host=u.hostname, port=u.port or 8500)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            urllib.request.urlopen(f"http://{args.address}:{args.port}/v2/", timeout=2).read()
            kv.apply(client, [kv.route_op(route(args.listen))] +
                     kv.register_ops([instance(args.node, args.address, args.port)]))
            print(f"registered {args.node} {args.address}:{args.port} behind :{args.listen}")
            return 0
        except (OSError, consul.ConsulException, kv.TxnError) as err:
            if time.monotonic() > deadline:
                print(f"bay-registry-register: gave up: {err}")
                return 1
            time.sleep(1)


if __name__ == "__main__":
    raise SystemExit(main())
