"""
Deploy Bay services from states (orchestrate or highstate on the master):

.. code-block:: yaml

    deploy-web:
      bay_service.running:
        - name: web

Honours ``test=True`` (reports the plan, changes nothing).
"""

try:
    from bay_salt import saltloader

    HAS_BAY = True
except ImportError:  # pragma: no cover
    HAS_BAY = False

__virtualname__ = "bay_service"


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs Salt")
    if "saltutil.runner" not in __salt__:
        return (False, "bay_service needs saltutil.runner (run it on the master: salt-run state.orchestrate)")
    return saltloader.virtual(__file__, __virtualname__)


def _runner(fun, *args):
    try:
        out = __salt__["saltutil.runner"](fun, arg=list(args))
    except Exception as exc:  # noqa: BLE001 - the runner's error is the state's comment
        return None, str(exc)
    if isinstance(out, dict):
        return out, ""
    return None, str(out)


def running(name):
    """
    Ensure service ``name`` runs as its ``bay:services`` pillar declares
    (instances, image, limits): scales and rolls through ``bay.deploy``.

    name
        the service, as declared under ``bay:services``
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    plan, err = _runner("bay.plan", name)
    if plan is None:
        ret["comment"] = err
        return ret
    pending = {g: p for g, p in plan.items() if p["start"] or p["stop"]}
    if not pending:
        ret.update(result=True, comment=f"{name} is as declared ({len(plan)} groups)")
        return ret
    if __opts__["test"]:
        ret.update(result=None, changes={"planned": pending}, comment=f"{name} would change {len(pending)} groups")
        return ret
    out, err = _runner("bay.deploy", name)
    if out is None:
        ret["comment"] = err
        return ret
    ret.update(result=True, changes={g: r for g, r in out.items() if r["started"] or r["stopped"]},
               comment="; ".join(r["summary"] for r in out.values()))
    return ret
