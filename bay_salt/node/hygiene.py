"""Node hygiene: what the Docker engine leaves behind on a node, found and removed.

Zhihu's Bay ran an iptables tool on every node for this. An engine that is
killed, restarted or loses a race leaves:

* ``nat_rule`` / ``filter_rule``: its port-forwarding rules (the ``DOCKER``
  chains' DNAT and ACCEPT, the hairpin MASQUERADE in ``POSTROUTING``) for a
  container address no container holds any more; the next container given
  that address would get traffic meant for the dead one;
* ``conntrack``: connection-tracking entries of such an address (replies
  keep going to a container that is gone);
* ``veth``: host-side ``veth*`` interfaces in no bridge (the container end
  is gone or never arrived);
* ``dead_container``: Bay's own containers exited (or created and never
  started) longer ago than ``dead_after``: their output is kept on the node
  first (:mod:`bay_salt.logs.kept`), as for every container Bay removes;
* ``dangling_image`` / ``dangling_volume``: untagged images and anonymous
  volumes no container uses, beyond the newest ``images_kept`` / ``volumes_kept``.

:func:`look` reads the node (the rules and conntrack table before the
containers, so a container that starts meanwhile is seen as alive) and
returns each finding; :func:`clean` looks twice, ``settle`` seconds apart,
and removes only what both looks found (a container being set up has a
veth in no bridge for a moment). The node agent (``bay-events``) runs
:func:`clean` every ``bay:docker:hygiene:interval`` and writes what it found
and removed to :data:`STATE` (the metrics agent reports it, :func:`bay_salt.metrics.collect.hygiene`); ``bay node
clean NODE --dry-run`` shows the same findings. Nothing outside these kinds
is touched: not a rule for a subnet, not a named volume, not another's container.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import re
import shlex
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bay_salt.model import names

log = logging.getLogger("bay.hygiene")

KINDS = ("nat_rule", "filter_rule", "conntrack", "veth", "dead_container", "dangling_image", "dangling_volume")
#: what the node agent found and removed last (read by the metrics agent)
STATE = Path(names.HYGIENE_STATE)
_ADDR = re.compile(r"(?:--to-destination |-[sd] )(\d+\.\d+\.\d+\.\d+)(?:/32|:\d+)?(?=\s|$)")
_CONNTRACK_ADDR = re.compile(r"\b(?:src|dst)=(\d+\.\d+\.\d+\.\d+)\b")
_ANONYMOUS = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Finding:
    kind: str
    #: the thing itself: a rule (as iptables-save prints it), an address, an interface, a container, an image or volume
    name: str
    why: str
    #: the iptables table of a rule
    table: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Facts:
    """What one look at the node read."""
    nat: str
    filter: str
    conntrack: str
    links: list[dict]
    subnets: list[str]
    #: the addresses containers hold now, and the bridges' own
    alive: set[str]
    containers: list[dict]
    images: list[dict]
    volumes: list[dict]


# --- what is stale, from what was read (pure) ---------------------------------------------
def _in(addr: str, subnets: Iterable[str]) -> bool:
    ip = ipaddress.ip_address(addr)
    return any(ip in ipaddress.ip_network(s, strict=False) for s in subnets)


def stale_rules(save: str, table: str, subnets: list[str], alive: set[str]) -> list[Finding]:
    """Docker's per-container rules in ``save`` (``iptables-save -t TABLE``)
    naming a container address (one address, in a Docker subnet) nobody holds."""
    kind = f"{table}_rule"
    out = []
    for line in save.splitlines():
        if not (line.startswith("-A DOCKER ") or (table == "nat" and line.startswith("-A POSTROUTING "))):
            continue
        addrs = {a for a in _ADDR.findall(line) if _in(a, subnets)}
        if line.startswith("-A POSTROUTING ") and "-j MASQUERADE" not in line:
            continue
        dead = sorted(a for a in addrs if a not in alive)
        if dead:
            out.append(Finding(kind, line, f"no container holds {', '.join(dead)}", table))
    return out


def stale_conntrack(text: str, subnets: list[str], alive: set[str]) -> list[Finding]:
    """One finding per address in ``conntrack -L``'s entries that is in a
    Docker subnet and held by no container, with how many entries name it."""
    count: Counter = Counter()
    for line in text.splitlines():
        for a in set(_CONNTRACK_ADDR.findall(line)):
            if a not in alive and _in(a, subnets):
                count[a] += 1
    return [Finding("conntrack", a, f"{n} entr{'y' if n == 1 else 'ies'} of an address no container holds")
            for a, n in sorted(count.items())]


def orphan_veths(links: list[dict]) -> list[Finding]:
    """Host-side ``veth*`` interfaces (``ip -j link show type veth``) in no bridge."""
    return [Finding("veth", link["ifname"], "in no bridge: its container is gone")
            for link in links if link.get("ifname", "").startswith("veth") and not link.get("master")]


def _when(stamp: str | None) -> float | None:
    if not stamp or stamp.startswith("0001-"):
        return None
    stamp = re.sub(r"\.(\d{6})\d*", r".\1", stamp.replace("Z", "+00:00"))
    return datetime.datetime.fromisoformat(stamp).timestamp()


def dead_containers(containers: list[dict], now: float, dead_after: float) -> list[Finding]:
    """Bay's containers (``docker inspect`` dicts) not running for longer than ``dead_after``."""
    out = []
    for c in containers:
        state = c.get("State") or {}
        if names.LABEL_SERVICE not in ((c.get("Config") or {}).get("Labels") or {}):
            continue
        if state.get("Status") not in ("exited", "dead", "created"):
            continue
        since = _when(state.get("FinishedAt")) or _when(c.get("Created"))
        if since is not None and now - since > dead_after:
            out.append(Finding("dead_container", c["Name"].lstrip("/"),
                               f"{state['Status']} for {(now - since) / 60:.0f} min (kept at most "
                               f"{dead_after / 60:g} min)"))
    return out


