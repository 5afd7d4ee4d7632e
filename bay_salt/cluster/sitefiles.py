"""A site's secrets, certificates, pillar and master configuration, made
in one place for ``bay up`` (a local cluster) and ``bay site init`` (real
servers).

Everything secret goes into a pillar file targeted at the nodes that need
it (:func:`secret_pillars`), or into a file for one host (:func:`node_files`,
:func:`master_files`: path -> (content, mode)). ``bay up`` puts the hosts'
files into its containers; ``bay site init DIR`` writes them under
``DIR/hosts/ID/`` for the operator (or the bootstrap playbook's
``bay_site``) to copy onto each server.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import secrets
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bay_salt.cluster import keys, pki
from bay_salt.logs.operations import KEY_FILE as LOGS_KEY_FILE
from bay_salt.master.siteview import TOKEN_FILE as CONTROLLER_TOKEN_FILE
from bay_salt.metrics.platform import MASTER_TLS
from bay_salt.model import settings
from bay_salt.node import minion

#: where a master serves the formula (``SRV/states``) and the pillar (``SRV/pillar``) from
SRV = "/srv/bay"
#: where each node's Consul TLS files go (the pillar names them)
CONSUL_TLS = {"ca_file": "/etc/consul.d/tls/ca.pem", "cert_file": "/etc/consul.d/tls/server.pem",
              "key_file": "/etc/consul.d/tls/server-key.pem"}
#: the Consul servers' HTTPS API on their address (the masters' way in; HTTP is on loopback)
CONSUL_HTTPS_PORT = 8501
#: each node's certificate for metrics and Kafka (the agent shows it to carbon; the
#: monitoring node serves carbon and graphite-web with it; the kafka node its listener)
MONITORING_TLS = {"cert_file": "/etc/bay/tls/node.pem", "key_file": "/etc/bay/tls/node-key.pem",
                  "ca_file": "/etc/bay/ca.pem"}
#: the registry's TLS files, and the site's CA, on every node (each pulls through its own HAProxy)
REGISTRY_TLS = {"cert_file": "/etc/bay/registry/tls.pem", "key_file": "/etc/bay/registry/tls-key.pem",
                "ca_file": "/etc/bay/ca.pem"}
REGISTRY_PORT = 5000
#: the registry's admin account (it pushes images; its password is the operator's)
REGISTRY_ADMIN = "bay-admin"
#: who may look at graphite-web, and where the master keeps that password (the alert evaluator reads with it)
GRAPHITE_USER = "bay"
GRAPHITE_PASSWORD_FILE = "/etc/bay/graphite-web.password"
#: the controller's Consul token on every master (the runner and the engines read it, root only)
CONSUL_TOKEN_FILE = CONTROLLER_TOKEN_FILE
#: PAM groups on the masters: service owners, and the platform team
OWNERS_GROUP, ADMINS_GROUP = "bay-owners", "bay-admins"
#: what an owner may run (the runner checks the service is theirs)
OWNER_RUNNERS = [r"bay\.(deploy|plan|scale|status|alerts|silence|silences|unsilence|logs|archived_logs|rollback|history|"
                 r"remove|restart|describe|events|search_logs)"]
#: the script Salt runs PAM checks with (the Python that has Salt: see :func:`pam_python_script`)
PAM_PYTHON = "/usr/local/bin/salt-pam-python"
#: Consul's datacenter (its servers' certificates name ``server.DATACENTER.consul``)
DATACENTER = "bay"
#: by default, how many nodes (the first ones) run a Consul server, a registry, Graphite, Kafka
DEFAULT_COUNTS = {"consul": 3, "registry": 2, "monitoring": 1, "kafka": 1}


def default_roles(k: int) -> list[str]:
    """The ``k``-th node's roles (from 0) when the site names none: every node
    a worker, the first two a registry, the first Graphite and Kafka."""
    return ["worker"] + [r for r in ("registry", "monitoring", "kafka") if k < DEFAULT_COUNTS[r]]


class InventoryError(ValueError):
    """What is wrong with a site's description, in one line."""


