"""
Consul ACLs for Bay (on the Consul servers): each role's policy and token,
created or updated with the management token. A thin adapter over
:mod:`bay_salt.node.consul_acl`; honours ``test=True``; never shows a token.

.. code-block:: yaml

    bay-consul-acl:
      bay_consul.acl_present:
        - name: bay
"""

try:
    from bay_salt import saltloader
    from bay_salt.kv import store as kvstore
    from bay_salt.node import consul_acl

    HAS_BAY = True
except ImportError:  # pragma: no cover
    HAS_BAY = False

__virtualname__ = "bay_consul"


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs Salt")
    return saltloader.virtual(__file__, __virtualname__)


def acl_present(name, wait=120):
    """
    Ensure every Bay role's ACL policy and token, and every node's own agent
    token, exist as the pillar says (``bay:consul:acl:tokens``,
    ``bay:consul:acl:node_tokens``), using the management token against the local
    Consul agent.

    name
        a label for the state
    wait
        seconds to wait for the servers to elect a leader (a new cluster)
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    cfg = __salt__["bay.settings"](redact=False)
    acl = cfg["consul"]["acl"]
    if not acl["enabled"]:
        ret.update(result=True, comment="Consul ACLs are off (bay:consul:acl:enabled)")
        return ret
    client = kvstore.client("127.0.0.1", cfg["consul"]["http_port"], token=acl["tokens"]["management"])
    try:
        changed = consul_acl.ensure(client, acl["tokens"], dry_run=__opts__["test"], wait=float(wait),
                                    node_tokens=acl["node_tokens"], datacenter=cfg["consul"]["datacenter"])
    except Exception as exc:  # noqa: BLE001 - Consul's answer is the state's comment (it holds no secret)
        ret["comment"] = f"Consul ACLs: {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}"
        return ret
    if not changed:
        ret.update(result=True, comment="Bay's Consul policies and tokens are as declared")
    elif __opts__["test"]:
        ret.update(result=None, changes={"would change": changed}, comment=f"{len(changed)} to create or update")
    else:
        ret.update(result=True, changes={"changed": changed}, comment=f"{len(changed)} created or updated")
    return ret
