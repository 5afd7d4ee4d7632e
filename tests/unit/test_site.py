"""The site's settings the master reads from its own pillar: the same report
a node gives (secrets redacted), and one line naming what is wrong."""

from pathlib import Path

import pytest

from bay_salt.master import site
from bay_salt.model import settings

CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULTS = settings.formula_defaults(CHECKOUT)
PILLAR = {"admins": ["platform"], "consul": {"acl": {"enabled": False}}, "teams": {"shop": ["alice"]},
          "nodes": {"node1": {"address": "10.0.0.2", "roles": ["worker"]}},
          "services": {"demo": {"image": "r/demo:1", "owners": ["shop"], "secret_env": {"TOKEN": "s3cret"},
                                "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 8000,
                                                   "listen": 10080}}}}}


def test_the_masters_view_is_what_a_node_reports_without_secrets():
    view = site.from_pillar(DEFAULTS, {"bay": PILLAR})
    node = site.report(settings.load(DEFAULTS, PILLAR, "node1", "10.0.0.2"))
    assert view == node
    assert view["admins"] == ["platform"] and view["consul"]["servers"] == ["10.0.0.2"]
    assert view["services"]["demo"]["secret_env"] == {"TOKEN": settings.REDACTED}


def test_a_pillar_that_does_not_render_or_validate_is_named():
    with pytest.raises(site.SiteError, match=r"^the master's pillar does not render: Rendering SLS 'site' failed"):
        site.from_pillar(DEFAULTS, {"_errors": ["Rendering SLS 'site' failed: mapping values\nmore"]})
    with pytest.raises(site.SiteError, match=r"^invalid pillar: bay:controller:stray_age"):
        site.from_pillar(DEFAULTS, {"bay": {**PILLAR, "controller": {"stray_age": -1}}})


def test_the_defaults_come_from_the_first_file_root_that_has_them(tmp_path):
    assert site.formula_defaults([str(tmp_path), str(CHECKOUT / "states")]) == DEFAULTS
    with pytest.raises(site.SiteError, match="bay/defaults.yaml is in none of the master's file_roots"):
        site.formula_defaults([str(tmp_path)])