@dataclass(frozen=True, repr=False)
class Secrets:
    """What a site keeps secret: Consul's tokens, the registry's token
    secret and passwords (the admin's and the nodes'), graphite-web's, the
    Kafka password and the logs signing key. Its repr names no value (it
    may end up in a traceback or a test report)."""

    tokens: dict[str, str]
    registry_secret: str
    node_password: str
    admin_password: str
    graphite_password: str = ""
    graphite_secret_key: str = ""
    kafka_password: str = ""
    #: the master signs log tokens with the private key; the nodes check them with the public one
    logs_private_key: str = ""
    logs_public_key: str = ""
    #: each node's own Consul agent token (node id -> SecretID)
    node_tokens: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return "Secrets(<hidden>)"

    @classmethod
    def new(cls, nodes: list[str] | tuple[str, ...] = ()) -> Secrets:
        from bay_salt.logs.tokens import new_key_pair

        private, public = new_key_pair()
        return cls({role: str(uuid.uuid4()) for role in settings.ACL_ROLES}, secrets.token_hex(32),
                   secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(24),
                   secrets.token_urlsafe(40), secrets.token_urlsafe(24), private, public,
                   {n: str(uuid.uuid4()) for n in nodes})


def gossip_key() -> str:
    """Consul's gossip encryption key."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def crypt_sha512(password: str) -> str:
    """A SHA-512 crypt hash (what HAProxy's userlist checks), made by openssl."""
    res = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True,
                         check=True)
    return res.stdout.strip()


def secret_pillars(s: Secrets, servers: list[str], registries: list[str],
                   monitors: list[str] | None = None) -> dict[str, str]:
    """The pillar files that give each secret only to the nodes that need it,
    and the top file that targets them: ``{file name: content}``."""
    from bay_salt.registry.auth import hash_password

    def tokens(roles):
        return {"acl": {"tokens": {r: s.tokens[r] for r in roles}}}

    node = {"bay": {"consul": tokens(["reader"]), "registry": {"auth": {"node_password": s.node_password}}}}
    if s.kafka_password:  # every node's log relay writes to Kafka
        node["bay"]["kafka"] = {"password": s.kafka_password}
    # the servers create every role's token and every node's own
    server = {"bay": {"consul": {"acl": {"tokens": dict(s.tokens), "node_tokens": dict(s.node_tokens)}}}}
    registry = {"bay": {"consul": tokens(["registry"]), "registry": {"auth": {
        "secret": s.registry_secret,
        "users": {"node": hash_password(s.node_password), REGISTRY_ADMIN: hash_password(s.admin_password)}}}}}
    top = {"base": {"*": ["bay", "services", "alerts", "site", "bay-secrets-node"],
                    ",".join(servers): [{"match": "list"}, "bay-secrets-server"],
                    ",".join(registries): [{"match": "list"}, "bay-secrets-registry"]}}
    out = {"bay-secrets-node.sls": yaml.safe_dump(node), "bay-secrets-server.sls": yaml.safe_dump(server),
           "bay-secrets-registry.sls": yaml.safe_dump(registry)}
    # each node its own agent token (it may write that node only), no other's; a node joined
    # later without one (the bootstrap playbook's) gets the shared agent token
    for n, secret in sorted(s.node_tokens.items()):
        top["base"].setdefault(n, [{"match": "list"}]).append(f"bay-secrets-node-{n}")
        out[f"bay-secrets-node-{n}.sls"] = yaml.safe_dump({"bay": {"consul": {"acl": {"node_tokens": {n: secret}}}}})
    if s.node_tokens:
        top["base"][f"* and not L@{','.join(sorted(s.node_tokens))}"] = [{"match": "compound"}, "bay-secrets-agent"]
    else:
        top["base"]["*"].append("bay-secrets-agent")
    out["bay-secrets-agent.sls"] = yaml.safe_dump({"bay": {"consul": tokens(["agent"])}})
    if monitors and s.graphite_password:
        top["base"].setdefault(",".join(monitors), [{"match": "list"}]).append("bay-secrets-monitoring")
        out["bay-secrets-monitoring.sls"] = yaml.safe_dump({"bay": {"monitoring": {
            "secret_key": s.graphite_secret_key, "web_users": {GRAPHITE_USER: crypt_sha512(s.graphite_password)}}}})
    return {"top.sls": yaml.safe_dump(top, sort_keys=False), **out}


