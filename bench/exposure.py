"""What a `bay up` cluster exposes to a machine on its network that is not a
node: every TCP port of every node, the master and the machine that runs
the cluster's HDFS, tried without credentials.

A container on the cluster's network (the node image, without a node's keys,
tokens or passwords) connects to ports 1-65535 of each address; every port
that accepts a connection is then probed for what matters: anonymous reads
that leak Bay's state (Consul KV, the catalog, registry repositories and
tags, container metrics, HAProxy stats, HDFS listings) and anonymous writes
(KV, catalog registration, ACL bootstrap, registry uploads and deletes, HDFS
directories). Consul's RPC port is tried for a TLS handshake without a
client certificate. Ports this machine has open for itself (not Bay's) are
listed apart.

Targets: 0 writable endpoints, 0 that leak routes, instances or images.
Public by design, and counted apart: the services' frontends and their
instances (what a service serves is its developers' to protect).

Then the second attacker: a service's own container (a demo container on
node1, behind the sandbox) tries every TCP port listening on every node, the
masters and this machine's HDFS. Target: 0 that get in beyond its node's
frontends and relay and the instances registered in KV.

    .venv/bin/python bench/exposure.py [--cluster bench] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess

from common import bench_cluster
from rich.console import Console
from rich.table import Table

from bay_salt.cluster import images
from bay_salt.host.sources import network_gateway
from bay_salt.model import names
from tests.e2e.helpers import container_reach

SCANNER = r'''
import asyncio, json, socket, ssl, sys, urllib.request, urllib.error
hosts, public = json.loads(sys.argv[1]), set(map(tuple, json.loads(sys.argv[2])))
CTX = ssl.create_default_context(); CTX.check_hostname = False; CTX.verify_mode = ssl.CERT_NONE

async def scan(host, sem):
    async def one(port):
        async with sem:
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection(host, port), 1.5)
                w.close()
                return port
            except (OSError, asyncio.TimeoutError):
                return None
    return [p for p in await asyncio.gather(*(one(p) for p in range(1, 65536))) if p]

def http(url, method="GET", body=None):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=4, context=CTX) as r:
            return r.status, r.read(20000).decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read(2000).decode(errors="replace")
    except Exception as e:
        return 0, type(e).__name__

READS = ["/v1/kv/bay/?recurse", "/v1/kv/?keys", "/v1/catalog/nodes", "/v1/agent/self", "/v2/_catalog",
         "/v2/bay/demo/tags/list", "/api/v1.3/containers/", "/stats", "/;csv",
         "/webhdfs/v1/?op=LISTSTATUS&user.name=root", "/webhdfs/v1/bay-registry?op=LISTSTATUS&user.name=hdfs", "/"]
WRITES = [("PUT", "/v1/kv/bay/routes/probe/web", b'{"listen": 1}'),
          ("PUT", "/v1/catalog/register", b'{"Node": "probe", "Address": "10.6.6.6"}'),
          ("PUT", "/v1/acl/bootstrap", b""),
          ("POST", "/v2/bay/demo/blobs/uploads/", b""),
          ("DELETE", "/v2/bay/demo/manifests/1", None),
          ("PUT", "/webhdfs/v1/probe?op=MKDIRS&user.name=root", b"")]
LEAKS = ("bay/routes", "bay/instances", "bay/demo", '"repositories"', '"tags"', "\"Node\"", "cpu_usage",
         "pxname", "FileStatus", "serfHealth")

def consul_rpc_tls(host, port):
    """Consul RPC: byte 3 asks for TLS; a handshake without a client certificate must fail."""
    try:
        s = socket.create_connection((host, port), 3)
        s.sendall(b"\x03")
        t = CTX.wrap_socket(s, server_hostname="server.bay.consul")
        t.sendall(b"\x01")
        t.recv(1)
        t.close()
        return "handshake accepted without a client certificate"
    except (ssl.SSLError, OSError) as e:
        return None

def probe(host, port):
    out = {"host": host, "port": port, "reads": [], "writes": [], "http": False}
    if (host, port) in public:
        out["public"] = True
        return out
    for scheme in ("http", "https"):
        st, body = http(f"{scheme}://{host}:{port}/")
        if st:
            out["http"] = scheme
            break
    if out["http"]:
        base = f"{out['http']}://{host}:{port}"
        for path in READS:
            st, body = http(base + path)
            if 200 <= st < 300 and any(k in body for k in LEAKS):
                out["reads"].append(f"{path} {st}")
        for method, path, body in WRITES:
            st, _ = http(base + path, method, body)
            if 200 <= st < 300 or st == 202:
                out["writes"].append(f"{method} {path} {st}")
    elif port == 8300:
        bad = consul_rpc_tls(host, port)
        if bad:
            out["writes"].append("Consul RPC: " + bad)
    return out

async def main():
    sem = asyncio.Semaphore(800)
    found = {}
    for host in hosts:
        found[host] = await scan(host, sem)
    print(json.dumps([probe(h, p) for h, ports in found.items() for p in ports]))

asyncio.run(main())
'''

KNOWN = {  # what each of Bay's ports is, and why it is there
    4505: "Salt publisher (ZeroMQ; only minions with accepted keys can read it)",
    4506: "Salt request server (ZeroMQ; key-authenticated, AES per session)",
    5000: "registry frontend (HAProxy, TCP to the instances: TLS + token auth)",
    5001: "registry instance (TLS + token auth)",
    8300: "Consul server RPC (mutual TLS)",
    8301: "Consul LAN gossip (encrypted with the gossip key)",
    8501: "Consul HTTPS API, servers only (the cluster's CA; ACLs, default deny)",
    8095: "bay-logs: containers' output (TLS + a token the master signs)",
    9092: "Kafka, kafka nodes only (SASL SCRAM-SHA-512 over TLS)",
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cluster", default="bench")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    cluster = bench_cluster(args.cluster)
    net = cluster.client.networks.get(names.network_name(cluster.name))
    gateway = network_gateway(net)
    master = cluster.master()
    master.reload()
    master_ip = master.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
    nodes = {n.address: n.id for n in cluster.nodes()}
    hosts = {**nodes, master_ip: "master", gateway: "this machine (HDFS)"}
    # public by design: the services' frontends on every node, and their instances' ports
    by_id = {v: k for k, v in nodes.items()}
    public = []
    for grp in cluster.runner("bay.status").values():
        if grp.get("listen"):
            public += [[a, int(grp["listen"])] for a in nodes]
        for inst in grp.get("instances", []):  # "ID@NODE:PORT HEALTH"
            node, port = inst.split()[0].split("@")[1].rsplit(":", 1)
            public.append([by_id[node], int(port)])
    own = host_ports(cluster)
    image = images.ensure_node_image(cluster.client, cluster.progress)
    probe = cluster.client.containers.run(image, ["sleep", "infinity"], entrypoint=[], detach=True, network=net.name,
                                          name=f"bay-{cluster.name}-exposure-probe",
                                          labels={names.LABEL_CLUSTER: cluster.name})
    try:
        with cluster.progress.step(f"scanning ports 1-65535 of {len(hosts)} addresses from a non-node container"):
            res = probe.exec_run(["python3", "-c", SCANNER, json.dumps(list(hosts)), json.dumps(public)])
        if res.exit_code != 0:
            raise SystemExit(f"scanner failed: {res.output.decode()[-2000:]}")
        found = json.loads(res.output.decode().strip().splitlines()[-1])
        with cluster.progress.step("every platform port tried from a service container on node1"):
            reach = container_reach(cluster)
    finally:
        probe.remove(force=True)
        if not args.keep:
            cluster.down()
    report(found, hosts, own, gateway)
    inside(reach)


def host_ports(cluster) -> dict[int, str]:
    """This machine's listening TCP ports and their processes (to tell Bay's HDFS from the rest)."""
    out = {}
    for line in subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout.splitlines():
        parts = line.split()
        port = int(parts[3].rsplit(":", 1)[1])
        proc = parts[-1].split('"')[1] if '"' in parts[-1] else "?"
        out[port] = proc
    return out


def report(found: list[dict], hosts: dict[str, str], own: dict[int, str], gateway: str) -> None:
    con = Console(width=160)
    t = Table(title="TCP endpoints reachable from a non-node container on the cluster network, without credentials")
    for col in ("address", "port", "what", "anonymous reads that leak", "anonymous writes that succeed"):
        t.add_column(col)
    reachable = writable = leaking = public = host_own = 0
    for f in sorted(found, key=lambda f: (f["host"], f["port"])):
        if f.get("public"):
            public += 1
            continue
        if f["host"] == gateway and own.get(f["port"]) != "java":
            host_own += 1  # this machine's own services, not Bay's (Bay's HDFS is the JVM)
            what = f"this machine's {own.get(f['port'], '?')} (not Bay's)"
        else:
            reachable += 1
            writable += bool(f["writes"])
            leaking += bool(f["reads"])
            what = KNOWN.get(f["port"], "HDFS (MiniDFSCluster)" if f["host"] == gateway else
                             ("HTTP" if f["http"] else "unknown"))
        t.add_row(f"{f['host']} ({hosts.get(f['host'], '?')})", str(f["port"]), what,
                  "; ".join(f["reads"]) or "none", "; ".join(f["writes"]) or "none")
    con.print(t)
    s = Table(title="summary")
    for col in ("figure", "count", "target"):
        s.add_column(col)
    s.add_row("Bay endpoints that accept a connection (not public by design)", str(reachable), "(each authenticated)")
    s.add_row("... of which writable without credentials", str(writable), "0")
    s.add_row("... of which leak routes, instances or images without credentials", str(leaking), "0")
    s.add_row("services' frontends and instances (public by design)", str(public), "")
    s.add_row("this machine's own ports (not Bay's)", str(host_own), "")
    con.print(s)


def inside(reach: dict) -> None:
    extra = sorted(reach["open"] - reach["allowed"])
    t = Table(title=f"from a service container on {reach['node']} (the sandbox)")
    for col in ("figure", "count", "target"):
        t.add_column(col)
    t.add_row("TCP ports listening on the nodes, the masters and HDFS, tried", str(len(reach["targets"])), "")
    t.add_row("... that got in beyond its node's frontends, relay and the registered instances", str(len(extra)), "0")
    t.add_row("... its peers' (frontends, relay, instances: open by design)", str(len(reach["open"] & reach["allowed"])),
              str(len(reach["allowed"])))
    Console(width=160).print(t)
    for a, p in extra:
        print(f"  got in: {a}:{p}")


if __name__ == "__main__":
    main()
