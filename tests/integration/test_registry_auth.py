"""The registry closed by default: token authentication as Docker and OCI
clients expect it, over TLS, with grants from the services pillar (owners
push their own repositories, nodes pull, admins everything). Real server
processes, real clients (skopeo, the host's docker); every refusal changes
nothing. As on a registry node, the TLS ends in a real HAProxy in front of
the instance, which serves plain HTTP on a UNIX socket (``--tls-proxied``)."""

import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from bay_salt.cluster import pki
from bay_salt.cluster.demo import ensure_busybox
from bay_salt.cluster.progress import Progress
from bay_salt.node.nodefiles import registry_tls_section
from bay_salt.registry import auth
from tests.support.daemons import Daemon, free_port, wait_for

PASSWORDS = {"alice": "wonderland", "node": "pull-only", "root": "platform"}
SERVICES = {"demo": {"image": "127.0.0.1:5000/bay/demo:1", "owners": ["alice"], "groups": {}}}


#: what runs beside the registry node's frontend (bay_salt.node.nodefiles.registry_tls_section)
HAPROXY = """global
    maxconn 1000
defaults
    timeout connect 5s
"""


class Registry:
    def __init__(self, tmp, ttl=300, anonymous_pull=False, storage=None, args=()):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"https://{self.host}"
        authority = pki.ca("test CA")
        cert = pki.leaf(authority, "registry", ["localhost"], ["127.0.0.1"])
        self.certs = tmp / "certs"
        self.certs.mkdir()
        (self.certs / "ca.crt").write_text(authority.cert_pem)  # skopeo's --cert-dir layout
        (tmp / "tls.pem").write_text(cert.cert_pem)
        (tmp / "tls-key.pem").write_text(cert.key_pem)
        policy = {"mode": "token", "secret": "a-secret-every-instance-shares-0123", "token_ttl": ttl,
                  "anonymous_pull": anonymous_pull,
                  "users": {u: auth.hash_password(p) for u, p in PASSWORDS.items()},
                  "grants": auth.grants_for(SERVICES, "127.0.0.1:5000", ["root"], "node")}
        (tmp / "auth.json").write_text(json.dumps(policy))
        self.root = tmp / "data"
        backend = tmp / "reg.sock"  # as on a registry node: a UNIX socket behind HAProxy
        self.daemon = Daemon([sys.executable, "-m", "bay_salt.registry.server", "--storage",
                              storage or f"file://{self.root}", "--unix-socket", str(backend),
                              "--auth-file", str(tmp / "auth.json"), "--tls-proxied", *args], tmp / "reg.log")
        (tmp / "reg.pem").write_text(cert.cert_pem + cert.key_pem)
        (tmp / "haproxy.cfg").write_text(HAPROXY + registry_tls_section(f"127.0.0.1:{self.port}", str(tmp / "reg.pem"),
                                                                         str(backend)))
        self.haproxy = Daemon(["haproxy", "-db", "-f", str(tmp / "haproxy.cfg")], tmp / "haproxy.log")
        self.ctx = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        wait_for(lambda: self.daemon.alive() and self.call("/v2/")[0] == 401, 30, "registry over TLS")

    def call(self, path, method="GET", body=None, headers=None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ctx) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def token(self, user, scope):
        headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}
        st, _, body = self.call(f"/token?service=bay-registry&scope={scope}", headers=headers)
        assert st == 200, body
        return {"Authorization": "Bearer " + json.loads(body)["token"]}

    def stop(self):
        self.haproxy.stop()
        self.daemon.stop()


@pytest.fixture
def reg(tmp_path):
    r = Registry(tmp_path)
    yield r
    r.stop()


def sha(data):
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_nothing_without_credentials_and_the_challenge_says_where_to_get_them(reg):
    st, headers, body = reg.call("/v2/")
    assert st == 401 and json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"
    assert headers["WWW-Authenticate"] == f'Bearer realm="https://{reg.host}/token",service="bay-registry"'
    st, headers, _ = reg.call(f"/v2/bay/demo/blobs/uploads/?digest={sha(b'x')}", "POST", b"x")
    assert st == 401 and 'scope="repository:bay/demo:pull,push"' in headers["WWW-Authenticate"]
    assert reg.call("/v2/_catalog")[0] == 401
    assert not reg.root.exists() or not list(reg.root.rglob("data"))
    # wrong password: no token at all
    bad = {"Authorization": "Basic " + base64.b64encode(b"alice:guess").decode()}
    assert reg.call("/token?scope=repository:bay/demo:pull", headers=bad)[0] == 401


def test_tls_ends_in_haproxy_with_the_cipher_gos_clients_and_servers_pick(reg):
    """AES-128-GCM, as Distribution (Go) picks on AES hardware; AES-256 and
    ChaCha20 still there for a client that offers only those."""
    import socket

    def negotiated():  # Python's client offers OpenSSL's order: AES-256 first
        ctx = ssl.create_default_context(cafile=str(reg.certs / "ca.crt"))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        with socket.create_connection(("127.0.0.1", reg.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.cipher()[0], tls.version()

    assert negotiated() == ("TLS_AES_128_GCM_SHA256", "TLSv1.3")
    for suite in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):  # a client that offers one only
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{reg.port}", "-tls1_3", "-ciphersuites",
                              suite, "-CAfile", str(reg.certs / "ca.crt"), "-brief"], input="", capture_output=True,
                             text=True, timeout=10)
        assert f"Ciphersuite: {suite}" in out.stderr + out.stdout, out.stderr


