"""How ``bay up`` makes a local cluster: its pillar and secrets, the master
and node containers (systemd as PID 1, as real servers run), their keys and
certificates, and the cluster's HDFS. :class:`Builder` does it for a
:class:`bay_salt.cluster.local.LocalCluster`; the functions here are what it
writes (unit-tested without Docker)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import docker.errors
import yaml

from bay_salt.cluster import hdfs, images, keys, prereq, sitefiles
from bay_salt.cluster.errors import BayError
from bay_salt.cluster.processes import kafka_lib, search_lib
from bay_salt.cluster.sitefiles import SRV, Secrets, secret_pillars
from bay_salt.host.sources import network_gateway
from bay_salt.metrics.platform import MASTER_TLS
from bay_salt.model import names
from bay_salt.node import minion
from bay_salt.util import retry

#: how many nodes run a registry instance; the node that runs Graphite (role monitoring), and
#: Kafka and the log archiver (role kafka): the first, which no e2e test takes away
REGISTRY_NODES, MONITORING_NODES, KAFKA_NODES = (sitefiles.DEFAULT_COUNTS[r] for r in ("registry", "monitoring", "kafka"))
#: where the kafka node finds Kafka's jars (`bay up` lends it this machine's Maven cache, scripts/kafka.sh)
KAFKA_LIB = "/opt/bay/kafka/lib"
SEARCH_LIB = "/opt/bay/search/lib"


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


class Builder:
    """Makes the containers of ``cluster`` (a :class:`bay_salt.cluster.local.LocalCluster`)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.client = cluster.client
        self.site = cluster.site
        self.progress = cluster.progress

    def check_machine(self, count: int, demo: bool, machine: prereq.Machine | None = None) -> None:
        """What this machine lacks for the cluster, one line each, before any work starts."""
        built = bool(self.client.images.list(filters={"label": f"{images.LABEL_KIND}=node"}))
        missing = prereq.problems(machine or prereq.Machine(), count, demo, image_built=built)
        if missing:
            raise BayError("this machine cannot run it yet:\n  " + "\n  ".join(missing))

    def create(self, image: str, count: int, site: dict | None = None, masters: int = 1) -> None:
        """The pillar, ``masters`` masters and ``count`` nodes, started, with
        their keys and certificates, and the cluster's HDFS."""
        minion_ids = [names.node_id(i) for i in range(1, count + 1)]
        ordered = sorted(minion_ids, key=lambda n: (len(n), n))
        made, gossip_key = self._pillar(site, ordered)
        authority = self.site.ca()
        net = self.client.networks.create(names.network_name(self.cluster.name), driver="bridge",
                                          labels=self.cluster.labels)
        master_keys = keys.generate()
        minion_keys = {m: keys.generate() for m in minion_ids}
        master_ips = self._masters(image, masters, net, sitefiles.master_files(made, master_keys), minion_keys,
                                   authority)
        self._nodes(image, net, minion_keys, master_keys.public_pem, masters, master_ips)
        addresses = {n.id: n.address for n in self.cluster.nodes()}
        self._registry_tls(authority, net, addresses)
        for n in self.cluster.nodes():
            self.client.containers.get(n.container).put_archive(
                "/", images.tar_files(sitefiles.node_files(authority, n.id, n.address)))
        # the registry nodes use it; the masters' alert evaluator checks that it answers
        # the kafka node (the first) is a registry node too: its archiver reaches HDFS
        storage = hdfs.start(self.cluster.name, self.site.state_dir, net,
                             [addresses[n] for n in ordered[:REGISTRY_NODES]] + master_ips, self.progress)
        archive = storage.rsplit("/", 1)[0] + "/bay/logs"
        self.site.write_secret(self.site.pillar_dir / "bay.sls", yaml.safe_dump(
            cluster_pillar(self.cluster.name, addresses, gossip_key, registry_storage=storage,
                           logs_public_key=made.logs_public_key, logs_archive=archive), sort_keys=False))

    def _pillar(self, site: dict | None, ordered: list[str]) -> tuple[Secrets, str]:
        """The pillar the masters read, before any container runs: the site's
        changes, the secrets (each file for the nodes that need it), the
        topology without addresses yet; the tools' passwords kept here."""
        pillar_dir = self.site.pillar_dir
        pillar_dir.mkdir(parents=True, exist_ok=True)
        (pillar_dir / "services.sls").write_text("# services: `bay up` writes the demo here; see pillar/services.sls\n")
        (pillar_dir / "alerts.sls").write_text("# bay:alerts (contacts, rules): see pillar/bay.sls and docs/alerts.md\n")
        (pillar_dir / "site.sls").write_text(
            yaml.safe_dump({"bay": site}, sort_keys=False) if site
            else "# the site's own changes to any bay: key (over bay.sls): see pillar/bay.sls\n")
        gossip_key = sitefiles.gossip_key()
        made = Secrets.new(ordered)
        for fname, text in secret_pillars(made, ordered[:3], ordered[:REGISTRY_NODES],
                                          ordered[:MONITORING_NODES]).items():
            self.site.write_secret(pillar_dir / fname, text)
        self.site.ca()
        self.site.write_secret(self.site.pki_dir / "registry-admin", made.admin_password)
        self.site.write_secret(self.site.pki_dir / "graphite-web", made.graphite_password)
        self.site.write_secret(pillar_dir / "bay.sls", yaml.safe_dump(
            cluster_pillar(self.cluster.name, {}, gossip_key, logs_public_key=made.logs_public_key)))
        return made, gossip_key

    def _masters(self, image: str, count: int, net, shared: dict, minion_keys: dict, authority) -> list[str]:
        """``count`` masters, started; their addresses. Every master accepts
        the same minion keys (hot/hot: nothing to accept twice)."""
        shared = dict(shared, **{f"/etc/salt/pki/master/minions/{m}": (kp.public_pem, 0o644)
                                 for m, kp in minion_keys.items()})
        root = images.checkout_root()
        binds = {
            str(root / "states"): {"bind": f"{SRV}/states", "mode": "ro"},
            str(self.site.pillar_dir): {"bind": f"{SRV}/pillar", "mode": "ro"},
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
        }
        started = []
        for k in range(1, count + 1):
            c = self.container(image, names.master_container(self.cluster.name, k), "master", names.master_id(k),
                               binds, net)
            c.put_archive("/", images.tar_files({
                **shared, "/etc/salt/master.d/bay.conf": (yaml.safe_dump(master_config(self.cluster.name, k)), 0o644),
                **sitefiles.tls_files(authority, names.master_id(k), [], MASTER_TLS)}))
            c.start()
            started.append(c)
        addresses = []
        for c in started:
            c.reload()
            addresses.append(c.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"])
        return addresses

    def _nodes(self, image: str, net, minion_keys: dict, master_pub: str, masters: int,
               master_ips: list[str]) -> None:
        """A node container per minion key, started, its minion aimed at every master."""
        for i, (m, kp) in enumerate(minion_keys.items(), start=1):
            vol = self.client.volumes.create(f"{names.node_container(self.cluster.name, i)}-docker",
                                             labels=self.cluster.labels)
            node_binds = {
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                vol.name: {"bind": "/var/lib/docker", "mode": "rw"},
            }
            if i <= KAFKA_NODES:
                node_binds.update(kafka_binds())
            # /dev/kmsg: cAdvisor reads OOM kills from the kernel log
            c = self.container(image, names.node_container(self.cluster.name, i), "node", m, node_binds, net,
                               devices=["/dev/kmsg:/dev/kmsg:r"])
            c.put_archive("/", images.tar_files({
                "/etc/salt/minion.d/bay.conf": (yaml.safe_dump(minion_config(self.cluster.name, m, masters,
                                                                             master_ips)), 0o644),
                "/etc/salt/pki/minion/minion.pem": (kp.private_pem, 0o400),
                "/etc/salt/pki/minion/minion.pub": (kp.public_pem, 0o644),
                "/etc/salt/pki/minion/minion_master.pub": (master_pub, 0o644),
                "/etc/hostname": (m + "\n", 0o644),
            }))
            c.start()
            if i <= KAFKA_NODES:  # the lent Java where bay.kafka looks for one
                c.exec_run(["ln", "-sf", f"{java_home()}/bin/java", "/usr/bin/java"])

    def _registry_tls(self, authority, net, addresses: dict[str, str]) -> None:
        """The registry's certificate (every address it is reached at: each
        node's, loopback, the network's gateway) on every node, and the CA."""
        net.reload()
        gateway = network_gateway(net)
        (self.site.pki_dir / "ca.crt").write_text(authority.cert_pem)  # skopeo's --cert-dir layout
        files = sitefiles.registry_tls_files(authority, [gateway, *addresses.values()])
        for n in self.cluster.nodes():
            self.client.containers.get(n.container).put_archive("/", images.tar_files(files))

    def container(self, image, name, role, minion_id, binds, net, **host_extra):
        """A created (not started) systemd container of the cluster on ``net``, reached by ``minion_id``."""
        host_config = systemd_host_config(self.client, binds=binds, **host_extra)
        labels = dict(self.cluster.labels, **{names.LABEL_ROLE: role, "io.bay.minion": minion_id})
        cid = self.client.api.create_container(
            image, name=name, hostname=minion_id, labels=labels, host_config=host_config,
            networking_config=self.client.api.create_networking_config(
                {net.name: self.client.api.create_endpoint_config(aliases=[minion_id])}
            ),
            stop_signal="SIGRTMIN+3",
            command=["/sbin/init"],
        )
        return self.client.containers.get(cid["Id"])

    def wait_for_minions(self, ids: list[str], timeout: float = 180) -> None:
        """Until every minion of ``ids`` answers a master's ping; BayError naming the silent ones."""
        seen: set[str] = set()

        def all_up() -> bool:
            ret = self.cluster.salt("-L", ",".join(ids), "test.ping", timeout=5)
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
