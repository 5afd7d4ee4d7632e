"""
Bay controller engine (runs in the salt-master): replaces dead containers,
handles nodes lost and back, resumes after a restart and autoscales; see
:mod:`bay_salt.control.engine`.

Master config::

    engines:
      - bay_controller: {}
"""

try:
    from bay_salt import saltloader
    from bay_salt.control import engine

    HAS_BAY = True
except ImportError:  # pragma: no cover
    HAS_BAY = False


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs the salt-master")
    return saltloader.virtual(__file__, "bay_controller")


def start(workers=8):
    """Run the control loop until the master stops."""
    engine.run(__opts__, workers)
