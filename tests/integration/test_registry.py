"""Bay's registry, for real: server processes on the host over the
filesystem driver (and HDFS: MiniDFSCluster, see conftest), the OCI
conformance suite, real clients (skopeo both ways, docker push/pull through
the host's Docker engine), bad input storing nothing, uploads spread over
instances (and one killed mid-upload), and online GC."""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import docker
import pytest

from bay_salt import storage
from bay_salt.cluster.demo import ensure_busybox
from bay_salt.cluster.progress import Progress
from bay_salt.registry import layout, stores
from bay_salt.registry.reference import OCI_MANIFEST
from tests.helpers import CHECKOUT
from tests.support.daemons import Daemon, free_port, wait_for


class Instance:
    """One registry server process."""

    def __init__(self, tmp, storage_url, name="reg", args=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.daemon = Daemon([sys.executable, "-m", "bay_salt.registry.server", "--storage", storage_url,
                              "--host", "127.0.0.1", "--port", str(self.port), *args],
                             tmp / f"{name}-{self.port}.log")
        wait_for(lambda: self.daemon.alive() and _up(self.url), 30, f"registry on :{self.port}")

    def stop(self):
        self.daemon.stop()


def _up(url):
    try:
        return urllib.request.urlopen(f"{url}/v2/", timeout=1).status == 200
    except OSError:
        return False


def call(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def files(root):
    out = set()
    for d, _, fs in os.walk(root):
        out |= {os.path.relpath(os.path.join(d, f), root) for f in fs}
    return out


def blob_files(root):
    return {f for f in files(root) if f.startswith("blobs/")}


@pytest.fixture
def fsreg(tmp_path):
    root = tmp_path / "data"
    inst = Instance(tmp_path, f"file://{root}")
    inst.root = root
    yield inst
    inst.stop()


def conformance(url, tmp_path):
    binary = subprocess.run(["bash", str(CHECKOUT / "scripts" / "conformance.sh")], capture_output=True, text=True,
                            check=True).stdout.strip()
    env = dict(os.environ, OCI_ROOT_URL=url, OCI_NAMESPACE="bay/conformance", OCI_CROSSMOUNT_NAMESPACE="bay/other",
               OCI_TEST_PULL="1", OCI_TEST_PUSH="1", OCI_TEST_CONTENT_DISCOVERY="1", OCI_TEST_CONTENT_MANAGEMENT="1",
               OCI_REPORT_DIR=str(tmp_path), OCI_HIDE_SKIPPED_WORKFLOWS="0")
    res = subprocess.run([binary], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "OCI Conformance Test: Pass" in out, out[-6000:]
    assert "FAIL..........................:          0" in out, out[-6000:]
    # the four workflows (this suite reports them by API): pull, push, content discovery, content management
    for api in ("Manifest get by tag", "Blob get range", "Blob push", "Blob chunked", "Blob mount",
                "Manifest put by tag", "Tag listing", "Referrers", "Tag delete", "Manifest delete", "Blob delete"):
        assert re.search(rf"^  {api}\.+:\s+Pass$", out, re.M), (api, out[-3000:])
    return out


def test_conformance_filesystem(fsreg, tmp_path):
    conformance(fsreg.url, tmp_path)


def test_conformance_hdfs(hdfs, tmp_path):
    # as Bay runs it over HDFS: with the local blob cache
    inst = Instance(tmp_path, hdfs.storage_url("conformance"), args=["--cache-dir", str(tmp_path / "cache")])
    try:
        conformance(inst.url, tmp_path)
    finally:
        inst.stop()


# --- bad input stores nothing ----------------------------------------------------------


def test_filesystem_blobs_are_sent_from_their_file(fsreg):
    data = os.urandom(300000)
    assert call(f"{fsreg.url}/v2/t/f/blobs/uploads/?digest={sha(data)}", "POST", data)[0] == 201
    st, headers, body = call(f"{fsreg.url}/v2/t/f/blobs/{sha(data)}")
    assert st == 200 and body == data and "Last-Modified" in headers  # aiohttp's FileResponse (sendfile)
    assert headers["Docker-Content-Digest"] == sha(data) and headers["Content-Type"] == "application/octet-stream"
    st, headers, part = call(f"{fsreg.url}/v2/t/f/blobs/{sha(data)}", headers={"Range": "bytes=-10"})
    assert st == 206 and part == data[-10:]
    assert call(f"{fsreg.url}/v2/t/other/blobs/{sha(data)}")[0] == 404  # linked in t/f only


def test_wrong_digest_stores_nothing(fsreg):
    data = b"x" * 1000
    st, _, body = call(f"{fsreg.url}/v2/t/a/blobs/uploads/?digest={sha(b'other')}", "POST", data,
                       {"Content-Type": "application/octet-stream"})
    assert st == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
    st, h, _ = call(f"{fsreg.url}/v2/t/a/blobs/uploads/", "POST")
    loc = h["Location"]
    assert call(f"{fsreg.url}{loc}", "PATCH", data, {"Content-Type": "application/octet-stream"})[0] == 202
    st, _, body = call(f"{fsreg.url}{loc}?digest={sha(b'other')}", "PUT")
    assert st == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
    assert blob_files(fsreg.root) == set()
    assert not [f for f in files(fsreg.root) if "_uploads" in f]


def test_truncated_body_stores_nothing(fsreg):
    data = b"y" * 100000
    with socket.create_connection(("127.0.0.1", fsreg.port)) as s:
        s.sendall((f"POST /v2/t/a/blobs/uploads/?digest={sha(data)} HTTP/1.1\r\nHost: x\r\n"
                   f"Content-Length: {len(data)}\r\nContent-Type: application/octet-stream\r\n\r\n").encode())
        s.sendall(data[:50000])  # and the client goes away
    # the server drops the upload it streamed into once it sees the connection gone
    wait_for(lambda: not [f for f in files(fsreg.root) if "_uploads" in f], 10, "the broken upload removed")
    assert blob_files(fsreg.root) == set()
    assert call(f"{fsreg.url}/v2/t/a/blobs/{sha(data)}", "HEAD")[0] == 404


@pytest.mark.parametrize("name", ["../etc", "a/../../b", "A/upper", "a//b", "/abs", "a/./b", "x" * 300, "a..b"])
def test_bad_names_are_refused(fsreg, name):
    before = files(fsreg.root)
    st, _, body = call(f"{fsreg.url}/v2/{name}/blobs/uploads/", "POST")
    assert st in (400, 404), (name, st)
    if st == 400:
        assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID"
    assert files(fsreg.root) == before
    assert not os.path.exists(fsreg.root.parent / "etc")


ALLOWED_CODES = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
                 "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN",
                 "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS"}


def test_only_the_spec_error_codes_and_plain_answers_elsewhere(fsreg):
    from bay_salt.registry.errors import Code

    assert {c.value for c in Code} == ALLOWED_CODES
    st, h, body = call(f"{fsreg.url}/v2/t/a/nothing/here")
    assert st == 404 and not h.get("Content-Type", "").startswith("application/json"), body
    st, h, body = call(f"{fsreg.url}/v2/_catalog?n=lots")
    assert st == 400 and b"errors" not in body
    st, h, body = call(f"{fsreg.url}/v2/t/a/manifests/none")
    assert st == 404 and json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"


@pytest.fixture(params=["filesystem", "hdfs"])
def anyreg(request, tmp_path):
    """A registry over each storage driver (HDFS: as Bay runs it, with the cache)."""
    if request.param == "filesystem":
        yield request.getfixturevalue("fsreg")
        return
    hdfs = request.getfixturevalue("hdfs")
    inst = Instance(tmp_path, hdfs.storage_url(f"concurrent-{os.getpid()}-{time.monotonic_ns()}"),
                    args=["--cache-dir", str(tmp_path / "cache")])
    yield inst
    inst.stop()


def test_listings_show_committed_objects_only_under_concurrent_writes(anyreg):
    """Ten writers tag and push referrers while a reader lists, on both
    storage drivers: never a temporary name, never a 5xx, never a
    half-written referrer."""
    import concurrent.futures

    fsreg = anyreg
    subject = push_image(fsreg.url, "t/c", "base", b"subject layer")
    stop, seen = [False], []

    def writer(k):
        for n in range(8):
            push_image(fsreg.url, "t/c", f"w{k}-{n}", f"layer {k} {n}".encode())
            art = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x-test",
                   "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(b"{}"), "size": 2},
                   "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}}
            body = json.dumps(dict(art, annotations={"n": f"{k}-{n}"})).encode()
            assert call(f"{fsreg.url}/v2/t/c/manifests/{sha(body)}", "PUT", body,
                        {"Content-Type": OCI_MANIFEST})[0] == 201

    def reader():
        while not stop[0]:
            st, _, body = call(f"{fsreg.url}/v2/t/c/tags/list")
            seen.append((st, body))
            st, _, body = call(f"{fsreg.url}/v2/t/c/referrers/{subject}")
            seen.append((st, body))

    with concurrent.futures.ThreadPoolExecutor(11) as pool:
        r = pool.submit(reader)
        list(pool.map(writer, range(10)))
        stop[0] = True
        r.result()
    assert seen and all(st == 200 for st, _ in seen), [s for s in seen if s[0] != 200][:3]
    for _, body in seen:
        doc = json.loads(body)
        names = doc.get("tags") or [m["digest"] for m in doc.get("manifests", [])]
        assert not [n for n in names if "tmp" in n], names


def test_storage_paths_are_checked_again_in_the_driver(tmp_path):
    d = storage.LocalDriver(str(tmp_path / "r"))
    for bad in ("../x", "/etc/passwd", "a/../../x", "a//b", ""):
        with pytest.raises(storage.StorageError):
            d.put(bad, b"x")


def test_oversized_manifest_and_missing_blobs_are_refused(fsreg):
    big = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"a": "x" * (5 << 20)}})
    st, _, body = call(f"{fsreg.url}/v2/t/a/manifests/big", "PUT", big.encode(), {"Content-Type": OCI_MANIFEST})
    assert st == 413 and json.loads(body)["errors"][0]["code"] == "SIZE_INVALID"
    missing = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(b"c"), "size": 1},
               "layers": []}
    st, _, body = call(f"{fsreg.url}/v2/t/a/manifests/v1", "PUT", json.dumps(missing).encode(),
                       {"Content-Type": OCI_MANIFEST})
    assert st == 400 and json.loads(body)["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert blob_files(fsreg.root) == set()
    assert call(f"{fsreg.url}/v2/t/a/tags/list")[0] == 404


def test_chunk_out_of_order_is_416_and_keeps_the_upload(fsreg):
    st, h, _ = call(f"{fsreg.url}/v2/t/a/blobs/uploads/", "POST")
    loc = h["Location"]
    assert call(f"{fsreg.url}{loc}", "PATCH", b"abc", {"Content-Range": "0-2"})[0] == 202
    st, _, body = call(f"{fsreg.url}{loc}", "PATCH", b"xyz", {"Content-Range": "10-12"})
    assert st == 416
    st, h, _ = call(f"{fsreg.url}{loc}")
    assert st == 204 and h["Range"] == "0-2"  # the upload is as it was


# --- stateless instances ---------------------------------------------------------------


def test_chunks_to_different_instances_and_one_killed_mid_upload(tmp_path):
    url = f"file://{tmp_path / 'shared'}"
    a, b, c = Instance(tmp_path, url, "a"), Instance(tmp_path, url, "b"), Instance(tmp_path, url, "c")
    try:
        data = os.urandom(3 << 20)
        parts = [data[: 1 << 20], data[1 << 20: 2 << 20], data[2 << 20:]]
        st, h, _ = call(f"{a.url}/v2/t/s/blobs/uploads/", "POST")
        loc = h["Location"]
        assert call(f"{a.url}{loc}", "PATCH", parts[0], {"Content-Range": f"0-{len(parts[0]) - 1}"})[0] == 202
        assert call(f"{b.url}{loc}", "PATCH", parts[1],
                    {"Content-Range": f"{1 << 20}-{(2 << 20) - 1}"})[0] == 202
        b.stop()  # the instance that took the last chunk is gone; another one goes on
        st, h, _ = call(f"{c.url}{loc}")
        assert st == 204 and h["Range"] == f"0-{(2 << 20) - 1}"
        assert call(f"{c.url}{loc}", "PATCH", parts[2], {"Content-Range": f"{2 << 20}-{len(data) - 1}"})[0] == 202
        st, h, _ = call(f"{a.url}{loc}?digest={sha(data)}", "PUT")
        assert st == 201 and h["Docker-Content-Digest"] == sha(data)
        st, _, got = call(f"{c.url}/v2/t/s/blobs/{sha(data)}")
        assert got == data
        st, h, part = call(f"{a.url}/v2/t/s/blobs/{sha(data)}", headers={"Range": "bytes=10-19"})
        assert st == 206 and part == data[10:20] and h["Content-Range"] == f"bytes 10-19/{len(data)}"
    finally:
        for i in (a, b, c):
            i.stop()


# --- real clients ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def busybox():
    client = docker.from_env()
    ensure_busybox(client, Progress())
    return client


def test_skopeo_copy_both_ways(fsreg, busybox, tmp_path):
    ref = f"127.0.0.1:{fsreg.port}/bay/busybox:1"
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "docker-daemon:bay-busybox:latest",
                    f"docker://{ref}"], check=True, timeout=120)
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                    f"oci:{tmp_path / 'out'}:1"], check=True, timeout=120)
    pushed = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                                       capture_output=True, check=True).stdout)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["manifests"] and pushed["layers"]
    for layer in pushed["layers"]:  # every layer came back byte for byte (checked by digest)
        alg, h = layer["digest"].split(":")
        assert hashlib.sha256((tmp_path / "out" / "blobs" / alg / h).read_bytes()).hexdigest() == h