def topology_pillar(cluster: str, nodes: dict[str, dict], consul_servers: list[str], gossip: str,
                    logs_public_key: str = "") -> dict:
    """The ``bay`` pillar a site's every node shares: who is who (``nodes``:
    id -> ``{address, roles}``), Consul's servers and gossip key, where the
    TLS files are, the log tokens' public key, the registry each node pulls
    through (its own HAProxy) and the registry's admin account."""
    pillar = {"cluster": cluster, "nodes": nodes,
              "consul": {"servers": list(consul_servers), "encrypt": gossip, "tls": dict(CONSUL_TLS),
                         "https_port": CONSUL_HTTPS_PORT},
              "monitoring": {"tls": dict(MONITORING_TLS)},
              # SASL_SSL with the node certificate (it names the node's address)
              "kafka": {"tls": dict(MONITORING_TLS)},
              "logs": {"token_public_key": logs_public_key}}
    if nodes:
        pillar["docker"] = {"registry": f"127.0.0.1:{REGISTRY_PORT}"}
        pillar["registry"] = {"tls": dict(REGISTRY_TLS)}
        pillar["admins"] = [REGISTRY_ADMIN]
    return pillar


def master_config(master_id: str, advertise: str, pam_python: str = PAM_PYTHON) -> dict:
    """A master's configuration (``/etc/salt/master.d/bay.conf``): every
    master the same (hot/hot multi-master) but its id and where the nodes
    reach it (``bay_advertise``: the lock of the role it leads names it, and
    the nodes' agents send it their events)."""
    return {
        "id": master_id,
        "bay_advertise": advertise,
        "interface": "0.0.0.0",
        "auto_accept": False,
        "open_mode": False,
        "presence_events": True,
        # the formula only: Bay's loader modules come with the bay-salt package
        # (salt.loader entry point) on the master and every minion, never synced
        "file_roots": {"base": [f"{SRV}/states"]},
        # the control loop (bay_salt.control.engine): replaces dead containers, handles lost nodes, autoscales
        # ... and the alert evaluator (bay_salt.alerts.engine): reads graphite-web with this login
        "engines": [{"bay_controller": {}},
                    {"bay_alerts": {"graphite_user": GRAPHITE_USER, "graphite_password_file": GRAPHITE_PASSWORD_FILE}}],
        "pillar_roots": {"base": [f"{SRV}/pillar"]},
        # who may run what (PAM accounts on the master): owners only Bay's service runners, and the
        # runner itself lets each operate only the services whose owners name them
        "external_auth": {"pam": {f"{OWNERS_GROUP}%": [{"@runner": OWNER_RUNNERS}],
                                  f"{ADMINS_GROUP}%": [".*", "@runner", "@wheel", "@jobs"]}},
        # Salt checks PAM passwords in a child Python, by default the system's
        # /usr/bin/python3, which has no Salt to import: the venv's has
        "auth.pam.python": pam_python,
        "worker_threads": 4,
        "timeout": 30,
        # a minion cut off is known (and its connections renewed) in seconds, not after 300 s
        **minion.KEEPALIVE,
        "log_level_logfile": "info",
    }


def pam_python_script(venv: str) -> str:
    """What :data:`PAM_PYTHON` holds: Salt resolves symlinks, so a link to
    the venv's python3 would run the system's, which cannot import Salt."""
    return f'#!/bin/sh\nexec {venv}/bin/python3 "$@"\n'


# --- certificates -----------------------------------------------------------------------------


def tls_files(authority: pki.Pair, name: str, ips: list[str], where: dict) -> dict:
    """A certificate for ``name`` (and its addresses), with the CA: path -> (content, mode)."""
    cert = pki.leaf(authority, name, [name, "localhost"], ["127.0.0.1", *ips])
    return {where["ca_file"]: (authority.cert_pem, 0o644), where["cert_file"]: (cert.cert_pem, 0o644),
            where["key_file"]: (cert.key_pem, 0o600)}


