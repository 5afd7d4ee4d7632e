"""The example pillar stays valid and documents every key of defaults.yaml."""

import yaml

from bay_salt.model import settings
from tests.helpers import CHECKOUT


def keys(tree, prefix=""):
    out = set()
    for k, v in tree.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k not in ("nodes", "attributes", "resources"):
            out |= keys(v, prefix + k + ":")
    return out


def test_example_pillar_is_valid_and_complete():
    example = yaml.safe_load((CHECKOUT / "pillar/bay.sls").read_text())["bay"]
    defaults = settings.formula_defaults(CHECKOUT)
    cfg = settings.load(defaults, example, "bay-a2")
    assert cfg["node"]["roles"] == ["worker", "registry"] and cfg["node"]["consul_server"]
    missing = keys(defaults) - keys(example)
    assert not missing, f"pillar/bay.sls does not document: {sorted(missing)}"