def past_cap(kind: str, items: list[tuple[str, float]], kept: int) -> list[Finding]:
    """``items`` (name, created) beyond the newest ``kept``."""
    newest = sorted(items, key=lambda i: i[1], reverse=True)
    return [Finding(kind, name, f"more than the {kept} newest kept") for name, _ in newest[kept:]]


def findings(facts: Facts, now: float, dead_after: float, images_kept: int, volumes_kept: int) -> list[Finding]:
    f = facts
    return (stale_rules(f.nat, "nat", f.subnets, f.alive) + stale_rules(f.filter, "filter", f.subnets, f.alive)
            + stale_conntrack(f.conntrack, f.subnets, f.alive) + orphan_veths(f.links)
            + dead_containers(f.containers, now, dead_after)
            + past_cap("dangling_image", [(i["Id"], _when(i.get("Created")) or 0.0) for i in f.images], images_kept)
            + past_cap("dangling_volume", [(v["Name"], _when(v.get("CreatedAt")) or 0.0) for v in f.volumes
                                           if _ANONYMOUS.match(v["Name"])], volumes_kept))


# --- reading and changing the node ---------------------------------------------------------
Run = Callable[[list[str]], str]


def run_command(argv: list[str]) -> str:
    """A command's output; one that is missing or fails gives "" (its kind finds nothing)."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("hygiene: %s: %s", argv[0], err)
        return ""
    if res.returncode != 0:
        log.warning("hygiene: %s failed: %s", shlex.join(argv), res.stderr.strip()[:200])
        return ""
    return res.stdout


def read(client, run: Run = run_command) -> Facts:
    """One look at the node: its rules and conntrack table first, then its
    interfaces, networks and containers (``client``: the docker SDK's)."""
    nat = run(["iptables-save", "-t", "nat"])
    flt = run(["iptables-save", "-t", "filter"])
    ct = run(["conntrack", "-L"])
    links = json.loads(run(["ip", "-j", "link", "show", "type", "veth"]) or "[]")
    subnets, alive = [], set()
    for net in client.networks.list(filters={"driver": "bridge"}):
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                subnets.append(cfg["Subnet"])
            if cfg.get("Gateway"):
                alive.add(cfg["Gateway"])
    containers = [c.attrs for c in client.containers.list(all=True)]
    for c in containers:
        for n in ((c.get("NetworkSettings") or {}).get("Networks") or {}).values():
            if n.get("IPAddress"):
                alive.add(n["IPAddress"])
    images = [i.attrs for i in client.images.list(filters={"dangling": True})]
    volumes = [v.attrs for v in client.volumes.list(filters={"dangling": True})]
    return Facts(nat, flt, ct, links, subnets, alive, containers, images, volumes)


def remove(client, f: Finding, keep: Callable | None = None) -> None:
    """Remove one finding; raises (OSError, docker's errors) if it could not."""
    import docker

    def sh(argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    if f.kind in ("nat_rule", "filter_rule"):
        res = sh(["iptables", "-t", f.table, "-D", *shlex.split(f.name)[1:]])
        if res.returncode != 0:
            raise OSError(res.stderr.strip() or f"iptables -D exited {res.returncode}")
    elif f.kind == "conntrack":
        for flag in ("-s", "-d", "--reply-src", "--reply-dst"):  # exit 1: none left of that side
            sh(["conntrack", "-D", flag, f.name])
    elif f.kind == "veth":
        res = sh(["ip", "link", "delete", f.name])
        if res.returncode != 0 and "Cannot find device" not in res.stderr:  # its peer went first
            raise OSError(res.stderr.strip())
    elif f.kind == "dead_container":
        try:
            c = client.containers.get(f.name)
        except docker.errors.NotFound:
            return
        if keep is not None:
            keep(c)
        c.remove(force=False)
    elif f.kind == "dangling_image":
        client.images.remove(f.name, noprune=False)
    elif f.kind == "dangling_volume":
        client.volumes.get(f.name).remove()


def clean(client, dead_after: float, images_kept: int, volumes_kept: int, dry_run: bool = True,
          settle: float = 2.0, keep: Callable | None = None, run: Run = run_command,
          now: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Look, and unless ``dry_run`` look again after ``settle`` seconds and
    remove what both looks found, each with a log line. Returns ``{time,
    dry_run, found: [finding], removed: [finding], errors: [finding + error]}``."""
    first = findings(read(client, run), now(), dead_after, images_kept, volumes_kept)
    report = {"time": now(), "dry_run": dry_run, "found": [f.to_dict() for f in first], "removed": [], "errors": []}
    if dry_run or not first:
        for f in first:
            log.info("hygiene: found %s %s: %s", f.kind, f.name, f.why)
        return report
    sleep(settle)
    again = set(findings(read(client, run), now(), dead_after, images_kept, volumes_kept))
    for f in first:
        if f not in again:
            continue  # gone meanwhile, or in use again
        try:
            remove(client, f, keep)
        except Exception as err:  # noqa: BLE001 - one that cannot go never stops the others
            log.warning("hygiene: could not remove %s %s: %s", f.kind, f.name, err)
            report["errors"].append({**f.to_dict(), "error": str(err)[:300]})
            continue
        log.warning("hygiene: removed %s %s: %s", f.kind, f.name, f.why)
        report["removed"].append(f.to_dict())
    return report


def counts(report: dict) -> dict[str, int]:
    """``{found.KIND, removed.KIND, errors}`` (every kind, 0 if none): the metrics' values."""
    out = {f"{what}.{k}": 0 for what in ("found", "removed") for k in KINDS}
    for what in ("found", "removed"):
        for f in report.get(what) or []:
            out[f"{what}.{f['kind']}"] += 1
    out["errors"] = len(report.get("errors") or [])
    return out


def write_state(report: dict, path: Path = STATE) -> None:
    """The last report, whole or not at all (the metrics agent reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump({"time": report["time"], "counts": counts(report)}, fh)
    os.chmod(tmp, 0o644)  # counts only: readable by whatever reports them
    os.replace(tmp, path)