def test_docker_push_and_pull(fsreg, busybox):
    ref = f"127.0.0.1:{fsreg.port}/bay/busybox"
    img = busybox.images.get("bay-busybox:latest")
    img.tag(ref, "push")
    try:
        out = busybox.images.push(ref, tag="push")
        assert '"error"' not in out, out
        busybox.images.remove(f"{ref}:push")
        pulled = busybox.images.pull(ref, tag="push")
        assert pulled.id == img.id
    finally:
        try:
            busybox.images.remove(f"{ref}:push")
        except docker.errors.ImageNotFound:
            pass


# --- garbage collection ----------------------------------------------------------------


def push_image(url, repo, tag, layer):
    for blob in (layer, b"{}"):
        assert call(f"{url}/v2/{repo}/blobs/uploads/?digest={sha(blob)}", "POST", blob)[0] == 201
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(b"{}"), "size": 2},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer),
                     "size": len(layer)}]}
    body = json.dumps(m).encode()
    assert call(f"{url}/v2/{repo}/manifests/{tag}", "PUT", body, {"Content-Type": OCI_MANIFEST})[0] == 201
    return sha(body)


def test_online_gc_keeps_what_is_referenced_or_in_flight(tmp_path):
    reg = stores.Registry(storage.LocalDriver(str(tmp_path / "g")), gc_grace=3600)
    inst = Instance(tmp_path, f"file://{tmp_path / 'g'}")
    try:
        keep = push_image(inst.url, "t/keep", "1", b"kept layer")
        drop = push_image(inst.url, "t/drop", "1", b"dropped layer")
        assert call(f"{inst.url}/v2/t/drop/manifests/{drop}", "DELETE")[0] == 202
        # a push in flight: its layer is uploaded, its manifest not yet put
        assert call(f"{inst.url}/v2/t/new/blobs/uploads/?digest={sha(b'in flight')}", "POST", b"in flight")[0] == 201
        later = time.time() + 7200  # everything is now older than the grace period ...
        # ... but the push in flight checks its blobs again before it puts the manifest (HEAD refreshes the link)
        reg.driver.put(layout.layer("t/new", sha(b"in flight")), b"")
        os.utime(reg.driver.local_path(layout.layer("t/new", sha(b"in flight"))), (later, later))
        out = reg.gc(now=later)
        assert sha(b"dropped layer") in out["removed"] and drop in out["removed"]
        assert sha(b"kept layer") not in out["removed"] and keep not in out["removed"]
        assert sha(b"in flight") not in out["removed"]
        assert call(f"{inst.url}/v2/t/keep/manifests/1")[0] == 200
        assert call(f"{inst.url}/v2/t/keep/blobs/{sha(b'kept layer')}")[2] == b"kept layer"
    finally:
        inst.stop()