def consul_tls_files(authority: pki.Pair, address: str, datacenter: str = DATACENTER) -> dict:
    """A node's Consul TLS files (the key root only until bay.consul gives the
    consul group read access): the server name RPC checks, and the node's
    address, which the masters' HTTPS checks."""
    server = f"server.{datacenter}.consul"
    cert = pki.leaf(authority, server, [server, "localhost"], ["127.0.0.1", address])
    return {CONSUL_TLS["ca_file"]: (authority.cert_pem, 0o644), CONSUL_TLS["cert_file"]: (cert.cert_pem, 0o644),
            CONSUL_TLS["key_file"]: (cert.key_pem, 0o600)}


def registry_tls_files(authority: pki.Pair, addresses: list[str], dns: list[str] = ()) -> dict:
    """The registry's certificate (every address it is reached at), with the CA."""
    cert = pki.leaf(authority, "bay-registry", ["localhost", *dns], ["127.0.0.1", *addresses])
    return {REGISTRY_TLS["ca_file"]: (authority.cert_pem, 0o644), REGISTRY_TLS["cert_file"]: (cert.cert_pem, 0o644),
            REGISTRY_TLS["key_file"]: (cert.key_pem, 0o600)}


def node_files(authority: pki.Pair, node: str, address: str) -> dict:
    """A node's own certificates: metrics/Kafka (its id and address) and Consul's."""
    return {**tls_files(authority, node, [address], MONITORING_TLS), **consul_tls_files(authority, address)}


def master_files(s: Secrets, master_keys: keys.KeyPair) -> dict:
    """What every master holds alike: the controller's Consul token,
    graphite-web's password, the logs signing key, the master key pair."""
    return {
        CONSUL_TOKEN_FILE: (s.tokens["controller"] + "\n", 0o600),
        GRAPHITE_PASSWORD_FILE: (s.graphite_password + "\n", 0o600),
        LOGS_KEY_FILE: (s.logs_private_key, 0o600),
        "/etc/salt/pki/master/master.pem": (master_keys.private_pem, 0o400),
        "/etc/salt/pki/master/master.pub": (master_keys.public_pem, 0o644),
    }


# --- bay site init ----------------------------------------------------------------------------


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Host:
    id: str
    address: str
    roles: tuple[str, ...] = ()


