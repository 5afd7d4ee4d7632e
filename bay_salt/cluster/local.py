"""``bay up`` / ``bay status`` / ``bay down``: a Bay cluster on one machine.

A salt-master and N nodes run as systemd containers on a Docker network of
their own. Every node is a plain Debian bookworm with a salt-minion; the
master then turns it into a Bay node with the same ``state.apply bay`` that
runs on real servers. Minion keys are generated here and accepted by seeding
them into the master's pki; the master itself never auto-accepts a key.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import yaml

from bay_salt.cluster import demo, firewall, images, keys, pki, prereq, sitefiles
from bay_salt.cluster.processes import kafka_lib, search_lib, start_minidfs
from bay_salt.cluster.progress import Progress
from bay_salt.cluster.saltout import summarize_apply
from bay_salt.cluster.sitefiles import (  # noqa: F401
    ADMINS_GROUP,
    CONSUL_HTTPS_PORT,
    CONSUL_TLS,
    GRAPHITE_USER,
    MONITORING_TLS,
    OWNER_RUNNERS,
    OWNERS_GROUP,
    REGISTRY_ADMIN,
    REGISTRY_PORT,
    REGISTRY_TLS,
    SRV,
    Secrets,
    crypt_sha512,
    secret_pillars,
)
from bay_salt.host.sources import network_gateway
from bay_salt.kv.store import ConsulStore, Servers, first_answering
from bay_salt.kv.store import client as consul_client
from bay_salt.metrics.platform import MASTER_TLS
from bay_salt.model import names, settings
from bay_salt.model import services as service_specs
from bay_salt.node import minion
from bay_salt.util import retry

STATE_ROOT = Path("/var/lib/bay/clusters")
NODE_SERVICES = ("salt-minion", "docker", "bay-events", "consul", "haproxy", "bay-lb-sync", "cadvisor", "bay-metrics",
                 "bay-statsd", "bay-logs")
#: graphite-web through the monitoring node's HAProxy (bay:monitoring:web_port's default)
GRAPHITE_WEB_PORT = 8088
#: how many nodes run a registry instance; the node that runs Graphite (role monitoring), and
#: Kafka and the log archiver (role kafka): the first, which no e2e test takes away
REGISTRY_NODES, MONITORING_NODES, KAFKA_NODES = (sitefiles.DEFAULT_COUNTS[r] for r in ("registry", "monitoring", "kafka"))
#: where the kafka node finds Kafka's jars (`bay up` lends it this machine's Maven cache, scripts/kafka.sh)
KAFKA_LIB = "/opt/bay/kafka/lib"
SEARCH_LIB = "/opt/bay/search/lib"


class BayError(RuntimeError):
    """A problem the user can fix; the message says how."""


def docker_client():
    """A Docker client, or a BayError that says how to get one."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except docker.errors.DockerException as err:
        raise BayError(
            f"Docker is not reachable ({str(err).splitlines()[0][:160]}).\n"
            "  Install and start it with the project's setup script: bash scripts/setup.sh\n"
            "  (on a systemd machine: apt-get install docker.io && systemctl start docker)"
        ) from None