def test_blob_gets_redirect_to_the_datanode_on_hdfs(hdfs, tmp_path):
    """--redirect-blobs: a blob GET is answered with the DataNode's WebHDFS
    URL (the bytes do not pass through the registry); HEAD and Range are served here."""
    port = free_port()
    inst = Instance.__new__(Instance)
    inst.port, inst.url = port, f"http://127.0.0.1:{port}"
    inst.daemon = Daemon([sys.executable, "-m", "bay_salt.registry.server", "--storage",
                          hdfs.storage_url("redirect"), "--host", "127.0.0.1", "--port", str(port),
                          "--redirect-blobs"], tmp_path / "reg.log")
    wait_for(lambda: inst.daemon.alive() and _up(inst.url), 30, "registry")
    try:
        data = os.urandom(100000)
        assert call(f"{inst.url}/v2/t/r/blobs/uploads/?digest={sha(data)}", "POST", data)[0] == 201
        req = urllib.request.Request(f"{inst.url}/v2/t/r/blobs/{sha(data)}")
        opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                                  {"redirect_request": lambda *a, **k: None}))
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(req, timeout=10)
        assert err.value.code == 307 and "/webhdfs/v1/" in err.value.headers["Location"]
        assert call(f"{inst.url}/v2/t/r/blobs/{sha(data)}")[2] == data  # followed: the DataNode serves it
        st, _, part = call(f"{inst.url}/v2/t/r/blobs/{sha(data)}", headers={"Range": "bytes=5-9"})
        assert st == 206 and part == data[5:10]
    finally:
        inst.daemon.stop()