def parse_host(text: str, what: str = "--node") -> Host:
    """``ID=ADDRESS`` or ``ID=ADDRESS:ROLE,ROLE`` -> a Host (roles empty: the defaults)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise InventoryError(f"{what} {text!r}: expected ID=ADDRESS (or ID=ADDRESS:ROLE,ROLE)")
    if not _ID.match(name):
        raise InventoryError(f"{what} {text!r}: {name!r} is not a Salt minion id (letters, digits, '.', '_', '-')")
    address, _, roles = rest.partition(":")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise InventoryError(f"{what} {text!r}: {address!r} is not an IP address (certificates name the address)") from None
    got = tuple(r.strip() for r in roles.split(",") if r.strip())
    unknown = [r for r in got if r not in settings.ROLES]
    if unknown:
        raise InventoryError(f"{what} {text!r}: unknown role {unknown[0]!r} (known: {', '.join(settings.ROLES)})")
    return Host(name, address, got)


@dataclass(frozen=True)
class Inventory:
    cluster: str
    masters: tuple[Host, ...]
    nodes: tuple[Host, ...]

    @classmethod
    def parse(cls, cluster: str, masters: list[str], nodes: list[str]) -> Inventory:
        """The site from ``bay site init``'s options. Nodes without roles get
        what ``bay up`` gives its nodes: every node a worker, the first two a
        registry, the first Graphite and Kafka (then the first three run Consul's servers)."""
        if not _ID.match(cluster or ""):
            raise InventoryError(f"--name {cluster!r}: letters, digits, '.', '_', '-'")
        ms = tuple(parse_host(m, "--master") for m in masters)
        ns = tuple(parse_host(n, "--node") for n in nodes)
        if not ms:
            raise InventoryError("no --master: name each salt-master as ID=ADDRESS (two for a platform that survives one's loss)")
        if not ns:
            raise InventoryError("no --node: name each server as ID=ADDRESS (at least one)")
        seen: dict[str, str] = {}
        for h in ms + ns:
            for key, what in ((h.id, "id"), (h.address, "address")):
                if (what, key) in seen:
                    raise InventoryError(f"{what} {key!r} is named twice ({seen[(what, key)]} and {h.id})")
                seen[(what, key)] = h.id
        if not any(n.roles for n in ns):
            ns = tuple(Host(n.id, n.address, tuple(default_roles(k))) for k, n in enumerate(ns))
        elif not all(n.roles for n in ns):
            bare = next(n.id for n in ns if not n.roles)
            raise InventoryError(f"--node {bare}: give every node its roles, or none (then Bay chooses as `bay up` does)")
        if not any("registry" in n.roles for n in ns):
            raise InventoryError("no node has the role registry: nodes pull their images from it")
        return cls(cluster, ms, ns)

    def with_role(self, role: str) -> list[str]:
        return [n.id for n in self.nodes if role in n.roles]

    @property
    def consul_servers(self) -> list[str]:
        """The first three nodes (or one: Consul's servers want an odd count)."""
        count = 3 if len(self.nodes) >= 3 else 1
        return [n.id for n in self.nodes[:count]]


def write_tree(root: Path, files: dict) -> list[Path]:
    """``files`` (absolute path -> (content, mode)) under ``root``; the paths written."""
    out = []
    for path, (content, mode) in sorted(files.items()):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o777)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.chmod(target, mode & 0o777)
        out.append(target)
    return out


PLACEHOLDERS = {
    "services.sls": "# bay:services: the services (see the checkout's pillar/services.sls for every field)\n",
    "alerts.sls": "# bay:alerts (contacts, rules, the platform team): see pillar/bay.sls and docs/alerts.md\n",
    "site.sls": ("# the site's own changes to any bay: key (over bay.sls): see pillar/bay.sls, e.g.\n"
                 "# bay:\n#   registry: {storage: hdfs://NAMENODE:8020/bay/registry}\n"
                 "#   logs: {archive: {hdfs: hdfs://NAMENODE:8020/bay/logs}}\n"),
}


def init(target: Path, inv: Inventory, venv: str = "/opt/bay/venv") -> dict[str, list[Path]]:
    """Make a site in ``target`` (empty or absent): ``pillar/`` (serve it as
    the masters' ``SRV/pillar``), ``hosts/ID/`` (copy each onto its server's
    ``/``), ``pki/`` (the CA and its key: keep them offline) and
    ``secrets/`` (the operators' passwords). Nothing is overwritten."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InventoryError(f"{target} is not empty: `bay site init` never overwrites a site's secrets; "
                        "give it a new directory")
    s = Secrets.new([n.id for n in inv.nodes])
    authority = pki.ca(f"Bay {inv.cluster} CA")
    master_keys = keys.generate()
    pillar = secret_pillars(s, inv.consul_servers, inv.with_role("registry"), inv.with_role("monitoring"))
    topo = topology_pillar(inv.cluster, {n.id: {"address": n.address, "roles": list(n.roles)} for n in inv.nodes},
                           inv.consul_servers, gossip_key(), s.logs_public_key)
    pillar["bay.sls"] = yaml.safe_dump({"bay": topo}, sort_keys=False)
    pillar.update(PLACEHOLDERS)
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target, 0o700)
    written: dict[str, list[Path]] = {}
    written["pillar"] = write_tree(target / "pillar", {name: (text, 0o600) for name, text in pillar.items()})
    registry = registry_tls_files(authority, [n.address for n in inv.nodes])
    for n in inv.nodes:
        written[n.id] = write_tree(target / "hosts" / n.id, {**registry, **node_files(authority, n.id, n.address)})
    shared = master_files(s, master_keys)
    for m in inv.masters:
        written[m.id] = write_tree(target / "hosts" / m.id, {
            **shared, **tls_files(authority, m.id, [m.address], MASTER_TLS),
            "/etc/salt/master.d/bay.conf": (yaml.safe_dump(master_config(m.id, m.address), sort_keys=False), 0o644),
            PAM_PYTHON: (pam_python_script(venv), 0o755)})
    # ca.crt: the same, where skopeo's and Docker's --cert-dir look
    written["pki"] = write_tree(target / "pki", {"/ca.pem": (authority.cert_pem, 0o644),
                                                 "/ca.crt": (authority.cert_pem, 0o644),
                                                 "/ca-key.pem": (authority.key_pem, 0o600)})
    written["secrets"] = write_tree(target / "secrets", {
        "/registry-admin": (s.admin_password + "\n", 0o600), "/graphite-web": (s.graphite_password + "\n", 0o600)})
    return written


def _rewrite(path: Path, data: dict) -> None:
    """``path`` replaced by ``data`` (YAML, root only) in one rename."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


