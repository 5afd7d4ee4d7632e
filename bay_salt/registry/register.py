"""Put this node's registry instance into Consul KV, so every node's HAProxy
serves the cluster's registry on ``bay:registry:port`` from all instances.
The bay-registry unit runs it once the server answers, on every start (the
fast path); bay-registry-keep runs it with ``--keep`` beside the registry: a
blocking query on the instance's record, which puts back at once whatever
anything took out or changed (and checks the route every minute), and writes
nothing while both are as they should be.

    bay-registry-register --consul http://127.0.0.1:8500 --node node1 \\
        --address 10.0.0.1 --port 5001 --listen 5000 [--keep]
"""

from __future__ import annotations

import argparse
import functools
import socket
import threading
import urllib.parse
from collections.abc import Callable

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
    p.add_argument("--keep", action="store_true", help="then stay, and put the records back whenever KV lacks them")
    args = p.parse_args(argv)
    u = urllib.parse.urlparse(args.consul)
    # a blocking query waits up to KEEP_WAIT: the client's timeout is longer
    store = kvstore.ConsulStore(kvstore.client(u.hostname, u.port or 8500,
                                               timeout=KEEP_WAIT + 15 if args.keep else kvstore.TIMEOUT))
    records = [route(args.listen, args.tls), instance(args.node, args.address, args.port)]
    listens = functools.partial(probe, args.probe, args.address, args.port)
    where = f"{args.node} {args.address}:{args.port} behind :{args.listen}"

    def register() -> list[str]:
        listens()
        return missing(store, records)

    try:
        written = retry.call(register, "the registry answers and is registered", timeout=args.wait, interval=1,
                             on=(OSError, kvstore.Unavailable, kvstore.TxnError))
    except (OSError, kvstore.Unavailable, kvstore.TxnError) as err:
        print(f"bay-registry-register: gave up: {err}", flush=True)
        return 1
    print(f"registered {where} (wrote {', '.join(written)})" if written else f"{where}: registered already",
          flush=True)
    if args.keep:
        keep(store, records, listens, threading.Event())
    return 0


#: how long one blocking query of the keeper waits (s): the route is checked that often
KEEP_WAIT = 60


def probe(where: str | None, address: str, port: int) -> None:
    """Raise OSError unless the instance accepts a connection at ``where``
    (HOST:PORT or a UNIX socket's path; None: ``address:port``)."""
    if where and where.startswith("/"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(where)
        return
    host, _, p = (where or "").rpartition(":")
    socket.create_connection((host, int(p)) if where else (address, port), timeout=2).close()


def missing(store: kvstore.Store, records: list[Route | Instance]) -> list[str]:
    """Write, in one transaction, those of ``records`` KV does not hold as they
    are (nothing when all are there: no watcher wakes); the keys written."""
    stale = [r for r in records if store.get(r.key) != r.to_json().encode()]
    if stale:
        store.apply([kvstore.op_put(r) for r in stale])
    return [r.key for r in stale]


def keep(store: kvstore.ConsulStore, records: list[Route | Instance], listens: Callable[[], None],
         stop: threading.Event, wait: float = KEEP_WAIT, pause: float = 5.0) -> None:
    """Until ``stop``: a blocking query on the instance's record (the last of
    ``records``); whenever it answers (a change, or ``wait`` s passed), what
    KV lacks of ``records`` is written again, if the instance still answers.
    Consul away: one line, and again after ``pause`` s."""
    index = None
    watched = records[-1].key
    while not stop.is_set():
        try:
            new_index, _ = store.watch(watched, index, f"{int(wait)}s")
            if stop.is_set():
                return
            # an index that went backwards (Consul's KV restored): start over, not a busy loop
            index = new_index if index is None or int(new_index) >= int(index) else None
            listens()
            for key in missing(store, records):
                print(f"put back {key}", flush=True)
        except (OSError, kvstore.Unavailable, kvstore.TxnError) as err:
            print(f"bay-registry-register: {err}; again in {pause:g} s", flush=True)
            index = None
            stop.wait(pause)


if __name__ == "__main__":
    raise SystemExit(main())
