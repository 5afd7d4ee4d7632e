"""Consul ACLs for Bay: one policy per role, with the least rights it needs,
and a token per role whose SecretID the site chooses (pillar), so the same
token is known where it is needed without ever being read back from Consul.

    agent       a node's agent without a token of its own: any node, read services
    node_tokens each node's own agent token: Consul's node identity (write
                that node only, read services), so one node's root cannot
                deregister another
    reader      bay-lb-sync and bay-events: read what Bay keeps under bay/
    registry    bay-registry's own registration: bay/instances|routes/bay-registry/
    controller  the masters (runner, engines): write bay/, read nodes, services,
                agents and the operator (Raft, autopilot) state, sessions
                (the leader locks)

Anonymous requests get nothing (default deny). :func:`ensure` creates or
updates policies and tokens through the HTTP API with the management token;
it never prints a secret.
"""

from __future__ import annotations

import uuid

import consul
import requests
from consul.callback import CB

from bay_salt.model import names
from bay_salt.util import retry

PREFIX = names.KV_PREFIX
POLICIES = {
    "agent": 'node_prefix "" { policy = "write" }\nservice_prefix "" { policy = "read" }\n',
    "reader": f'key_prefix "{PREFIX}/" {{ policy = "read" }}\n',
    "registry": (f'key_prefix "{PREFIX}/instances/{names.REGISTRY_SERVICE}/" {{ policy = "write" }}\n'
                 f'key_prefix "{PREFIX}/routes/{names.REGISTRY_SERVICE}/" {{ policy = "write" }}\n'),
    "controller": (f'key_prefix "{PREFIX}/" {{ policy = "write" }}\nnode_prefix "" {{ policy = "read" }}\n'
                   'service_prefix "" { policy = "read" }\nagent_prefix "" { policy = "read" }\n'
                   'operator = "read"\n'
                   # the masters' leader locks (bay_salt.master.leader) are sessions
                   'session_prefix "" { policy = "write" }\n'),
}
#: Consul's answers while a new cluster's ACL system is not ready yet
_NOT_YET = ("legacy mode", "No cluster leader")
#: a fixed namespace: a token's AccessorID follows from its SecretID, so a second run finds it
_NS = uuid.UUID("5f1d7e0a-6c3b-4b7e-9a43-2b0c1e9d8f70")


def policy_name(role: str) -> str:
    return f"bay-{role}"


def accessor(secret: str) -> str:
    return str(uuid.uuid5(_NS, secret))


def ensure(client: consul.Consul, tokens: dict[str, str], dry_run: bool = False, wait: float = 120.0,
           node_tokens: dict[str, str] | None = None, datacenter: str = "dc1") -> list[str]:
    """Every role in ``tokens`` (but management) with its policy and its
    token, and each node's own token in ``node_tokens`` with its node
    identity, as written here; ``client`` carries the management token.
    Returns what was (or, with ``dry_run``, would be) created or changed, by name."""
    headers = client.prepare_headers(None)

    def call(method, path, body=None):
        fn = getattr(client.http, method)
        return fn(CB.json(), path, headers=headers, **({"data": _dumps(body)} if body is not None else {}))

    def policies():
        # a new cluster elects its leader while the servers come up, and
        # Consul 1.8 serves its ACL API in legacy mode until every server has
        # left it (a few seconds after the election): both are "not yet"
        if not client.status.leader():
            return None
        try:
            return (call("get", "/v1/acl/policies") or [],)
        except consul.ConsulException as err:
            if any(m in str(err) for m in _NOT_YET):
                return None
            raise

    (listed,) = retry.until(policies, "Consul's ACL system (a leader, out of legacy mode)", timeout=wait,
                            interval=1, on=(requests.exceptions.RequestException, OSError))
    # every Consul server applies this at once on a new cluster: what another
    # one created meanwhile ("already exists", "already in use") is read again
    seen = [listed]

    def apply_once() -> list[str]:
        try:
            return _apply(call, seen[0], tokens, dry_run) + _nodes(call, node_tokens or {}, datacenter, dry_run)
        except consul.ConsulException as err:
            if "already" not in str(err):
                raise
            seen[0] = call("get", "/v1/acl/policies") or []
            raise _Raced(str(err)) from err

    try:
        return retry.call(apply_once, "Consul's ACL policies and tokens", attempts=6, interval=0.5, jitter=1.0,
                          on=(_Raced,))
    except _Raced as err:
        raise err.__cause__ from None


class _Raced(Exception):
    """Another Consul server created the same policy or token meanwhile: read again, try again."""


def _apply(call, listed: list[dict], tokens: dict[str, str], dry_run: bool) -> list[str]:
    existing = {p["Name"]: p for p in listed}
    changed = []
    for role, secret in sorted(tokens.items()):
        if role not in POLICIES:
            continue
        name, rules = policy_name(role), POLICIES[role]
        have = existing.get(name)
        if have is None or call("get", f"/v1/acl/policy/{have['ID']}").get("Rules") != rules:
            changed.append(f"policy {name}")
            if not dry_run:
                if have is None:
                    call("put", "/v1/acl/policy", {"Name": name, "Rules": rules,
                                                   "Description": f"Bay: {role}"})
                else:
                    call("put", f"/v1/acl/policy/{have['ID']}", {"Name": name, "Rules": rules,
                                                                 "Description": f"Bay: {role}"})
        acc = accessor(secret)
        try:
            token = call("get", f"/v1/acl/token/{acc}")
        except consul.ConsulException:
            token = None
        wanted = {"AccessorID": acc, "SecretID": secret, "Description": f"Bay {role}",
                  "Policies": [{"Name": name}]}
        if not token or [p.get("Name") for p in token.get("Policies") or []] != [name]:
            changed.append(f"token {role}")
            if not dry_run:
                call("put", f"/v1/acl/token/{acc}" if token else "/v1/acl/token", wanted)
    return changed


def _nodes(call, node_tokens: dict[str, str], datacenter: str, dry_run: bool) -> list[str]:
    changed = []
    for node, secret in sorted(node_tokens.items()):
        acc = accessor(secret)
        identity = [{"NodeName": node, "Datacenter": datacenter}]
        try:
            token = call("get", f"/v1/acl/token/{acc}")
        except consul.ConsulException:
            token = None
        have = [{"NodeName": i.get("NodeName"), "Datacenter": i.get("Datacenter")}
                for i in (token or {}).get("NodeIdentities") or []]
        if not token or have != identity or token.get("Policies"):
            changed.append(f"token agent of {node}")
            if not dry_run:
                call("put", f"/v1/acl/token/{acc}" if token else "/v1/acl/token",
                     {"AccessorID": acc, "SecretID": secret, "Description": f"Bay agent of {node}",
                      "NodeIdentities": identity, "Policies": []})
    return changed


def _dumps(body) -> str:
    import json

    return json.dumps(body)
