"""Bay's loader modules through Salt's own loaders (pytest-salt-factories
``Loaders`` and ``salt.loader``), with no daemon and no sync: the execution
modules, the state, the runner, the engine and the grain come from the
installed bay-salt package (the ``salt.loader`` entry point), and a stale
copy synced from a file server is refused with a message saying what to do."""

import shutil

import pytest
import salt.loader
import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError
from saltfactories.utils.functional import Loaders

from bay_salt import saltloader
from tests.functional.conftest import VALID_PILLAR
from tests.helpers import CHECKOUT

DEFAULTS = yaml.safe_load((CHECKOUT / "states/bay/defaults.yaml").read_text())["bay"]


@pytest.fixture(scope="module")
def minion_opts(salt_factories):
    factory = salt_factories.salt_minion_daemon("bay-loaders-minion", overrides={"file_client": "local"})
    return dict(factory.config, pillar=yaml.safe_load(VALID_PILLAR.replace("bay-func-minion", "bay-loaders-minion")))


@pytest.fixture(scope="module")
def master_opts(salt_factories):
    return dict(salt_factories.salt_master_daemon("bay-loaders-master").config)


@pytest.fixture
def loaders(minion_opts):
    loaders = Loaders(minion_opts)
    try:
        yield loaders
    finally:
        loaders.reset_state()


def test_the_modules_come_from_the_package(loaders):
    dirs = saltloader.loader_dirs()
    assert all(d[0].startswith(saltloader.root()) for d in dirs.values())
    assert "bay.settings" in loaders.modules and "bay_docker.run" in loaders.modules
    assert saltloader.foreign(loaders.modules.bay.settings.__globals__["__file__"]) is None


def test_execution_module_validates_and_views_this_node(loaders):
    cfg = loaders.modules.bay.settings(defaults=DEFAULTS)
    assert cfg["node"]["id"] == "bay-loaders-minion" and cfg["node"]["address"] == "10.9.0.1"
    assert loaders.modules.bay.consul_config(cfg)["server"] is True


def test_execution_module_names_a_bad_pillar_key(minion_opts):
    bad = dict(minion_opts, pillar={"bay": {"docker": {"log_max_size": "-1m"}}})
    loaders = Loaders(bad)
    try:
        with pytest.raises(CommandExecutionError, match="bay:docker:log_max_size: '-1m' is not a positive size"):
            loaders.modules.bay.settings(defaults=DEFAULTS)
    finally:
        loaders.reset_state()


def test_docker_module_lists_the_hosts_bay_containers(loaders):
    assert isinstance(loaders.modules.bay_docker.instances(), list)


def test_state_plans_with_test_true_and_deploys_otherwise(minion_opts):
    """``bay_service.running`` through Salt's states loader, with the master's
    runner (``saltutil.runner``) answering as bay.plan and bay.deploy do."""
    calls = []

    def runner(fun, arg=None):
        calls.append(fun)
        if fun == "bay.plan":
            return {"demo.web": {"start": 1, "stop": 0, "roll": False, "desired": 2}}
        return {"demo.web": {"summary": "demo.web: scaled to 2 (+1 -0)", "started": ["a"], "stopped": []}}

    def states(test):
        opts = dict(minion_opts, test=test)
        return salt.loader.states(opts, {"saltutil.runner": runner}, salt.loader.utils(opts),
                                  salt.loader.serializers(opts))

    ret = states(True)["bay_service.running"]("demo")
    assert ret["result"] is None and ret["changes"]["planned"]["demo.web"]["start"] == 1 and calls == ["bay.plan"]
    ret = states(False)["bay_service.running"]("demo")
    assert ret["result"] is True and "scaled to 2" in ret["comment"] and calls[-1] == "bay.deploy"


def test_runner_and_engine_load_in_the_master(master_opts):
    runners = salt.loader.runner(master_opts)
    assert "bay.deploy" in runners and "bay.status" in runners
    with pytest.raises(SaltInvocationError, match=r"usage: bay.scale SERVICE.GROUP COUNT"):
        runners["bay.scale"]("demo", "x")
    utils = salt.loader.utils(master_opts)
    engines = salt.loader.engines(master_opts, {}, runners, utils)
    assert "bay_controller.start" in engines and "bay_alerts.start" in engines
    assert {"bay.alerts", "bay.silence", "bay.silences", "bay.unsilence"} <= set(runners)
    with pytest.raises(SaltInvocationError, match=r"usage: bay.silence LABEL=VALUE"):
        runners["bay.silence"](duration="2h")


def test_grain_reports_capacity(minion_opts):
    grains = salt.loader.grains(minion_opts, force_refresh=True)
    assert grains["bay_capacity"]["cpus"] > 0 and grains["bay_capacity"]["memory_mb"] > 0


def test_a_stale_synced_copy_is_refused(minion_opts, tmp_path):
    """A copy of a Bay module in extmods (a sync from an old file_roots) is
    loaded before the package's: it refuses itself and says what to do."""
    extmods = tmp_path / "extmods"
    (extmods / "modules").mkdir(parents=True)
    shutil.copy(CHECKOUT / "modules/_modules/bay_docker.py", extmods / "modules/bay_docker.py")
    opts = dict(minion_opts, extension_modules=str(extmods), grains={})
    modules = salt.loader.minion_mods(opts)
    assert "bay_docker.run" not in modules
    why = modules.missing_fun_string("bay_docker.run")
    assert "is not the Bay module installed with bay_salt" in why and "saltutil.clear_cache" in why
