"""The distribution ships every package and the loader modules, and Salt
finds them through the entry point."""

import importlib.metadata
import os
import subprocess
import tomllib

import pytest

from bay_salt import saltloader
from tests.helpers import CHECKOUT


def test_every_package_is_listed():
    listed = set(tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(CHECKOUT).parent.parts) for p in (CHECKOUT / "bay_salt").rglob("__init__.py")}
    assert found | {"bay_salt.saltext"} == listed


def test_salt_finds_the_loader_modules_through_the_entry_point():
    eps = [ep for ep in importlib.metadata.entry_points(group="salt.loader") if ep.value.startswith("bay_salt")]
    assert [ep.value for ep in eps] == ["bay_salt.saltloader:loader_dirs"]
    dirs = eps[0].load()()
    assert sorted(dirs) == ["engines", "grains", "modules", "runners", "states"]
    for kind, (path,) in dirs.items():
        assert any(f.suffix == ".py" for f in __import__("pathlib").Path(path).iterdir()), kind
    assert saltloader.foreign(str(CHECKOUT / "modules/_modules/bay.py")) is None
    assert "not the Bay module installed" in saltloader.foreign("/var/cache/salt/minion/extmods/modules/bay.py")


def test_the_node_image_installs_what_pyproject_declares_now():
    """The wheelhouse and the node image follow the checkout's pyproject.toml,
    not metadata installed before it changed."""
    from bay_salt.cluster import images

    declared = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert images.runtime_requirements() == sorted(declared)
    assert "pyjwt>=2.8" in images.runtime_requirements()


@pytest.mark.parametrize("playbook", sorted(p.name for p in (CHECKOUT / "playbooks").glob("*.yml")))
def test_every_playbook_passes_ansibles_syntax_check(playbook):
    """A playbook Ansible cannot parse would otherwise only show in the e2e bootstrap test."""
    res = subprocess.run(
        [str(CHECKOUT / ".venv/bin/ansible-playbook"), "--syntax-check", "-i", "localhost,", playbook],
        cwd=CHECKOUT / "playbooks", capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PATH=f"{CHECKOUT / '.venv/bin'}:{os.environ['PATH']}"),
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
