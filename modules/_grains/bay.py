"""
Bay grains: the node's capacity for placement (``bay_capacity``).
"""

try:
    from bay_salt import saltloader
    from bay_salt.node import capacity

    HAS_BAY = True
except ImportError:  # pragma: no cover - depends on the minion's Python
    HAS_BAY = False


def __virtual__():
    if not HAS_BAY:
        return (False, "bay_salt is not installed in the Python that runs Salt")
    return saltloader.virtual(__file__, "bay")


def bay_capacity():
    """CPUs and MiB of memory this node can give to containers."""
    return {"bay_capacity": {"cpus": capacity.cpus(), "memory_mb": capacity.memory_mb()}}