def test_blob_cache_over_hdfs_serves_only_what_storage_still_has(hdfs, tmp_path):
    """--cache-dir: the first GET of a blob fills the instance's cache, later
    GETs (and ranges) are served from it; concurrent first GETs fill it once;
    a deleted blob is not served from the cache; a cache file of the wrong
    size is ignored and replaced; bytes in storage that do not match their
    digest are never sent whole nor kept."""
    import concurrent.futures

    cache = tmp_path / "cache"
    inst = Instance(tmp_path, hdfs.storage_url("cached"), args=["--cache-dir", str(cache)])
    try:
        data = os.urandom(3 << 20)
        digest = sha(data)
        cached = cache / "sha256" / digest.split(":")[1]
        assert call(f"{inst.url}/v2/t/c/blobs/uploads/?digest={digest}", "POST", data)[0] == 201
        assert not cached.exists()
        st, headers, body = call(f"{inst.url}/v2/t/c/blobs/{digest}")
        assert st == 200 and body == data and headers["Docker-Content-Digest"] == digest
        wait_for(cached.exists, 10, "the cache fill to be kept")  # kept once the last byte is sent
        assert cached.read_bytes() == data
        st, headers, body = call(f"{inst.url}/v2/t/c/blobs/{digest}")
        assert st == 200 and body == data and "Last-Modified" in headers  # from the file (sendfile)
        st, headers, part = call(f"{inst.url}/v2/t/c/blobs/{digest}", headers={"Range": "bytes=100-199"})
        assert st == 206 and part == data[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(data)}"

        # the same bytes in another repository: served only once linked there
        assert call(f"{inst.url}/v2/t/other/blobs/{digest}")[0] == 404

        # deleted: storage says no, whatever the cache holds
        assert call(f"{inst.url}/v2/t/c/blobs/{digest}", "DELETE")[0] == 202
        assert cached.exists() and call(f"{inst.url}/v2/t/c/blobs/{digest}")[0] == 404

        # eight clients at once, a blob not cached yet: all get it, one fill, no leftovers
        other = os.urandom(2 << 20)
        assert call(f"{inst.url}/v2/t/c/blobs/uploads/?digest={sha(other)}", "POST", other)[0] == 201
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda _: call(f"{inst.url}/v2/t/c/blobs/{sha(other)}"), range(8)))
        assert all(st == 200 and body == other for st, _, body in got)
        assert sorted(p.name for p in (cache / "sha256").iterdir()) == sorted(
            [digest.split(":")[1], sha(other).split(":")[1]])

        # a damaged cache file (wrong size) is not served, and is filled again
        damaged = cache / "sha256" / sha(other).split(":")[1]
        damaged.write_bytes(b"short")
        assert call(f"{inst.url}/v2/t/c/blobs/{sha(other)}")[2] == other
        wait_for(lambda: damaged.stat().st_size == len(other), 10, "the cache fill to be kept")
        assert damaged.read_bytes() == other

        # storage holding other bytes under a digest (written behind the registry's back): the
        # fill does not match, so no client gets the whole body and nothing is kept
        import http.client

        import hdfs as hdfs_client

        third = os.urandom(1 << 20)
        assert call(f"{inst.url}/v2/t/c/blobs/uploads/?digest={sha(third)}", "POST", third)[0] == 201
        hdfs_client.InsecureClient(f"http://127.0.0.1:{hdfs.http}", user="root").write(
            f"/cached/blobs/sha256/{sha(third).split(':')[1]}/data", os.urandom(len(third)), overwrite=True)
        with pytest.raises(http.client.IncompleteRead):
            call(f"{inst.url}/v2/t/c/blobs/{sha(third)}")
        assert not (cache / "sha256" / sha(third).split(":")[1]).exists()
        assert [p.name for p in (cache / "sha256").iterdir() if ".tmp-" in p.name] == []
    finally:
        inst.stop()