def systemd_host_config(client, **extra):
    """Docker flags that run systemd as PID 1 here (../shared/ENVIRONMENT.md):
    every capability but SYS_RESOURCE (``--privileged`` fails on these hosts)."""
    return client.api.create_host_config(
        cap_add=["ALL"],
        cap_drop=["SYS_RESOURCE"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        device_cgroup_rules=["a *:* rwm"],
        tmpfs={"/run": "rw,exec", "/run/lock": "rw"},
        cgroupns="host",
        **extra,
    )


def master_config(cluster: str, index: int = 1) -> dict:
    """The ``index``-th master's configuration (the nodes reach it by its container's name)."""
    return sitefiles.master_config(names.master_id(index), names.master_container(cluster, index))


def minion_config(cluster: str, minion_id: str, masters: int = 1, addresses: list[str] | None = None) -> dict:
    """A node's minion: connected to every master (hot/hot: a job or an event
    reaches a live one). Several masters are named by ``addresses``: a
    container's name leaves Docker's DNS when it dies, and Salt's minion then
    retries the name with a blocking sleep (``retry_dns``, 30 s) that stalls
    its connections to every other master too."""
    hosts = ([names.master_container(cluster, i) for i in range(1, masters + 1)] if masters == 1 or not addresses
             else list(addresses))
    return {
        **minion.config(minion_id, hosts[0] if masters == 1 else hosts),
        "log_level_logfile": "info",
        "acceptance_wait_time": 2,
        "random_reauth_delay": 0,
        "auth_timeout": 10,
    }


def cluster_pillar(cluster: str, nodes: dict[str, str], gossip_key: str, consul_servers: int = 3,
                   registry_storage: str | None = None, logs_public_key: str = "", logs_archive: str = "") -> dict:
    """The generated topology pillar of a local cluster (``nodes``: id -> address):
    a site's (:func:`sitefiles.topology_pillar`, the roles as ``bay site init``
    gives them) and what is local: the wheelhouse, Consul from Debian
    bullseye, the lent Kafka and OpenSearch jars. The registry nodes keep
    their blobs in ``registry_storage`` (the cluster's HDFS); the kafka node
    archives the logs into ``logs_archive`` (the same HDFS)."""
    ids = sorted(nodes, key=lambda n: (len(n), n))
    roles = {n: {"address": nodes[n], "roles": sitefiles.default_roles(k)} for k, n in enumerate(ids)}
    bay = sitefiles.topology_pillar(cluster, roles, ids[:consul_servers], gossip_key, logs_public_key)
    bay["python"] = {"find_links": [images.WHEELHOUSE], "no_index": True}
    bay["consul"]["source"] = "debian-bullseye"
    bay["kafka"]["lib_dir"] = KAFKA_LIB
    # a local cluster's archive closes its files often, so what is logged is there in seconds
    bay["logs"].update({"archive": {"hdfs": logs_archive, "roll_seconds": 15}, "search": {"lib_dir": SEARCH_LIB}})
    if registry_storage:
        # each registry instance serves the blobs it has read from HDFS from its own disk
        bay.setdefault("registry", {}).update({"storage": registry_storage, "cache_size": "2Gi"})
    return {"bay": bay}


def java_home() -> str:
    """This machine's Java (the one HDFS runs on): the kafka node borrows it."""
    java = shutil.which("java")
    if not java:
        raise BayError("no java on this machine (apt install openjdk-17-jre-headless): HDFS and Kafka need it")
    return str(Path(java).resolve().parents[1])


def kafka_binds() -> dict:
    """What the kafka node borrows from this machine, read-only: Kafka's jars
    (fetched once by scripts/kafka.sh) and Java with its configuration, so
    its state installs neither."""
    try:
        lib = kafka_lib(images.checkout_root())
        search = search_lib(images.checkout_root())
    except subprocess.CalledProcessError as err:
        raise BayError(f"Kafka's or OpenSearch's jars: {(err.stderr or '').strip()[-500:]}") from None
    home = java_home()
    binds = {lib: {"bind": KAFKA_LIB, "mode": "ro"}, search: {"bind": SEARCH_LIB, "mode": "ro"},
             home: {"bind": home, "mode": "ro"}}
    # Debian's JRE keeps its configuration in /etc/java-NN-openjdk (conf/ links there)
    security = (Path(home) / "conf" / "security" / "java.security").resolve()
    if not str(security).startswith(home):
        conf = str(security.parents[1])
        binds[conf] = {"bind": conf, "mode": "ro"}
    return binds


def _runner_error(text: str) -> str:
    """The message of a failed runner, without Salt's usage text and warnings."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith(("[WARNING", "unclosed"))]
    if "Usage:" in lines:
        lines = lines[: lines.index("Usage:")]
    return " ".join(ln.strip() for ln in lines).removeprefix("Passed invalid arguments: ")


def _first_lines(text: str, count: int = 3) -> str:
    """Salt wraps render errors in tracebacks; the first lines say what is wrong."""
    return "\n    ".join(text.strip().splitlines()[:count])


@dataclass
class NodeInfo:
    id: str
    container: str
    address: str
    status: str


class LocalCluster:
    def __init__(self, name: str = names.DEFAULT_CLUSTER, client=None, progress: Progress | None = None):
        self.name = name
        self.client = client or docker_client()
        self.progress = progress or Progress()
        self.state_dir = STATE_ROOT / name
        self.labels = {names.LABEL_CLUSTER: name}

    # --- inspection -------------------------------------------------------
    def containers(self):
        return self.client.containers.list(all=True, filters={"label": f"{names.LABEL_CLUSTER}={self.name}"})

    def masters(self) -> list:
        """The master containers, first master first."""
        found = [c for c in self.containers() if c.labels.get(names.LABEL_ROLE) == "master"]
        return sorted(found, key=lambda c: (len(c.name), c.name))

    def leading_master(self, role: str = "controller"):
        """The container of the master that leads ``role`` now (its lock in KV);
        BayError if none does."""
        held = self.leaders()[role].get("master")
        found = [m for m in self.masters() if held and m.labels.get("io.bay.minion") == held]
        if not found:
            raise BayError(f"no master of cluster {self.name!r} leads the {role} now: {self.leaders()[role]}")
        return found[0]

    def master(self):
        """A master to run commands on: the first one running (any master takes any command)."""
        found = self.masters()
        if not found:
            raise docker.errors.NotFound(f"no master container of cluster {self.name!r}")
        return next((c for c in found if c.status == "running"), found[0])

    def nodes(self) -> list[NodeInfo]:
        out = []
        net = names.network_name(self.name)
        for c in self.containers():
            if c.labels.get(names.LABEL_ROLE) != "node":
                continue
            addr = c.attrs["NetworkSettings"]["Networks"].get(net, {}).get("IPAddress", "")
            out.append(NodeInfo(c.labels.get("io.bay.minion", c.name), c.name, addr, c.status))
        return sorted(out, key=lambda n: (len(n.id), n.id))

    def salt(self, *args: str, timeout: int = 600, runner: bool = False) -> dict:
        """Run ``salt`` (or ``salt-run``) on the master; parsed JSON."""
        cmd = ["salt-run" if runner else "salt", "--out=json", *(["--static"] if not runner else []), f"-t{timeout}", *args]
        res = self.master().exec_run(cmd, demux=True)
        out = (res.output[0] or b"").decode()
        err = (res.output[1] or b"").decode()
        try:
            return json.loads(out) if out.strip() else {}
        except json.JSONDecodeError:
            raise BayError(f"salt {' '.join(args)} failed (exit {res.exit_code}): {out[-2000:]}{err[-2000:]}") from None

    # --- up ---------------------------------------------------------------
    def up(self, count: int = 3, demo: bool = True, site: dict | None = None, masters: int = 2) -> None:
        """A new cluster of ``count`` nodes and ``masters`` salt-masters
        (``demo``: with the demo service; ``site``: the site's own changes to
        ``bay:`` in pillar, in force from the first ``state.apply``, as
        :meth:`set_site` writes them later)."""
        if count < 1:
            raise BayError("--nodes must be at least 1")
        if masters < 1:
            raise BayError("--masters must be at least 1")
        existing = [n for n in self.nodes()]
        if existing:
            raise BayError(f"cluster {self.name!r} already exists ({len(existing)} nodes); `bay down` first or `bay status`")
        self.check_machine(count, demo)
        image = images.ensure_node_image(self.client, self.progress)
        with self.progress.step(f"{masters} master{'s' if masters > 1 else ''} and {count} node containers"):
            self._create(image, count, site, masters)
        self._wait_for_minions([names.node_id(i) for i in range(1, count + 1)])
        self.provision()
        if demo:
            self.deploy_demo()

    def check_machine(self, count: int, demo: bool, machine: prereq.Machine | None = None) -> None:
        """What this machine lacks for the cluster, one line each, before any work starts."""
        built = bool(self.client.images.list(filters={"label": f"{images.LABEL_KIND}=node"}))
        missing = prereq.problems(machine or prereq.Machine(), count, demo, image_built=built)
        if missing:
            raise BayError("this machine cannot run it yet:\n  " + "\n  ".join(missing))

    def _create(self, image: str, count: int, site: dict | None = None, masters: int = 1) -> None:
        root = images.checkout_root()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pillar_dir = self.state_dir / "pillar"
        pillar_dir.mkdir(exist_ok=True)
        (pillar_dir / "services.sls").write_text("# services: `bay up` writes the demo here; see pillar/services.sls\n")
        (pillar_dir / "alerts.sls").write_text("# bay:alerts (contacts, rules): see pillar/bay.sls and docs/alerts.md\n")
        (pillar_dir / "site.sls").write_text(
            yaml.safe_dump({"bay": site}, sort_keys=False) if site
            else "# the site's own changes to any bay: key (over bay.sls): see pillar/bay.sls\n")
        gossip_key = sitefiles.gossip_key()
        minion_ids = [names.node_id(i) for i in range(1, count + 1)]
        made = Secrets.new(minion_ids)
        ordered = sorted(minion_ids, key=lambda n: (len(n), n))
        for fname, text in secret_pillars(made, ordered[:3], ordered[:REGISTRY_NODES],
                                          ordered[:MONITORING_NODES]).items():
            (pillar_dir / fname).write_text(text)
            (pillar_dir / fname).chmod(0o600)
        authority = self._ca()
        (self.state_dir / "pki" / "registry-admin").write_text(made.admin_password)
        (self.state_dir / "pki" / "registry-admin").chmod(0o600)
        (self.state_dir / "pki" / "graphite-web").write_text(made.graphite_password)
        (self.state_dir / "pki" / "graphite-web").chmod(0o600)
        (pillar_dir / "bay.sls").write_text(yaml.safe_dump(cluster_pillar(self.name, {}, gossip_key,
                                                                           logs_public_key=made.logs_public_key)))
        (pillar_dir / "bay.sls").chmod(0o600)
        net = self.client.networks.create(names.network_name(self.name), driver="bridge", labels=self.labels)

        master_keys = keys.generate()
        minion_keys = {m: keys.generate() for m in minion_ids}
        shared = sitefiles.master_files(made, master_keys)
        # every master accepts the same minion keys (hot/hot: nothing to accept twice)
        for m, kp in minion_keys.items():
            shared[f"/etc/salt/pki/master/minions/{m}"] = (kp.public_pem, 0o644)
        binds = {
            str(root / "states"): {"bind": f"{SRV}/states", "mode": "ro"},
            str(pillar_dir): {"bind": f"{SRV}/pillar", "mode": "ro"},
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
        }
        master_containers = []
        for k in range(1, masters + 1):
            c = self._create_container(image, names.master_container(self.name, k), "master", names.master_id(k),
                                       binds, net)
            c.put_archive("/", images.tar_files({
                **shared, "/etc/salt/master.d/bay.conf": (yaml.safe_dump(master_config(self.name, k)), 0o644),
                **sitefiles.tls_files(authority, names.master_id(k), [], MASTER_TLS)}))
            c.start()
            master_containers.append(c)
        master_ips = []
        for c in master_containers:
            c.reload()
            master_ips.append(c.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"])

        for i, m in enumerate(minion_ids, start=1):
            vol = self.client.volumes.create(f"{names.node_container(self.name, i)}-docker", labels=self.labels)
            node_binds = {
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                vol.name: {"bind": "/var/lib/docker", "mode": "rw"},
            }
            if i <= KAFKA_NODES:
                node_binds.update(kafka_binds())
            # /dev/kmsg: cAdvisor reads OOM kills from the kernel log
            c = self._create_container(
                image, names.node_container(self.name, i), "node", m, node_binds, net, devices=["/dev/kmsg:/dev/kmsg:r"]
            )
            c.put_archive("/", images.tar_files({
                "/etc/salt/minion.d/bay.conf": (yaml.safe_dump(minion_config(self.name, m, masters, master_ips)), 0o644),
                "/etc/salt/pki/minion/minion.pem": (minion_keys[m].private_pem, 0o400),
                "/etc/salt/pki/minion/minion.pub": (minion_keys[m].public_pem, 0o644),
                "/etc/salt/pki/minion/minion_master.pub": (master_keys.public_pem, 0o644),
                "/etc/hostname": (m + "\n", 0o644),
            }))
            c.start()
            if i <= KAFKA_NODES:  # the lent Java where bay.kafka looks for one
                c.exec_run(["ln", "-sf", f"{java_home()}/bin/java", "/usr/bin/java"])
        addresses = {n.id: n.address for n in self.nodes()}
        self._registry_tls(authority, net, addresses)
        for n in self.nodes():
            self.client.containers.get(n.container).put_archive(
                "/", images.tar_files(sitefiles.node_files(authority, n.id, n.address)))
        # the registry nodes use it; the masters' alert evaluator checks that it answers
        # the kafka node (the first) is a registry node too: its archiver reaches HDFS
        storage = self._start_hdfs(net, [addresses[n] for n in ordered[:REGISTRY_NODES]] + master_ips)
        archive = storage.rsplit("/", 1)[0] + "/bay/logs"
        (pillar_dir / "bay.sls").write_text(
            yaml.safe_dump(cluster_pillar(self.name, addresses, gossip_key, registry_storage=storage,
                                          logs_public_key=made.logs_public_key, logs_archive=archive),
                           sort_keys=False)
        )

    def _ca(self) -> pki.Pair:
        """The cluster's CA (made once, kept in the state directory, root only)."""
        ca_dir = self.state_dir / "pki"
        if (ca_dir / "ca-key.pem").exists():
            return pki.Pair((ca_dir / "ca.pem").read_text(), (ca_dir / "ca-key.pem").read_text())
        ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        authority = pki.ca(f"Bay {self.name} CA")
        (ca_dir / "ca.pem").write_text(authority.cert_pem)
        (ca_dir / "ca-key.pem").write_text(authority.key_pem)
        (ca_dir / "ca-key.pem").chmod(0o600)
        return authority

    def graphite(self) -> tuple[str, str, str, Path]:
        """(graphite-web's URL, user, password, CA file) for looking at this cluster's metrics from here."""
        pki_dir = self.state_dir / "pki"
        nodes = self.nodes()
        if not nodes or not (pki_dir / "graphite-web").exists():
            raise BayError(f"cluster {self.name!r} is not up (or was made before metrics): `bay up` first")
        monitor = nodes[0]
        return (f"https://{monitor.address}:{GRAPHITE_WEB_PORT}", GRAPHITE_USER,
                (pki_dir / "graphite-web").read_text(), pki_dir / "ca.pem")

    def _registry_tls(self, authority: pki.Pair, net, addresses: dict[str, str]) -> None:
        """The registry's certificate (every address it is reached at: each
        node's, loopback, the network's gateway) on every node, and the CA."""
        net.reload()
        gateway = network_gateway(net)
        (self.state_dir / "pki" / "ca.crt").write_text(authority.cert_pem)  # skopeo's --cert-dir layout
        files = sitefiles.registry_tls_files(authority, [gateway, *addresses.values()])
        for n in self.nodes():
            self.client.containers.get(n.container).put_archive("/", images.tar_files(files))

    def registry_login(self) -> tuple[str, str, Path]:
        """(user, password, cert dir) for pushing to this cluster's registry from this machine."""
        pki_dir = self.state_dir / "pki"
        return REGISTRY_ADMIN, (pki_dir / "registry-admin").read_text(), pki_dir

    def _create_container(self, image, name, role, minion_id, binds, net, **host_extra):
        host_config = systemd_host_config(self.client, binds=binds, **host_extra)
        labels = dict(self.labels, **{names.LABEL_ROLE: role, "io.bay.minion": minion_id})
        cid = self.client.api.create_container(
            image, name=name, hostname=minion_id, labels=labels, host_config=host_config,
            networking_config=self.client.api.create_networking_config(
                {net.name: self.client.api.create_endpoint_config(aliases=[minion_id])}
            ),
            stop_signal="SIGRTMIN+3",
            command=["/sbin/init"],
        )
        return self.client.containers.get(cid["Id"])

    def plain_server(self, minion_id: str):
        """Start a plain Debian server on the cluster network: the base image
        (systemd, python3; no Salt), as a new server is before bootstrap
        (``playbooks/bootstrap.yml``). Removed by ``down`` like the rest."""
        net = self.client.networks.get(names.network_name(self.name))
        index = len(self.nodes()) + 1
        vol = self.client.volumes.create(f"{names.node_container(self.name, index)}-docker", labels=self.labels)
        binds = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}, vol.name: {"bind": "/var/lib/docker", "mode": "rw"}}
        c = self._create_container(
            images.base_image_tag(), names.node_container(self.name, index), "node", minion_id, binds, net,
            devices=["/dev/kmsg:/dev/kmsg:r"],
        )
        # nothing else: its certificates come from the site (sitefiles.add_node, the playbook's bay_site)
        c.start()
        c.reload()
        return c

    def _wait_for_minions(self, ids: list[str], timeout: float = 180) -> None:
        seen: set[str] = set()

        def all_up() -> bool:
            ret = self.salt("-L", ",".join(ids), "test.ping", timeout=5)
            seen.clear()
            seen.update(m for m, v in ret.items() if v is True)
            self.progress.detail(f"{len(seen)}/{len(ids)} up")
            return seen >= set(ids)

        with self.progress.step(f"minions {', '.join(ids)} answer the master"):
            try:
                retry.until(all_up, "minions answer", timeout=timeout, interval=1,
                            on=(BayError, docker.errors.APIError))
            except retry.GaveUp:
                raise BayError(f"minions {sorted(set(ids) - seen)} did not answer the master within {timeout:.0f}s"
                               ) from None

    def provision(self, target: str = "*") -> dict:
        """``state.apply bay`` on ``target`` (Bay's modules come with the package:
        nothing to sync); failures raise."""
        with self.progress.step("state.apply bay on every node"):
            ret = self.salt(target, "state.apply", "bay")
        summaries = summarize_apply(ret)
        failed = {m: s.failed for m, s in summaries.items() if not s.ok}
        if failed or not summaries:
            lines = [f"  {m}: {_first_lines(msg)}" for m, msgs in failed.items() for msg in msgs[:10]]
            raise BayError("state.apply bay failed:\n" + ("\n".join(lines) or "  no minion answered"))
        for m, s in sorted(summaries.items()):
            self.progress.note(f"{m}: {s.states} states, {s.changed} changed")
        return summaries

    # --- services ---------------------------------------------------------
    def registry(self) -> str:
        """Where to push from this machine: the first node's HAProxy (nodes pull through their own)."""
        return f"{self.nodes()[0].address}:{REGISTRY_PORT}"

    def pull_registry(self) -> str:
        pillar = yaml.safe_load((self.state_dir / "pillar" / "bay.sls").read_text())["bay"]
        return pillar["docker"]["registry"]

    def consul_token(self) -> str | None:
        """The controller's Consul token (what the master uses), for tools on this machine."""
        path = self.state_dir / "pillar" / "bay-secrets-server.sls"
        if not path.exists():
            return None
        return yaml.safe_load(path.read_text())["bay"]["consul"]["acl"]["tokens"]["controller"]

    def consul_servers(self) -> Servers:
        """How this machine reaches the cluster's Consul servers, as a master
        does: HTTPS on their address, checked against the cluster's CA."""
        return Servers([n.address for n in self.nodes() if n.address], CONSUL_HTTPS_PORT,
                       str(self.state_dir / "pki" / "ca.pem"))

    def consul_store(self, timeout: float = 2.0, running_only: bool = False) -> ConsulStore:
        """A store on the first Consul server that answers with a leader, with
        the controller's token (``running_only``: skip stopped node containers)."""
        s = self.consul_servers()
        if running_only:
            up = {n.address for n in self.nodes() if n.status == "running"}
            s = s._replace(addresses=[a for a in s.addresses if a in up])
        return first_answering(s.addresses, s.port, timeout=timeout, token=self.consul_token(), ca_file=s.ca_file)

    def consul_client(self, address: str, timeout: float = 5.0):
        """A py-consul client on one node's Consul server (HTTPS, the controller's token)."""
        s = self.consul_servers()
        return consul_client(address, s.port, timeout, self.consul_token(), s.ca_file)

    def set_services(self, services: dict) -> None:
        """Replace the cluster's services pillar (``{"bay": {"services": ...}}``)."""
        (self.state_dir / "pillar" / "services.sls").write_text(yaml.safe_dump(services, sort_keys=False))

    def set_alerts(self, alerts: dict) -> None:
        """Replace the cluster's ``bay:alerts`` pillar (contacts, rules) and give it to every node."""
        (self.state_dir / "pillar" / "alerts.sls").write_text(yaml.safe_dump({"bay": {"alerts": alerts}},
                                                                            sort_keys=False))
        self.salt("*", "saltutil.refresh_pillar", "wait=True")

    def set_site(self, bay: dict) -> None:
        """Replace the cluster's own changes to ``bay:`` (merged over the generated pillar) and give them to every node."""
        (self.state_dir / "pillar" / "site.sls").write_text(yaml.safe_dump({"bay": bay} if bay else {},
                                                                          sort_keys=False))
        self.salt("*", "saltutil.refresh_pillar", "wait=True")

    def services_pillar(self) -> dict:
        return yaml.safe_load((self.state_dir / "pillar" / "services.sls").read_text()) or {}

    def deploy_demo(self) -> dict:
        """Build the demo images, push them to the cluster registry, declare
        the demo service in pillar and deploy it."""
        demo.ensure_images(self.client, self.progress)
        refs = demo.push(self.registry(), self.progress, pull_as=self.pull_registry(), login=self.registry_login())
        self.set_services(demo.services_pillar(refs))
        self.refresh_registry_grants()
        with self.progress.step("salt-run bay.deploy demo"):
            return self.runner("bay.deploy", "demo")

    def refresh_registry_grants(self) -> None:
        """The registry nodes' access policy from the services pillar as it is
        now (the owners of a service just declared may push), read again by
        the running instances (a reload: no upload is cut)."""
        if not self.masters() or not self.nodes():
            raise BayError(f"cluster {self.name!r} is not up: `bay up` first")
        targets = ",".join(n.id for n in self.nodes()[:REGISTRY_NODES])
        with self.progress.step("registry grants from the services pillar"):
            self.salt("-L", targets, "saltutil.refresh_pillar", "wait=True", timeout=60)
            ret = self.salt("-L", targets, "state.sls_id", "bay-registry-auth", "bay.registry", timeout=120)
            failed = [m for m, r in ret.items() if not isinstance(r, dict) or not all(v.get("result") for v in r.values())]
            if failed:
                raise BayError(f"the registry grants could not be written on {', '.join(failed)}: "
                               + "; ".join(str(v.get("comment", v))[:200] if isinstance(v, dict) else str(v)[:200]
                                           for r in ret.values() for v in (r.values() if isinstance(r, dict) else [r])))
            self.salt("-L", targets, "service.reload", "bay-registry", timeout=60)

    def add_user(self, name: str, password: str, admin: bool = False, registry: bool = False) -> None:
        """A PAM account on every master for Salt's external auth (the CLI
        works on any master): an owner (operates the services whose owners
        name it) or, with ``admin``, one of the platform team. ``registry``:
        the same name and password log in to the registry too (it pushes the
        images of the services whose owners name it)."""
        group = ADMINS_GROUP if admin else OWNERS_GROUP
        script = (f'getent group {group} >/dev/null || groupadd {group}; id -u "$U" >/dev/null 2>&1 || '
                  f'useradd -M -N -s /usr/sbin/nologin -G {group} "$U"; printf "%s:%s\\n" "$U" "$P" | chpasswd')
        masters = self.masters()
        if not masters:
            raise BayError(f"cluster {self.name!r} has no master: `bay up` first")
        for m in masters:
            m.reload()
            if m.status != "running":
                raise BayError(f"cannot add user {name}: master {m.name} is {m.status} (start it, then again)")
            res = m.exec_run(["sh", "-c", script], environment={"U": name, "P": password})
            if res.exit_code != 0:
                raise BayError(f"cannot add user {name} on {m.name}: {res.output.decode().strip()[-300:]}")
        if registry:
            self.add_registry_user(name, password)

    def add_registry_user(self, name: str, password: str) -> None:
        """``name`` logs in to the registry with ``password`` (its bcrypt hash in
        the registry nodes' secret pillar), in force on the running instances."""
        from bay_salt.registry.auth import hash_password

        path = self.state_dir / "pillar" / "bay-secrets-registry.sls"
        if not path.exists():
            raise BayError(f"cluster {self.name!r} is not up: `bay up` first")
        data = yaml.safe_load(path.read_text())
        if name == "node":
            raise BayError("'node' is the nodes' own registry account: choose another name")
        data["bay"]["registry"]["auth"]["users"][name] = hash_password(password)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data))
        tmp.chmod(0o600)
        tmp.replace(path)
        self.refresh_registry_grants()

    def runner(self, fun: str, *args: str, timeout: int = 900, login: tuple[str, str] | None = None) -> dict:
        """``salt-run FUN ARGS`` on the master (``login``: as that user, through
        Salt's external auth); a failure raises BayError with Salt's message."""
        auth = ["-a", "pam", "--username", login[0], "--password", login[1]] if login else []
        res = self.master().exec_run(["salt-run", *auth, "--out=json", f"-t{timeout}", fun, *args], demux=True)
        out = (res.output[0] or b"").decode()
        err = (res.output[1] or b"").decode()
        if res.exit_code != 0:
            raise BayError(f"salt-run {fun} {' '.join(args)}: {_runner_error(err or out)}")
        try:
            result = json.loads(out) if out.strip() else {}
        except json.JSONDecodeError:
            raise BayError(f"salt-run {fun}: unreadable output: {out[-1000:]}") from None
        if not isinstance(result, dict):  # salt-run reports some failures as a plain string, exit 0
            raise BayError(f"salt-run {fun} {' '.join(args)}: {_runner_error(str(result))}")
        return result

    # --- HDFS (the registry's storage) ------------------------------------
    def _start_hdfs(self, net, registries: list[str]) -> str:
        """A real HDFS for the cluster's registry: Hadoop's MiniDFSCluster on
        this machine, listening on the cluster network's gateway only (the
        DataNodes too, so WebHDFS redirects reach them from the nodes), and
        reachable only from the ``registries`` addresses and the master's (host
        firewall: WebHDFS believes any user name). Returns the registry's storage URL."""
        net.reload()
        gateway = network_gateway(net)
        with self.progress.step("HDFS (MiniDFSCluster) for the registry"):
            daemon, http = start_minidfs(self.state_dir / "hdfs", images.checkout_root(), bind=gateway)
        (self.state_dir / "hdfs.pid").write_text(str(daemon.pid))
        try:
            ports = firewall.apply(self.name, gateway, daemon.pid, registries)
        except (firewall.FirewallError, OSError, subprocess.CalledProcessError) as err:
            raise BayError(f"HDFS for cluster {self.name}: cannot limit it to the registry nodes ({err}); "
                           "bay up needs root and iptables") from None
        self.progress.note(f"HDFS ports {', '.join(map(str, ports))}: registry nodes and the master only")
        return f"hdfs://{gateway}:{http}/bay-registry"

    def _stop_hdfs(self) -> str | None:
        """Stop this cluster's MiniDFSCluster: the process recorded at `bay up`,
        only if it still is that JVM (its command line names this cluster's dir)."""
        pidfile = self.state_dir / "hdfs.pid"
        if not pidfile.exists():
            return None
        pid = int(pidfile.read_text())
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        if "BayMiniDFS" not in cmdline or str(self.state_dir) not in cmdline:
            return None
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        return f"HDFS (pid {pid})"

    # --- down -------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove every container, network and volume of this cluster (found
        by label), its HDFS and its state directory; nothing else."""
        removed = []
        stopped = self._stop_hdfs()
        if stopped:
            removed.append(stopped)
        if firewall.remove(self.name):
            removed.append(f"firewall chain {firewall.chain(self.name)}")
        flt = {"label": f"{names.LABEL_CLUSTER}={self.name}"}
        for c in self.containers():
            c.remove(force=True, v=True)
            removed.append(f"container {c.name}")
        for n in self.client.networks.list(filters=flt):
            n.remove()
            removed.append(f"network {n.name}")
        for v in self.client.volumes.list(filters=flt):
            v.remove(force=True)
            removed.append(f"volume {v.name}")
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
            removed.append(f"state {self.state_dir}")
        return removed

    # --- status -----------------------------------------------------------
    def leaders(self) -> dict[str, dict]:
        """Which master leads each role (the Consul locks, read from here in
        about a second at most), with how long ago it last beat; a role whose
        lock cannot be read says why."""
        from bay_salt.kv import store as kvstore
        from bay_salt.kv.records import read_leader

        out: dict[str, dict] = {}
        try:
            store = self.consul_store(timeout=1.0)
            for role in names.LEADER_ROLES:
                h = read_leader(store, role)
                out[role] = ({"master": h.master, "address": h.address, "since": h.since,
                              "beat_age": round(max(0.0, time.time() - h.beat), 1)} if h else {"master": None})
        except (kvstore.Unavailable, OSError) as err:
            out = {role: {"master": None, "error": str(err)} for role in names.LEADER_ROLES}
        return out

    def status(self) -> dict:
        """Nodes, roles, their services' states, and how to reach things."""
        try:
            master = self.master()
        except docker.errors.NotFound:
            raise BayError(f"no cluster {self.name!r} here; start one with `bay up`") from None
        pillar = yaml.safe_load((self.state_dir / "pillar" / "bay.sls").read_text())["bay"]
        cfg = settings.load(settings.formula_defaults(images.checkout_root()), pillar)
        net = names.network_name(self.name)
        master_ip = master.attrs["NetworkSettings"]["Networks"].get(net, {}).get("IPAddress", "")
        leads = self.leaders()
        masters = [{"container": c.name, "id": c.labels.get("io.bay.minion", c.name),
                    "address": c.attrs["NetworkSettings"]["Networks"].get(net, {}).get("IPAddress", ""),
                    "state": c.status,
                    "leads": [r for r, h in leads.items() if h.get("master") == c.labels.get("io.bay.minion")]}
                   for c in self.masters()]
        rows = []
        for n in self.nodes():
            services = {}
            if n.status == "running":
                res = self.client.containers.get(n.container).exec_run(["systemctl", "is-active", *NODE_SERVICES])
                services = dict(zip(NODE_SERVICES, res.output.decode().split()))
            spec = cfg["nodes"].get(n.id, {})
            rows.append({
                "id": n.id, "container": n.container, "address": n.address, "state": n.status,
                "roles": spec.get("roles", []) + (["consul-server"] if n.id in cfg["consul"]["servers"] else []),
                "services": services,
                "haproxy_stats": f"http://{n.address}:{cfg['haproxy']['stats_port']}/stats",
                "cadvisor": f"http://{n.address}:{cfg['cadvisor']['port']}/",
            })
        frontends = []
        try:
            specs = service_specs.parse((self.services_pillar().get("bay") or {}).get("services"))
            frontends = [f"{g.name}: :{g.listen}" for _, spec in sorted(specs.items()) for g in spec.groups().values()]
        except (ValueError, OSError):
            pass
        return {
            "cluster": self.name,
            "frontends": frontends,
            "master": {"container": master.name, "address": master_ip, "state": master.status,
                       "salt": f"docker exec -it {master.name} salt '*' test.ping"},
            "masters": masters,
            "leaders": leads,
            "nodes": rows,
        }

