"""
Bay's dashboards in graphite-web (on a monitoring node): the platform's and
every service's, written where they differ from what the services pillar
makes. A thin adapter over :mod:`bay_salt.metrics.dashboards`; honours
``test=True``.

.. code-block:: yaml

    bay-monitoring-dashboards:
      bay_monitoring.dashboards_present:
        - name: bay
"""

try:
    from bay_salt import saltloader
    from bay_salt.metrics import dashboards

    HAS_BAY = True
except ImportError:  # pragma: no cover
    HAS_BAY = False

__virtualname__ = "bay_monitoring"


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs Salt")
    return saltloader.virtual(__file__, __virtualname__)


def dashboards_present(name):
    """
    Ensure graphite-web on this node holds Bay's dashboards as the
    ``bay:services`` pillar makes them.

    name
        a label for the state
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    cfg = __salt__["bay.settings"](redact=False)
    try:
        changed = dashboards.provision(cfg, dry_run=__opts__["test"])
    except OSError as exc:
        ret["comment"] = f"graphite-web: {exc}"
        return ret
    if not changed:
        ret.update(result=True, comment="Bay's dashboards are as declared")
    elif __opts__["test"]:
        ret.update(result=None, changes={"would write": changed}, comment=f"{len(changed)} to write")
    else:
        ret.update(result=True, changes={"written": changed}, comment=f"{len(changed)} written")
    return ret
