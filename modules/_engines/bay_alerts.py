"""
Bay's alert evaluator (runs in the salt-master): evaluates the alert rules
over Bay's state and Graphite, routes alerts to services' owners and the
platform team, sends e-mail and webhooks; see :mod:`bay_salt.alerts.engine`
and docs/alerts.md.

Master config::

    engines:
      - bay_alerts:
          graphite_user: bay
          graphite_password_file: /etc/bay/graphite-web.password
"""

try:
    from bay_salt import saltloader
    from bay_salt.alerts import engine

    HAS_BAY = True
except ImportError:  # pragma: no cover
    HAS_BAY = False


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs the salt-master")
    return saltloader.virtual(__file__, "bay_alerts")


def start(graphite_user="", graphite_password_file="", ca_file="/etc/bay/ca.pem"):
    """Evaluate and notify until the master stops."""
    engine.run(__opts__, graphite_user, graphite_password_file, ca_file)
