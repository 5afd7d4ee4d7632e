"""Third-party OCI clients against Bay's registry, closed as Bay runs it (TLS,
token auth): crane, regctl and oras (Go, built once by scripts/oci-clients.sh)
push and pull with credentials, attach and discover referrers, and are refused
where their user has no grant; then ten of them write tags and referrers at
once while others list, over both storage drivers."""

import concurrent.futures
import json
import os
import subprocess
import tarfile
import time

import pytest

from tests.helpers import CHECKOUT
from tests.integration.test_registry_auth import PASSWORDS, Registry


@pytest.fixture(scope="module")
def bins():
    out = subprocess.run(["bash", str(CHECKOUT / "scripts" / "oci-clients.sh")], capture_output=True, text=True,
                         timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


class Clients:
    """crane, regctl and oras logged in to ``reg`` as ``user``, each with a
    configuration of its own under ``home`` (nothing of the host's)."""

    def __init__(self, bins, reg, home, user="alice"):
        self.bins, self.reg, self.home = bins, reg, home
        home.mkdir(exist_ok=True)
        ca = str(reg.certs / "ca.crt")
        self.env = dict(os.environ, HOME=str(home), DOCKER_CONFIG=str(home / "docker"), SSL_CERT_FILE=ca)
        self.oras_login = ["--registry-config", str(home / "oras.json"), "--ca-file", ca]
        password = PASSWORDS[user]
        self.ok("crane", "auth", "login", reg.host, "-u", user, "--password-stdin", input=password)
        self.ok("regctl", "registry", "set", reg.host, "--cacert", (reg.certs / "ca.crt").read_text())
        self.ok("regctl", "registry", "login", reg.host, "-u", user, "--pass-stdin", input=password)
        self.ok("oras", "login", reg.host, "-u", user, "--password-stdin", *self.oras_login, input=password)

    def run(self, tool, *args, input=None):
        return subprocess.run([f"{self.bins}/{tool}", *args], env=self.env, input=input, capture_output=True,
                              text=True, timeout=120, cwd=self.home)

    def ok(self, tool, *args, input=None):
        res = self.run(tool, *args, input=input)
        assert res.returncode == 0, (tool, args, res.stderr[-1500:])
        return res.stdout

    def oras(self, verb, *args):
        return self.run("oras", verb, *self.oras_login, *args)


def layer_tar(path, content: bytes):
    src = path.with_suffix(".txt")
    src.write_bytes(content)
    with tarfile.open(path, "w") as t:
        t.add(src, arcname="hello.txt")
    return str(path)


@pytest.fixture
def reg(tmp_path):
    r = Registry(tmp_path)
    yield r
    r.stop()


def test_crane_regctl_and_oras_push_and_pull_with_credentials(bins, reg, tmp_path):
    alice = Clients(bins, reg, tmp_path / "alice")
    repo = f"{reg.host}/bay/demo"
    # crane: an image from a layer, pulled back, listed
    alice.ok("crane", "append", "-f", layer_tar(tmp_path / "layer.tar", b"hello from crane"), "-t", f"{repo}:crane")
    alice.ok("crane", "pull", f"{repo}:crane", str(tmp_path / "pulled.tar"))
    with tarfile.open(tmp_path / "pulled.tar") as t:
        assert t.getnames()
    # regctl: copy within the registry (a cross-repository-free mount of every blob), tags
    alice.ok("regctl", "image", "copy", f"{repo}:crane", f"{repo}:regctl")
    assert {"crane", "regctl"} <= set(alice.ok("regctl", "tag", "ls", repo).split())
    assert alice.ok("crane", "digest", f"{repo}:crane") == alice.ok("crane", "digest", f"{repo}:regctl")
    # oras: an artifact, pulled back; a referrer attached and discovered
    (tmp_path / "alice" / "note.txt").write_text("an artifact")
    assert alice.oras("push", f"{repo}:oras", "note.txt:text/plain").returncode == 0
    pulled = alice.oras("pull", f"{repo}:oras", "-o", str(tmp_path / "oras-out"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "oras-out" / "note.txt").read_text() == "an artifact"
    (tmp_path / "alice" / "sig.txt").write_text("signed")
    attached = alice.oras("attach", "--artifact-type", "application/x-bay-test", f"{repo}:crane", "sig.txt")
    assert attached.returncode == 0, attached.stderr
    found = alice.oras("discover", "--format", "json", f"{repo}:crane")
    assert found.returncode == 0 and "application/x-bay-test" in found.stdout, found.stderr
    refs = alice.ok("regctl", "artifact", "list", f"{repo}:crane", "--format", "{{json .}}")
    assert [d["artifactType"] for d in json.loads(refs)["descriptors"]] == ["application/x-bay-test"]

    # no grant: alice owns bay/demo only; the nodes' account pulls and never pushes
    denied = alice.run("crane", "append", "-f", str(tmp_path / "layer.tar"), "-t", f"{reg.host}/bay/other:x")
    assert denied.returncode != 0 and "UNAUTHORIZED" in denied.stderr.upper()
    node = Clients(bins, reg, tmp_path / "node", user="node")
    node.ok("crane", "pull", f"{repo}:crane", str(tmp_path / "node.tar"))
    assert node.oras("pull", f"{repo}:oras", "-o", str(tmp_path / "node-out")).returncode == 0
    assert node.run("crane", "tag", f"{repo}:crane", "stolen").returncode != 0
    assert node.oras("attach", "--artifact-type", "application/x-evil", f"{repo}:crane", "/etc/hostname").returncode
    assert node.run("regctl", "tag", "delete", f"{repo}:regctl").returncode != 0
    assert {"crane", "regctl", "oras"} <= set(alice.ok("regctl", "tag", "ls", repo).split())
    # without credentials: nothing at all
    anonymous = dict(alice.env, HOME=str(tmp_path / "nobody"), DOCKER_CONFIG=str(tmp_path / "nobody"))
    res = subprocess.run([f"{bins}/crane", "ls", repo], env=anonymous, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0


@pytest.fixture(params=["filesystem", "hdfs"])
def anyreg(request, tmp_path):
    storage = None
    args = ()
    if request.param == "hdfs":
        hdfs = request.getfixturevalue("hdfs")
        storage = hdfs.storage_url(f"clients-{os.getpid()}-{time.monotonic_ns()}")
        args = ("--cache-dir", str(tmp_path / "cache"))
    r = Registry(tmp_path, storage=storage, args=args)
    yield r
    r.stop()


def test_ten_clients_write_tags_and_referrers_while_others_list(bins, anyreg, tmp_path):
    """crane tags and oras attaches from ten writers at once while regctl and
    oras list: listings show committed tags and whole referrers only, and no
    client ever gets a 5xx."""
    reg = anyreg
    alice = Clients(bins, reg, tmp_path / "alice")
    repo = f"{reg.host}/bay/demo"
    alice.ok("crane", "append", "-f", layer_tar(tmp_path / "layer.tar", b"base"), "-t", f"{repo}:base")
    (tmp_path / "alice" / "sig.txt").write_text("signed")
    stop, listings, failures = [False], [], []

    def writer(k):
        for n in range(4):
            res = alice.run("crane", "tag", f"{repo}:base", f"w{k}-{n}")
            if res.returncode:
                failures.append(("crane tag", res.stderr[-300:]))
        res = alice.oras("attach", "--artifact-type", f"application/x-w{k}", f"{repo}:base", "sig.txt")
        if res.returncode:
            failures.append(("oras attach", res.stderr[-300:]))

    def reader():
        while not stop[0]:
            for res in (alice.run("regctl", "tag", "ls", repo),
                        alice.oras("discover", "--format", "json", f"{repo}:base")):
                listings.append(res)

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        readers = [pool.submit(reader) for _ in range(2)]
        list(pool.map(writer, range(10)))
        stop[0] = True
        for r in readers:
            r.result()
    assert not failures, failures[:3]
    assert listings and all(r.returncode == 0 for r in listings), [r.stderr for r in listings if r.returncode][:3]
    for r in listings:
        assert "tmp" not in r.stdout, r.stdout[:500]
    tags = set(alice.ok("regctl", "tag", "ls", repo).split())
    assert {f"w{k}-{n}" for k in range(10) for n in range(4)} <= tags
    found = json.loads(alice.oras("discover", "--format", "json", f"{repo}:base").stdout)
    assert len(found.get("referrers") or found.get("manifests") or []) == 10, found
    # blobs over TLS: on HDFS the first read fills the instance's cache, the second is sent from it
    for k in range(2):
        alice.ok("crane", "export", f"{repo}:base", str(tmp_path / f"fs{k}.tar"))
        with tarfile.open(tmp_path / f"fs{k}.tar") as t:
            assert t.extractfile("hello.txt").read() == b"base"
