"""Service containers on a node, through the Docker SDK.

Every container carries Bay's labels (service, group, instance, spec hash),
runs with the group's CPU and memory limits, logs to json-file with rotation,
publishes its port on an ephemeral host port, and has no Docker restart
policy: the controller owns restarts.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import logging
import socket
import time
import urllib.error
import urllib.request

import docker
import docker.errors

from bay_salt.host.sources import network_gateway
from bay_salt.model import names
from bay_salt.model.services import DROPPED_CAPABILITIES, PIDS_LIMIT, GroupSpec, Health

log = logging.getLogger("bay.containers")


def _host_port(container, port: int) -> int:
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
    for b in bindings:
        if b.get("HostIp") in ("0.0.0.0", "", None):
            return int(b["HostPort"])
    if bindings:
        return int(bindings[0]["HostPort"])
    raise RuntimeError(f"{container.name}: port {port} is not published")


def _created(container) -> float:
    """Docker's ``Created`` (RFC 3339 with nanoseconds) as epoch seconds."""
    stamp = container.attrs.get("Created", "")
    try:
        return datetime.datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return time.time()


def _record(labels: dict, name: str, cid: str, status: str, created: float, host_port: int | None) -> dict:
    return {
        "service": labels.get(names.LABEL_SERVICE),
        "group": labels.get(names.LABEL_GROUP),
        "instance": labels.get(names.LABEL_INSTANCE),
        "spec": labels.get(names.LABEL_SPEC),
        "cpu": float(labels.get(names.LABEL_CPU, 0)),
        "memory_mb": int(labels.get(names.LABEL_MEMORY, 0)),
        "container": name,
        "id": cid[:12],
        "status": status,
        "host_port": host_port if status == "running" else None,
        # seconds since it was created, by this node's clock
        "age": max(0.0, time.time() - created),
    }


def describe(container) -> dict:
    """A container (inspected) as the node reports it."""
    port = int(container.labels.get(names.LABEL_PORT, 0))
    host_port = None
    if container.status == "running" and port:
        try:
            host_port = _host_port(container, port)
        except RuntimeError:
            pass
    return _record(container.labels, container.name, container.id, container.status, _created(container), host_port)


def describe_listed(entry: dict) -> dict:
    """A container as Docker's list gives it (``GET /containers/json``: no inspect per container), as
    :func:`describe` reports it."""
    labels = entry.get("Labels") or {}
    port = int(labels.get(names.LABEL_PORT, 0))
    published = [b for b in entry.get("Ports") or [] if b.get("PrivatePort") == port and b.get("Type") == "tcp"
                 and b.get("PublicPort")]
    on_all = [b for b in published if b.get("IP") in ("0.0.0.0", "", None)]
    host_port = int((on_all or published)[0]["PublicPort"]) if port and published else None
    name = ((entry.get("Names") or ["/"])[0]).lstrip("/")
    return _record(labels, name, entry["Id"], entry.get("State", ""), float(entry.get("Created") or time.time()),
                   host_port)


def list_instances(client: docker.DockerClient) -> list[dict]:
    """Every Bay container on this node, running or not, in one call to Docker."""
    return [describe_listed(e) for e in client.api.containers(all=True, filters={"label": names.LABEL_SERVICE})]


