"""A real salt-master and salt-minion on the host (pytest-salt-factories),
serving this checkout's states/ and modules/. States are only rendered or
applied with test=True here: the host is never turned into a Bay node."""

import pytest

from tests.helpers import CHECKOUT, REGISTRY_AUTH, TOKENS


@pytest.fixture(scope="package")
def salt_master(salt_factories):
    overrides = {
        "file_roots": {"base": [str(CHECKOUT / "states")]},
        "auto_accept": False,
    }
    factory = salt_factories.salt_master_daemon("bay-func-master", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="package")
def salt_minion(salt_master):
    factory = salt_master.salt_minion_daemon("bay-func-minion")
    with factory.started():
        yield factory


@pytest.fixture
def salt_call(salt_minion):
    return salt_minion.salt_call_cli(timeout=120)


#: closed by default: the nodes' Consul tokens and the registry's auth are part of a valid pillar
VALID_PILLAR = f"""
bay:
  nodes:
    bay-func-minion:
      address: 10.9.0.1
      roles: [worker]
    other:
      address: 10.9.0.2
  consul:
    source: debian-bullseye
    servers: [bay-func-minion, other]
    acl:
      tokens:
        management: {TOKENS["management"]}
        agent: {TOKENS["agent"]}
        reader: {TOKENS["reader"]}
        registry: {TOKENS["registry"]}
        controller: {TOKENS["controller"]}
  registry:
    storage: file:///var/lib/bay-registry
    auth:
      secret: {REGISTRY_AUTH["secret"]}
      node_password: {REGISTRY_AUTH["node_password"]}
      users:
        node: "{REGISTRY_AUTH["users"]["node"]}"
"""


@pytest.fixture
def pillar(salt_master, salt_call):
    """Set the `bay` pillar for one test: ``pillar(text)``; removed afterwards."""
    files = []

    def set_pillar(text):
        top = salt_master.pillar_tree.base.temp_file("top.sls", "base:\n  '*':\n    - bay\n")
        bay = salt_master.pillar_tree.base.temp_file("bay.sls", text)
        for f in (top, bay):
            f.__enter__()
            files.append(f)
        assert salt_call.run("saltutil.refresh_pillar", wait=True).returncode == 0

    yield set_pillar
    for f in reversed(files):
        f.__exit__(None, None, None)
