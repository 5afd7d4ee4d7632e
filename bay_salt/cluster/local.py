"""``bay up`` / ``bay status`` / ``bay down``: a Bay cluster on one machine.

A salt-master and N nodes run as systemd containers on a Docker network of
their own. Every node is a plain Debian bookworm with a salt-minion; the
master then turns it into a Bay node with the same ``state.apply bay`` that
runs on real servers. Minion keys are generated here and accepted by seeding
them into the master's pki; the master itself never auto-accepts a key.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import yaml

from bay_salt.cluster import demo, firewall, hdfs, images
from bay_salt.cluster.build import REGISTRY_NODES, Builder
from bay_salt.cluster.errors import BayError
from bay_salt.cluster.localsite import LocalSite
from bay_salt.cluster.progress import Progress
from bay_salt.cluster.saltout import summarize_apply
from bay_salt.cluster.sitefiles import ADMINS_GROUP, CONSUL_HTTPS_PORT, GRAPHITE_USER, OWNERS_GROUP, REGISTRY_PORT
from bay_salt.kv.store import ConsulStore, Servers, first_answering
from bay_salt.kv.store import client as consul_client
from bay_salt.model import names, settings
from bay_salt.model import services as service_specs

STATE_ROOT = Path("/var/lib/bay/clusters")
NODE_SERVICES = ("salt-minion", "docker", "bay-events", "consul", "haproxy", "bay-lb-sync", "cadvisor", "bay-metrics",
                 "bay-statsd", "bay-logs")
#: graphite-web through the monitoring node's HAProxy (bay:monitoring:web_port's default)
GRAPHITE_WEB_PORT = 8088


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
    """One local cluster, found by its label: made by :meth:`up` (through
    :class:`bay_salt.cluster.build.Builder`), run commands on, looked at, removed by :meth:`down`."""

    def __init__(self, name: str = names.DEFAULT_CLUSTER, client=None, progress: Progress | None = None):
        self.name = name
        self.client = client or docker_client()
        self.progress = progress or Progress()
        self.state_dir = STATE_ROOT / name
        self.site = LocalSite(self.state_dir, name)
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
        builder = Builder(self)
        builder.check_machine(count, demo)
        image = images.ensure_node_image(self.client, self.progress)
        with self.progress.step(f"{masters} master{'s' if masters > 1 else ''} and {count} node containers"):
            builder.create(image, count, site, masters)
        builder.wait_for_minions([names.node_id(i) for i in range(1, count + 1)])
        self.provision()
        if demo:
            self.deploy_demo()

    def graphite(self) -> tuple[str, str, str, Path]:
        """(graphite-web's URL, user, password, CA file) for looking at this cluster's metrics from here."""
        pki_dir = self.state_dir / "pki"
        nodes = self.nodes()
        if not nodes or not (pki_dir / "graphite-web").exists():
            raise BayError(f"cluster {self.name!r} is not up (or was made before metrics): `bay up` first")
        monitor = nodes[0]
        return (f"https://{monitor.address}:{GRAPHITE_WEB_PORT}", GRAPHITE_USER,
                (pki_dir / "graphite-web").read_text(), pki_dir / "ca.pem")

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
        return first_answering(s.addresses, s.port, timeout=timeout, token=self.site.consul_token(), ca_file=s.ca_file)

    def consul_client(self, address: str, timeout: float = 5.0):
        """A py-consul client on one node's Consul server (HTTPS, the controller's token)."""
        s = self.consul_servers()
        return consul_client(address, s.port, timeout, self.site.consul_token(), s.ca_file)

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

    def deploy_demo(self) -> dict:
        """Build the demo images, push them to the cluster registry, declare
        the demo service in pillar and deploy it."""
        demo.ensure_images(self.client, self.progress)
        refs = demo.push(self.registry(), self.progress, pull_as=self.site.pull_registry(), login=self.site.registry_login())
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

    # --- down -------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove every container, network and volume of this cluster (found
        by label), its HDFS and its state directory; nothing else."""
        removed = []
        stopped = hdfs.stop(self.state_dir)
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
            specs = service_specs.parse((self.site.services_pillar().get("bay") or {}).get("services"))
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