def test_owners_push_their_own_repositories_only(reg):
    mine = reg.token("alice", "repository:bay/demo:pull,push")
    assert reg.call(f"/v2/bay/demo/blobs/uploads/?digest={sha(b'layer')}", "POST", b"layer", mine)[0] == 201
    other = reg.token("alice", "repository:bay/other:pull,push")  # granted nothing there
    st, headers, _ = reg.call(f"/v2/bay/other/blobs/uploads/?digest={sha(b'x')}", "POST", b"x", other)
    assert st == 401 and "insufficient scope" in _.decode()
    # nodes pull, never push; admins list the catalog
    node = reg.token("node", "repository:bay/demo:pull,push")
    assert reg.call(f"/v2/bay/demo/blobs/{sha(b'layer')}", headers=node)[2] == b"layer"
    assert reg.call(f"/v2/bay/demo/blobs/uploads/?digest={sha(b'y')}", "POST", b"y", node)[0] == 401
    assert reg.call("/v2/_catalog", headers=reg.token("root", "registry:catalog:*"))[0] == 200
    assert reg.call("/v2/_catalog", headers=reg.token("alice", "registry:catalog:*"))[0] == 401
    # a mount from a repository the user may not pull is an ordinary upload (202), never a link
    st, _, _ = reg.call(f"/v2/bay/demo/blobs/uploads/?mount={sha(b'layer')}&from=secret/repo", "POST", b"", mine)
    assert st == 202


def skopeo(*args, timeout=120):
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout)


def test_skopeo_and_docker_push_and_pull_with_credentials(reg, tmp_path):
    client = __import__("docker").from_env()
    ensure_busybox(client, Progress(quiet=True))
    creds = f"alice:{PASSWORDS['alice']}"
    ref = f"docker://{reg.host}/bay/demo:1"
    push = skopeo("copy", "--quiet", "--dest-creds", creds, "--dest-cert-dir", str(reg.certs),
                  "docker-daemon:bay-busybox:latest", ref)
    assert push.returncode == 0, push.stderr
    denied = skopeo("copy", "--quiet", "--dest-creds", creds, "--dest-cert-dir", str(reg.certs),
                    "docker-daemon:bay-busybox:latest", f"docker://{reg.host}/bay/other:1")
    assert denied.returncode != 0
    wrong = skopeo("inspect", "--creds", "alice:guess", "--cert-dir", str(reg.certs), ref)
    assert wrong.returncode != 0
    pull = skopeo("copy", "--quiet", "--src-creds", f"node:{PASSWORDS['node']}", "--src-cert-dir", str(reg.certs),
                  ref, f"oci:{tmp_path / 'oci'}:1")
    assert pull.returncode == 0, pull.stderr
    # the host's docker: its certs.d for this registry, a login of its own
    certs_d = __import__("pathlib").Path(f"/etc/docker/certs.d/{reg.host}")
    certs_d.mkdir(parents=True, exist_ok=True)
    (certs_d / "ca.crt").write_text((reg.certs / "ca.crt").read_text())
    env = dict(__import__("os").environ, DOCKER_CONFIG=str(tmp_path / "docker"))
    try:
        login = subprocess.run(["docker", "login", "-u", "node", "--password-stdin", reg.host], env=env,
                               input=PASSWORDS["node"], capture_output=True, text=True)
        assert login.returncode == 0, login.stderr
        pulled = subprocess.run(["docker", "pull", f"{reg.host}/bay/demo:1"], env=env, capture_output=True,
                                text=True)
        assert pulled.returncode == 0, pulled.stderr
        pushed = subprocess.run(["docker", "push", f"{reg.host}/bay/demo:1"], env=env, capture_output=True,
                                text=True)
        assert pushed.returncode != 0  # the nodes' account pulls, never pushes
    finally:
        subprocess.run(["docker", "rmi", "-f", f"{reg.host}/bay/demo:1"], capture_output=True)
        __import__("shutil").rmtree(certs_d, ignore_errors=True)


def test_pulls_go_on_after_a_token_expires(tmp_path):
    reg = Registry(tmp_path, ttl=2)
    try:
        creds = ["--creds", f"alice:{PASSWORDS['alice']}", "--cert-dir", str(reg.certs)]
        client = __import__("docker").from_env()
        ensure_busybox(client, Progress(quiet=True))
        assert skopeo("copy", "--quiet", "--dest-creds", creds[1], "--dest-cert-dir", str(reg.certs),
                      "docker-daemon:bay-busybox:latest", f"docker://{reg.host}/bay/demo:1").returncode == 0
        first = skopeo("inspect", *creds, f"docker://{reg.host}/bay/demo:1")
        token = reg.token("node", "repository:bay/demo:pull")
        assert reg.call("/v2/bay/demo/manifests/1", headers=token)[0] == 200
        time.sleep(3)
        # an expired token is refused with the challenge, so a client knows to ask again
        st, headers, _ = reg.call("/v2/bay/demo/manifests/1", headers=token)
        assert st == 401 and headers["WWW-Authenticate"].startswith("Bearer realm=")
        assert reg.call("/v2/bay/demo/manifests/1", headers=reg.token("node", "repository:bay/demo:pull"))[0] == 200
        again = skopeo("inspect", *creds, f"docker://{reg.host}/bay/demo:1")
        assert first.returncode == again.returncode == 0, again.stderr
    finally:
        reg.stop()
