"""Bay's registry beside the reference (Debian's docker-registry, CNCF
Distribution 2.8.2), same machine, same data, same run:

* push and pull of an image of --layers layers x --layer-mib MiB (skopeo, a
  real client: an OCI layout to the registry and back), and the same pull
  again;
* --pullers concurrent pulls of another image just pushed (each pulls the
  manifest and every blob, streaming, in threads: a new version deployed to
  many nodes at once), and the same again;
* --manifests small manifests pushed (8 threads);
* peak memory (RSS) of one registry process while a --big-mib MiB blob is
  uploaded in one streamed PATCH;
* where the first pull's CPU went (registry, HDFS's JVM, the client), beside
  its wall time and the machine's cores: what bounds a pull on this machine.

Bay's registry runs on the filesystem driver and on HDFS (a MiniDFSCluster on
this machine, WebHDFS on loopback) with its local blob cache, as Bay runs it:
the first pull of a blob reads HDFS (and fills the cache), later ones the
instance's disk. Each first pull is a cold read for Bay (and, for the
reference and the filesystem driver, reads the page cache the push left). Targets: pull throughput >= 1.0x the
reference on the filesystem; with HDFS >= 0.7x the reference on the
filesystem; memory during the big upload < 100 MiB.

    .venv/bin/python bench/registry.py [--layers 10] [--layer-mib 20] [--pullers 20] [--manifests 1000]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import Daemon, free_port, start_minidfs, wait_for
from rich.console import Console
from rich.table import Table

from bay_salt.node.nodefiles import registry_tls_section

CHECKOUT = Path(__file__).resolve().parents[1]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF_CONFIG = """version: 0.1
storage:
  filesystem: {{rootdirectory: {root}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}{tls}
log:
  level: error
  accesslog: {{disabled: true}}
"""


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_layout(d: Path, layers: int, mib: int) -> int:
    """An OCI image layout with random (incompressible) layers; returns its size in bytes."""
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    descs, total = [], 0
    for _ in range(layers):
        data = os.urandom(mib << 20)
        (blobs / sha(data).split(":")[1]).write_bytes(data)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(data), "size": len(data)})
        total += len(data)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [
        x["digest"] for x in descs]}}).encode()
    (blobs / sha(config).split(":")[1]).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": descs}).encode()
    (blobs / sha(manifest).split(":")[1]).write_bytes(manifest)
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
    return total


class Registry:
    """A registry process; with ``ca`` it speaks TLS, with ``creds`` a client
    logs in (``/token`` with basic auth, then a bearer token per scope) as
    Docker and skopeo do."""

    def __init__(self, name: str, cmd: list[str], port: int, log: Path, ca: Path | None = None,
                 creds: tuple[str, str] | None = None, front: list[str] | None = None):
        """``front``: a process in front of it (HAProxy ending the TLS on ``port``), counted with it."""
        self.name, self.port, self.creds = name, port, creds
        self.certs = ca.parent if ca else None
        self.ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
        self.daemon = Daemon(cmd, log)
        self.front = Daemon(front, log.with_suffix(".front.log")) if front else None
        wait_for(lambda: self.daemon.alive() and self._up(), 60, f"{name} on :{port}")
        self.peak = 0

    def conn(self, timeout: float | None = None) -> http.client.HTTPConnection:
        if self.ctx:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def auth(self, scope: str) -> dict:
        """The Authorization header for ``scope`` (a new token, as a client gets one per operation)."""
        if not self.creds:
            return {}
        c = self.conn(30)
        basic = base64.b64encode(":".join(self.creds).encode()).decode()
        c.request("GET", f"/token?service=bay-registry&scope={scope}", headers={"Authorization": f"Basic {basic}"})
        r = c.getresponse()
        token = json.loads(r.read())["token"]
        c.close()
        return {"Authorization": f"Bearer {token}"}

    def skopeo_args(self, side: str) -> list[str]:
        """skopeo's options for this registry as the ``src`` or ``dest`` of a copy."""
        if not self.ctx:
            return [f"--{side}-tls-verify=false"]
        return [f"--{side}-cert-dir", str(self.certs)] + ([f"--{side}-creds", ":".join(self.creds)] if self.creds else [])

    def _up(self) -> bool:
        try:
            c = self.conn(1)
            c.request("GET", "/v2/")
            status = c.getresponse().status
            c.close()
            return status in (200, 401)
        except OSError:
            return False

    def rss(self) -> int:
        """RSS in bytes of the registry process (and its children)."""
        total = 0
        for pid in [self.daemon.pid] + _children(self.daemon.pid) + ([self.front.pid] if self.front else []):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def cpu(self) -> float:
        """CPU seconds of the registry process and what is in front of it."""
        return cpu_seconds(self.daemon.pid) + (cpu_seconds(self.front.pid) if self.front else 0.0)

    def stop(self) -> None:
        if self.front:
            self.front.stop()
        self.daemon.stop()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its children."""
    total = 0
    for p in [pid] + _children(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids] + [g for k in kids for g in _children(int(k))]


def skopeo(src: str, dst: str, *options: str) -> float:
    t = time.perf_counter()
    subprocess.run(["skopeo", "copy", "--quiet", *options, src, dst], check=True)
    return time.perf_counter() - t


def pull_raw(reg: Registry, repo: str, tag: str) -> int:
    """A pull as a node does it: a token (when the registry asks for one), the manifest, every blob."""
    headers = reg.auth(f"repository:{repo}:pull")
    conn = reg.conn(120)
    conn.request("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST, **headers})
    m = json.loads(conn.getresponse().read())
    n = 0
    for d in [m["config"]] + m["layers"]:
        conn.request("GET", f"/v2/{repo}/blobs/{d['digest']}", headers=headers)
        r = conn.getresponse()
        if r.status in (301, 302, 307):  # follow a redirect (a registry may send blob reads elsewhere)
            r.read()
            r = urllib.request.urlopen(r.headers["Location"])
        while True:
            b = r.read(1 << 20)
            if not b:
                break
            n += len(b)
    conn.close()
    return n


def concurrent_pulls(reg: Registry, repo: str, k: int) -> float:
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(k) as pool:
        total = sum(pool.map(lambda _: pull_raw(reg, repo, "1"), range(k)))
    return total / (time.perf_counter() - t)


def manifests(reg: Registry, count: int) -> float:
    config, layer = b"{}", b"small layer"
    headers = reg.auth("repository:bench/small:pull,push")
    conn = reg.conn()
    for blob in (config, layer):  # POST then PUT: the reference has no single-request upload
        conn.request("POST", "/v2/bench/small/blobs/uploads/", headers=headers)
        r = conn.getresponse()
        r.read()
        loc = r.headers["Location"]
        path = loc if loc.startswith("/") else "/" + loc.split("/", 3)[3]
        conn.request("PUT", f"{path}{'&' if '?' in path else '?'}digest={sha(blob)}", body=blob,
                     headers={"Content-Type": "application/octet-stream", **headers})
        r = conn.getresponse()
        r.read()
        assert r.status == 201, r.status

    def put(i: int) -> None:
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer),
                        "size": len(layer)}], "annotations": {"n": str(i)}}).encode()
        c = reg.conn()
        c.request("PUT", f"/v2/bench/small/manifests/t{i}", body=body, headers={"Content-Type": OCI_MANIFEST,
                                                                                  **headers})
        r = c.getresponse()
        text = r.read()
        assert r.status == 201, (reg.port, r.status, text[:300])
        c.close()

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))
    return count / (time.perf_counter() - t)


def big_upload(reg: Registry, mib: int) -> tuple[float, int]:
    """One streamed PATCH of ``mib`` MiB; returns (MiB/s, peak RSS bytes)."""
    headers = reg.auth("repository:bench/big:pull,push")
    conn = reg.conn(600)
    conn.request("POST", "/v2/bench/big/blobs/uploads/", headers=headers)
    r = conn.getresponse()
    r.read()
    loc = r.headers["Location"]
    path = loc if loc.startswith("/") else "/" + loc.split("/", 3)[3]
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    peak, stop = [reg.rss()], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], reg.rss())
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()

    def body():
        for _ in range(mib):
            h.update(block)
            yield block

    t = time.perf_counter()
    conn.request("PATCH", path, body=body(), headers={"Content-Type": "application/octet-stream",
                                                       "Content-Length": str(mib << 20), **headers})
    r = conn.getresponse()
    r.read()
    loc = r.headers["Location"]
    path = loc if loc.startswith("/") else "/" + loc.split("/", 3)[3]
    sep = "&" if "?" in path else "?"
    conn.request("PUT", f"{path}{sep}digest=sha256:{h.hexdigest()}", headers={"Content-Length": "0", **headers})
    r = conn.getresponse()
    r.read()
    assert r.status == 201, (r.status, r.headers)
    dt = time.perf_counter() - t
    stop.set()
    return mib / dt, peak[0]


AUTH = "TLS + token auth"
OWN_TLS = " (TLS in its own process)"
REFERENCE = "reference: docker-registry 2.8 (filesystem)"
REFERENCE_TLS = "reference with TLS"
#: what runs beside a registry node's frontend (bay_salt.node.nodefiles.registry_tls_section)
HAPROXY = """global
    maxconn 1000
defaults
    timeout connect 5s
"""


def closed_by_default(work: Path) -> dict:
    """What the registry's closed twins run with, as Bay runs them: a
    certificate from a CA of its own, an auth file (bcrypt password, HS256
    tokens) where the bench's user has every grant."""
    sys.path.insert(0, str(CHECKOUT))
    from bay_salt.cluster import pki
    from bay_salt.registry import auth

    d = work / "closed"
    d.mkdir()
    authority = pki.ca("bench CA")
    cert = pki.leaf(authority, "registry", ["localhost"], ["127.0.0.1"])
    (d / "ca.crt").write_text(authority.cert_pem)  # skopeo's --cert-dir layout
    (work / "tls.pem").write_text(cert.cert_pem)
    (work / "tls-key.pem").write_text(cert.key_pem)
    (work / "haproxy.pem").write_text(cert.cert_pem + cert.key_pem)
    password = os.urandom(12).hex()
    policy = {"mode": "token", "secret": os.urandom(32).hex(), "token_ttl": 300, "anonymous_pull": False,
              "users": {"bench": auth.hash_password(password)},
              "grants": auth.grants_for({}, "127.0.0.1:5000", ["bench"], "node")}
    (work / "auth.json").write_text(json.dumps(policy))
    return {"ca": d / "ca.crt", "creds": ("bench", password), "auth": ["--auth-file", str(work / "auth.json")],
            "own_tls": ["--tls-cert", str(work / "tls.pem"), "--tls-key", str(work / "tls-key.pem")],
            "pem": work / "haproxy.pem"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--layer-mib", type=int, default=20)
    p.add_argument("--pullers", type=int, default=20)
    p.add_argument("--manifests", type=int, default=1000)
    p.add_argument("--big-mib", type=int, default=1024)
    p.add_argument("--no-hdfs", action="store_true")
    p.add_argument("--no-auth", action="store_true", help="skip the TLS + token auth twins")
    p.add_argument("--own-tls", action="store_true",
                   help="also the closed twin with TLS in the registry's own process (as before HAProxy ended it)")
    args = p.parse_args()
    if not shutil.which("docker-registry"):
        sys.exit("bench/registry.py: the reference needs Debian's docker-registry (scripts/setup.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="bay-bench-registry-"))
    layout = work / "layout"
    size = make_layout(layout, args.layers, args.layer_mib)
    regs, hdfs = [], None
    try:
        port = free_port()
        (work / "ref.yml").write_text(REF_CONFIG.format(root=work / "ref", port=port, tls=""))
        regs.append(Registry(REFERENCE, ["docker-registry", "serve", str(work / "ref.yml")], port, work / "ref.log"))
        closed = None if args.no_auth else closed_by_default(work)
        if closed:
            port = free_port()
            tls = f"\n  tls: {{certificate: {work / 'tls.pem'}, key: {work / 'tls-key.pem'}}}"
            (work / "ref-tls.yml").write_text(REF_CONFIG.format(root=work / "ref-tls", port=port, tls=tls))
            regs.append(Registry(REFERENCE_TLS, ["docker-registry", "serve", str(work / "ref-tls.yml")], port,
                                 work / "ref-tls.log", ca=closed["ca"]))

        def bay(name: str, storage: str, cache: bool = False) -> None:
            """Bay's registry over ``storage``, and (unless --no-auth) its twin with token auth behind
            HAProxy ending the TLS, as a registry node runs it (--own-tls: also with TLS in its own process)."""
            twins = ["open"] if closed is None else ["open", "closed"] + (["own"] if args.own_tls else [])
            for twin in twins:
                port, backend = free_port(), work / f"bay{len(regs)}.sock"
                tag = f"{len(regs)}"
                cmd = [sys.executable, "-m", "bay_salt.registry.server", "--storage", f"{storage}{tag}", "--host",
                       "127.0.0.1"] + (["--cache-dir", str(work / f"cache{tag}")] if cache else [])
                if twin == "closed":
                    (work / f"haproxy{tag}.cfg").write_text(HAPROXY + registry_tls_section(
                        f"127.0.0.1:{port}", str(closed["pem"]), str(backend)))
                    regs.append(Registry(f"{name}, {AUTH}", cmd + ["--unix-socket", str(backend), "--tls-proxied"]
                                         + closed["auth"], port, work / f"bay{tag}.log", ca=closed["ca"],
                                         creds=closed["creds"],
                                         front=["haproxy", "-db", "-f", str(work / f"haproxy{tag}.cfg")]))
                elif twin == "own":
                    regs.append(Registry(f"{name}, {AUTH}{OWN_TLS}", cmd + ["--port", str(port)] + closed["auth"]
                                         + closed["own_tls"], port, work / f"bay{tag}.log", ca=closed["ca"],
                                         creds=closed["creds"]))
                else:
                    regs.append(Registry(name, cmd + ["--port", str(port)], port, work / f"bay{tag}.log"))

        bay("Bay registry, filesystem", f"file://{work / 'bay'}")
        if not args.no_hdfs:
            hdfs, http_port = start_minidfs(work / "hdfs", CHECKOUT)
            bay("Bay registry, HDFS (MiniDFSCluster), local blob cache", f"hdfs://127.0.0.1:{http_port}/bench",
                cache=True)
        fresh = work / "layout2"
        make_layout(fresh, args.layers, args.layer_mib)
        rows, cpu = {}, {}
        for reg in regs:
            ref = f"docker://127.0.0.1:{reg.port}/bench/image:1"
            push = skopeo(f"oci:{layout}:1", ref, *reg.skopeo_args("dest"))
            pulls = []
            for k in range(2):
                out = work / f"pull-{reg.port}-{k}"
                before = (reg.cpu(), cpu_seconds(hdfs.pid) if hdfs else 0.0, children_cpu())
                pulls.append(skopeo(ref, f"oci:{out}:1", *reg.skopeo_args("src")))
                if k == 0:  # where the first pull's CPU went, in core-seconds
                    cpu[reg.name] = (reg.cpu() - before[0],
                                     (cpu_seconds(hdfs.pid) - before[1]) if "HDFS" in reg.name else None,
                                     children_cpu() - before[2], pulls[0])
                shutil.rmtree(out)
            skopeo(f"oci:{fresh}:1", f"docker://127.0.0.1:{reg.port}/bench/fresh:1", *reg.skopeo_args("dest"))
            conc = [concurrent_pulls(reg, "bench/fresh", args.pullers) for _ in range(2)]
            mps = manifests(reg, args.manifests)
            big, peak = big_upload(reg, args.big_mib)
            rows[reg.name] = {"push": size / push / 2**20, "pull": size / pulls[0] / 2**20,
                              "pull2": size / pulls[1] / 2**20, "conc": conc[0] / 2**20, "conc2": conc[1] / 2**20,
                              "manifests": mps, "big": big, "peak": peak / 2**20}
    finally:
        for reg in regs:
            reg.stop()
        if hdfs:
            hdfs.stop()
        shutil.rmtree(work, ignore_errors=True)
    ref = rows[REFERENCE]
    con = Console(width=200)
    t = Table(title=f"image of {args.layers} x {args.layer_mib} MiB; {args.pullers} concurrent pulls; "
                    f"{args.manifests} manifests; one {args.big_mib} MiB upload")
    for col in ("registry", "push MiB/s", "pull MiB/s", "pull again", f"{args.pullers} pulls MiB/s", "again",
                "manifests/s", f"{args.big_mib} MiB upload MiB/s", "peak RSS MiB",
                "vs reference (with auth: vs the same registry without): pull, again, concurrent, again (target)",
                "with auth: vs the reference with TLS (target)"):
        t.add_column(col)

    def ratios(r: dict, base: dict, target: str) -> str:
        return ", ".join(f"{r[k] / base[k]:.2f}x" for k in ("pull", "pull2", "conc", "conc2")) + f" ({target})"

    for name, r in rows.items():
        base, target, vs_tls = ref, (">= 0.7x" if "HDFS" in name else ">= 1.0x"), ""
        if AUTH in name:  # the same registry without TLS and auth, measured just before
            base, target = rows[name.split(f", {AUTH}")[0]], ">= 0.9x"
            if REFERENCE_TLS in rows:
                vs_tls = ratios(r, rows[REFERENCE_TLS], ">= 0.7x" if "HDFS" in name else ">= 1.0x")
        t.add_row(name, f"{r['push']:.0f}", f"{r['pull']:.0f}", f"{r['pull2']:.0f}", f"{r['conc']:.0f}",
                  f"{r['conc2']:.0f}", f"{r['manifests']:.0f}", f"{r['big']:.0f}",
                  f"{r['peak']:.0f}" + (" (< 100)" if AUTH in name else ""),
                  "" if r is ref else ratios(r, base, target if name != REFERENCE_TLS else "-"), vs_tls)
    con.print(t)
    c = Table(title="the first pull: CPU used (core-seconds) beside its wall time; the machine has "
                    f"{os.cpu_count()} cores")
    for col in ("registry", "wall s", "registry process (+ its HAProxy)", "HDFS (NameNode + DataNode JVM)",
                "client (skopeo)", "total"):
        c.add_column(col)
    for name, (r, h, k, wall) in cpu.items():
        c.add_row(name, f"{wall:.2f}", f"{r:.2f}", "" if h is None else f"{h:.2f}", f"{k:.2f}",
                  f"{r + (h or 0) + k:.2f}")
    con.print(c)


if __name__ == "__main__":
    main()