def ensure_image(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        client.images.pull(image)


def platform_env(client: docker.DockerClient, service: str, statsd_port: int | None = None,
                 log_relay_port: int | None = None) -> dict[str, str]:
    """What the platform tells a container: where it sends statsd (its node's
    metrics agent) and log lines (its node's log relay), both on Docker's
    bridge gateway (the address containers reach their node at), and its log
    topic. Not where Kafka is: the sandbox closes it to containers, which
    log through the relay."""
    if not (statsd_port or log_relay_port):
        return {}
    gateway = network_gateway(client.networks.get("bridge"))
    env = {"STATSD_HOST": gateway, "STATSD_PORT": str(statsd_port)} if statsd_port else {}
    if log_relay_port:
        env.update({names.ENV_LOG_HOST: gateway, names.ENV_LOG_PORT: str(log_relay_port),
                    names.ENV_LOG_TOPIC: names.log_topic(service)})
    return env


def run(client: docker.DockerClient, group: GroupSpec, instance: str, log_max_size: str = "10m",
        log_max_file: int = 3, secrets: dict[str, str] | None = None, platform_env: dict[str, str] | None = None) -> dict:
    """Start one instance of ``group``; ``secrets``: its secret environment's values;
    ``platform_env``: what the platform tells every container (statsd's address)."""
    ensure_image(client, group.image)
    name = names.service_container(group.service, group.group, instance)
    labels = {
        names.LABEL_SERVICE: group.service,
        names.LABEL_GROUP: group.group,
        names.LABEL_INSTANCE: instance,
        names.LABEL_SPEC: group.spec_hash(),
        names.LABEL_PORT: str(group.port),
        names.LABEL_CPU: str(group.cpu),
        names.LABEL_MEMORY: str(group.memory_mb),
    }
    if group.egress:  # what the sandbox lets it reach (bay_salt.node.sandbox reads it back)
        labels[names.LABEL_EGRESS] = json.dumps([e.model_dump(mode="json") for e in group.egress],
                                                separators=(",", ":"))
    # command: the whole argv (replaces the image's entrypoint); args: replace only its CMD
    kwargs: dict = {}
    command = list(group.args) or None
    if group.command:
        kwargs["entrypoint"] = group.command[:1]
        command = group.command[1:] + list(group.args)
    container = client.containers.run(
        group.image,
        command=command,
        name=name,
        detach=True,
        labels=labels,
        environment={**group.env, **(secrets or {}), **(platform_env or {}), "BAY_SERVICE": group.service, "BAY_GROUP": group.group,
                     "BAY_INSTANCE": instance},
        nano_cpus=int(group.cpu * 1e9),
        mem_limit=f"{group.memory_mb}m",
        memswap_limit=f"{group.memory_mb}m",
        ports={f"{group.port}/tcp": None},
        log_config=docker.types.LogConfig(type="json-file", config={"max-size": log_max_size,
                                                                     "max-file": str(log_max_file)}),
        restart_policy={"Name": "no"},
        # Docker's init as PID 1: it passes the stop signal on and reaps orphans, so a service
        # whose process ignores SIGTERM as PID 1 (a shell, busybox httpd) stops at once on a
        # scale-down or roll instead of after the kill timeout
        init=True,
        **hardening(group),
        **kwargs,
    )
    container.reload()
    return describe(container)


#: every service container: no raw sockets (ARP or ICMP spoofing on the bridge) nor device nodes, no
#: privilege gained through setuid binaries, and a bounded number of processes (a fork bomb stays in it)
HARDENING = {"cap_drop": list(DROPPED_CAPABILITIES), "security_opt": ["no-new-privileges:true"],
             "pids_limit": PIDS_LIMIT}
#: writable scratch space of a container whose root filesystem is read-only
READ_ONLY_TMPFS = {"/tmp": "rw,nosuid,nodev,size=64m", "/run": "rw,nosuid,nodev,size=16m"}


def hardening(group: GroupSpec) -> dict:
    """Docker's run arguments that confine ``group``'s containers: :data:`HARDENING`,
    with what its spec's ``security`` gives back or adds (a read-only root filesystem)."""
    sec = group.security
    if sec is None:
        return dict(HARDENING)
    out = {**HARDENING, "cap_drop": [c for c in HARDENING["cap_drop"] if c not in sec.cap_add],
           "pids_limit": sec.pids_limit}
    if sec.read_only:
        out.update(read_only=True, tmpfs=dict(READ_ONLY_TMPFS))
    return out


def stop(client: docker.DockerClient, container: str, timeout: int = 10, keep: Keep | None = None) -> bool:
    """Stop and remove; False if it was not there. With ``keep``, its output
    and end are kept on this node first (:mod:`bay_salt.logs.kept`)."""
    try:
        c = client.containers.get(container)
    except docker.errors.NotFound:
        return False
    try:
        c.stop(timeout=timeout)
    except docker.errors.APIError:
        pass
    if keep is not None:
        keep(c)
    c.remove(force=True)
    return True


class Keep:
    """Keeps a container's output before it is removed (never in the removal's way)."""

    def __init__(self, root: str, node: str, max_bytes: int):
        self.root, self.node, self.max_bytes = root, node, max_bytes

    def __call__(self, container) -> None:
        from bay_salt.logs import kept

        try:
            container.reload()
            kept.keep(container, self.root, self.node, self.max_bytes)
        except (OSError, ValueError, docker.errors.DockerException) as err:
            log.warning("output of %s not kept: %s", container.name, err)


def check(address: str, port: int, health: Health | None, timeout: float = 1.0) -> bool:
    """One health probe: HTTP GET of the path (2xx/3xx), or a TCP connect."""
    if health and health.http:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}{health.http}", timeout=timeout) as r:
                return 200 <= r.status < 400
        except (urllib.error.URLError, OSError, ValueError):
            return False
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


