import logging
from pathlib import Path

import pytest

# Salt's log handlers flush once more at interpreter exit, after pytest has
# closed its capture streams; without this every run ends in pages of
# "--- Logging error ---" that hide the real result.
logging.raiseExceptions = False

#: every test carries the marker of its tier (its folder), so `-m` selects tiers:
#: `pytest -m "not e2e"` runs everything that needs no `bay up` cluster
TIERS = ("unit", "functional", "integration", "e2e")
HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier before `-m` deselects (tryfirst: ahead of pytest's own -m filter)."""
    for item in items:
        try:
            tier = Path(item.path).resolve().relative_to(HERE).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
