"""Host firewall rules for the local cluster's HDFS.

`bay up` runs the registry's HDFS (a MiniDFSCluster) on this machine, on the
cluster network's gateway. WebHDFS with simple authentication believes any
`user.name` a client gives, so anything that reaches its ports could rewrite
the registry's tags. These rules let only the registry nodes (and this
machine) reach the JVM's ports; everything else gets a TCP reset. A site's
own HDFS is secured by the site (Kerberos); Bay does not touch its firewall.

:func:`plan` and :func:`removal` are pure (unit-tested); :func:`apply` and
:func:`remove` run them with iptables.
"""

from __future__ import annotations

import re
import subprocess

#: iptables chain names are at most 28 characters
_MAX_CHAIN = 28
#: iptables' multiport match takes at most 15 ports
_MULTIPORT = 15


class FirewallError(RuntimeError):
    """iptables refused a rule; the message names it."""


def chain(cluster: str) -> str:
    return f"BAY-HDFS-{cluster}"[:_MAX_CHAIN]


def plan(cluster: str, gateway: str, ports: list[int], allowed: list[str]) -> list[list[str]]:
    """iptables argument lists that send TCP for ``ports`` on ``gateway`` to
    the cluster's chain, where ``allowed`` sources and loopback pass and the
    rest is reset."""
    if not ports:
        raise ValueError("no ports to protect")
    name = chain(cluster)
    out = [["-N", name], ["-A", name, "-i", "lo", "-j", "RETURN"]]
    out += [["-A", name, "-s", ip, "-j", "RETURN"] for ip in allowed]
    out.append(["-A", name, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])
    ports = sorted(set(ports))
    for i in range(0, len(ports), _MULTIPORT):
        chunk = ",".join(str(p) for p in ports[i:i + _MULTIPORT])
        out.append(["-I", "INPUT", "-d", gateway, "-p", "tcp", "-m", "multiport", "--dports", chunk, "-j", name])
    return out


def removal(cluster: str, input_rules: str) -> list[list[str]]:
    """iptables argument lists that remove the cluster's rules, given
    ``iptables -S INPUT``: every INPUT rule jumping to its chain, then the chain."""
    name = chain(cluster)
    out = []
    for line in input_rules.splitlines():
        parts = line.split()
        if parts[:2] == ["-A", "INPUT"] and parts[-2:] == ["-j", name]:
            out.append(["-D", *parts[1:]])
    return out + [["-F", name], ["-X", name]]


def listening_ports(pid: int, ss_output: str) -> list[int]:
    """The TCP ports process ``pid`` listens on, from ``ss -Hltnp``."""
    ports = set()
    for line in ss_output.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            m = re.search(r":(\d+)$", local)
            if m:
                ports.add(int(m.group(1)))
    return sorted(ports)


def _iptables(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise FirewallError(f"iptables {' '.join(args)}: {res.stderr.strip() or 'failed'}")
    return res


def apply(cluster: str, gateway: str, pid: int, allowed: list[str]) -> list[int]:
    """Protect every TCP port process ``pid`` listens on; returns the ports."""
    ss = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    ports = listening_ports(pid, ss)
    remove(cluster)  # a second `bay up` replaces the rules
    for args in plan(cluster, gateway, ports, allowed):
        _iptables(args)
    return ports


def remove(cluster: str) -> bool:
    """Remove the cluster's rules, if any; True if there were some."""
    if _iptables(["-S", chain(cluster)], check=False).returncode != 0:
        return False
    for args in removal(cluster, _iptables(["-S", "INPUT"]).stdout):
        _iptables(args, check=False)
    return True