#: without a health check: a TCP connect, once, within 30 s
_TCP = Health(tcp=True, interval=1.0, timeout=1.0, rise=1, start_period=30.0)


def wait_healthy(address: str, port: int, health: Health | None, client=None, container: str | None = None) -> bool:
    """Probe until ``rise`` successes in a row, or the start period ends (or the
    container exits)."""
    h = health or _TCP
    deadline = time.monotonic() + h.start_period
    streak = 0
    # probe fast while starting: 20 ms apart at first, then up to 250 ms (or the
    # group's interval if shorter); most services answer within the first few tries
    cap = min(h.interval, 0.25)
    interval = min(0.02, cap)
    while time.monotonic() < deadline:
        if check(address, port, h, h.timeout):
            streak += 1
            if streak >= h.rise:
                return True
            interval = cap  # the rest of a rise streak at the starting cadence
        else:
            streak = 0
            if client is not None and container:
                try:
                    if client.containers.get(container).status in ("exited", "dead"):
                        return False
                except docker.errors.NotFound:
                    return False
        time.sleep(interval)
        interval = min(interval * 2, cap)
    return False


def client() -> docker.DockerClient:
    """The node's Docker engine."""
    return docker.from_env(timeout=120)


def docker_problem(err: Exception, image: str) -> str:
    """What Docker said, as one line a user can act on."""
    text = str(getattr(err, "explanation", None) or err).strip().splitlines()[0]
    if isinstance(err, docker.errors.ImageNotFound) or "manifest unknown" in text or "not found" in text:
        return f"image {image} is not in the registry ({text[:200]})"
    if "connection refused" in text or "no such host" in text or "timeout" in text.lower():
        return f"the registry of image {image} cannot be reached ({text[:200]})"
    return f"{image}: {text[:240]}"


#: containers one node creates and starts at once (a 2-core node gains little beyond)
START_PARALLEL = 8


def start_many(group: GroupSpec, instances: list[str], address: str, log_max_size: str = "10m",
               log_max_file: int = 3, wait: bool = True, secrets: dict[str, str] | None = None,
               statsd_port: int | None = None, log_relay_port: int | None = None,
               keep: Keep | None = None) -> list[dict]:
    """Start ``instances`` of ``group`` here and, with ``wait``, probe each on
    this node's ``address`` (in parallel) until healthy or its start period ends.
    If the image cannot be had (missing, registry unreachable) or Docker refuses
    to start it, nothing of the group is left started here and every entry
    carries ``error`` (one line)."""
    dc = client()
    started, failures = [], []
    try:
        penv = platform_env(dc, group.service, statsd_port, log_relay_port)
        ensure_image(dc, group.image)  # pulled once, before the starts
    except docker.errors.DockerException as err:
        failures.append(err)
    else:
        def one(i: str) -> dict | docker.errors.DockerException:
            try:
                return run(dc, group, i, log_max_size, log_max_file, secrets, penv)
            except docker.errors.DockerException as err:
                return err

        # several at once (Docker creates and starts containers concurrently), at most START_PARALLEL
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(START_PARALLEL, len(instances)))) as pool:
            for res in pool.map(one, instances):
                (failures if isinstance(res, Exception) else started).append(res)
    if failures:
        for c in started:
            stop(dc, c["container"], timeout=1, keep=keep)
        why = docker_problem(failures[0], group.image)
        return [{"instance": i, "container": names.service_container(group.service, group.group, i),
                 "host_port": None, "healthy": False, "address": address, "error": why} for i in instances]

    def probe(c: dict) -> dict:
        healthy = bool(c["host_port"]) and (
            not wait or wait_healthy(address, c["host_port"], group.health, dc, c["container"]))
        return dict(c, healthy=healthy, address=address)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
        return list(pool.map(probe, started))


def output(name: str, lines: int = 20, limit: int = 4096) -> str:
    """The last ``lines`` of a Bay container's output, at most ``limit`` bytes
    ("" if there is no such container, or it is not Bay's)."""
    try:
        c = client().containers.get(name)
        if names.LABEL_SERVICE not in (c.labels or {}):
            return ""
        text = c.logs(stdout=True, stderr=True, tail=lines).decode("utf-8", "replace")
    except docker.errors.DockerException:
        return ""
    return text[-limit:]


def stop_many(names: list[str], timeout: int = 10, keep: Keep | None = None) -> dict[str, bool]:
    """Stop and remove the named containers (in parallel, each one's output
    kept first with ``keep``); name -> whether it was there."""
    dc = client()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return dict(zip(names, pool.map(lambda n: stop(dc, n, timeout, keep), names)))