#: the roles a node added later may have (a registry or monitoring node changes what the others trust and target)
ADDABLE_ROLES = ("worker", "kafka", "mesos-agent")


def add_node(root: Path, host: Host) -> list[Path]:
    """One more server for the site in ``root`` (made by ``bay site init``, or a
    ``bay up`` cluster's state directory): its files in ``hosts/ID/`` from the
    site's CA, its entry in ``bay:nodes``, and its own Consul agent token
    (a Consul server creates it: ``state.sls_id bay-consul-acl bay.consul``)."""
    pillar_dir = root / "pillar"
    try:
        topo = yaml.safe_load((pillar_dir / "bay.sls").read_text())
        top = yaml.safe_load((pillar_dir / "top.sls").read_text())
        server = yaml.safe_load((pillar_dir / "bay-secrets-server.sls").read_text())
        authority = pki.Pair((root / "pki" / "ca.pem").read_text(), (root / "pki" / "ca-key.pem").read_text())
    except OSError as err:
        raise InventoryError(f"{root} is not a site ({err.filename} is missing): make one with `bay site init`") from None
    nodes = topo["bay"].setdefault("nodes", {})
    roles = list(host.roles) or ["worker"]
    extra = [r for r in roles if r not in ADDABLE_ROLES]
    if extra:
        raise InventoryError(f"--node {host.id}: role {extra[0]} is not added by add-node ({', '.join(ADDABLE_ROLES)} "
                             "are); a registry or monitoring node changes what every node trusts: edit the site's pillar")
    if host.id in nodes:
        raise InventoryError(f"{host.id} is a node of the site already")
    taken = {v.get("address"): n for n, v in nodes.items()}
    if host.address in taken:
        raise InventoryError(f"address {host.address} is {taken[host.address]}'s already")
    if (root / "hosts" / host.id).exists():
        raise InventoryError(f"{root}/hosts/{host.id} exists already: remove it first if it is stale")
    addresses = [v["address"] for v in nodes.values() if v.get("address")] + [host.address]
    written = write_tree(root / "hosts" / host.id, {**registry_tls_files(authority, addresses),
                                                   **node_files(authority, host.id, host.address)})
    token = str(uuid.uuid4())
    written += write_tree(pillar_dir, {f"/bay-secrets-node-{host.id}.sls": (yaml.safe_dump(
        {"bay": {"consul": {"acl": {"node_tokens": {host.id: token}}}}}), 0o600)})
    server["bay"]["consul"]["acl"].setdefault("node_tokens", {})[host.id] = token
    _rewrite(pillar_dir / "bay-secrets-server.sls", server)
    base = top["base"]
    base[host.id] = [{"match": "list"}, f"bay-secrets-node-{host.id}"]
    for key in [k for k in base if k.startswith("* and not L@")]:
        base[f"{key},{host.id}"] = base.pop(key)
    _rewrite(pillar_dir / "top.sls", top)
    nodes[host.id] = {"address": host.address, "roles": roles}
    _rewrite(pillar_dir / "bay.sls", topo)
    return written
