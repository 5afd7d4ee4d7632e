import pytest

from bay_salt.model import settings
from tests.helpers import CHECKOUT, REGISTRY_AUTH, TOKENS


@pytest.fixture(scope="module")
def defaults():
    return settings.formula_defaults(CHECKOUT)


def pillar(**extra):
    base = {
        "nodes": {
            "node1": {"address": "10.0.0.1"},
            "node2": {"address": "10.0.0.2", "roles": ["worker", "registry"]},
            "node3": {"address": "10.0.0.3"},
        },
        "consul": {"servers": ["node1", "node2", "node3"], "acl": {"tokens": TOKENS}},
        "registry": {"auth": REGISTRY_AUTH},
    }
    return settings.deep_merge(base, extra)


def test_defaults_alone_are_valid(defaults):
    cfg = settings.load(defaults, {})
    assert cfg["docker"]["log_max_file"] == 3
    assert cfg["consul"]["servers"] == []


def test_pillar_overrides_defaults_and_node_view(defaults):
    cfg = settings.load(defaults, pillar(docker={"log_max_size": "50M"}), "node2")
    assert cfg["docker"]["log_max_size"] == "50m"
    assert cfg["docker"]["log_max_file"] == 3  # untouched default survives the merge
    assert cfg["node"] == {"id": "node2", "address": "10.0.0.2", "roles": ["worker", "registry"], "consul_server": True}
    assert cfg["consul"]["server_addresses"] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_first_node_is_server_when_none_listed(defaults):
    p = pillar()
    p["consul"]["servers"] = []
    cfg = settings.load(defaults, p, "node3")
    assert cfg["consul"]["servers"] == ["node1"]
    assert cfg["node"]["consul_server"] is False


def test_own_address_from_grains_when_pillar_has_none(defaults):
    cfg = settings.load(defaults, {"nodes": {"n1": {}}, "consul": {"acl": {"tokens": TOKENS}}}, "n1",
                        own_address="192.0.2.7")
    assert cfg["node"]["address"] == "192.0.2.7"


@pytest.mark.parametrize(
    "bad, key, problem",
    [
        ({"nodes": {"node1": {"roles": ["database"]}}}, "bay:nodes:node1:roles", "unknown role 'database'"),
        ({"consul": {"servers": ["node1", "node9"]}}, "bay:consul:servers", "'node9' is not a node"),
        ({"docker": {"log_max_file": -1}}, "bay:docker:log_max_file", "greater than or equal to 1"),
        ({"docker": {"log_max_size": "-5m"}}, "bay:docker:log_max_size", "not a positive size"),
        ({"nodes": {"node2": {"address": "10.0.0.300"}}}, "bay:nodes:node2:address", "not an IP address"),
        ({"nodes": {"node2": {"address": "10.0.0.1"}}}, "bay:nodes:node2:address", "already the address of node1"),
        ({"haproxy": {"stats_port": 70000}}, "bay:haproxy:stats_port", "less than or equal to 65535"),
        ({"docker": {"registry": "no-port"}}, "bay:docker:registry", "not host:port"),
        ({"consul": {"source": "ftp"}}, "bay:consul:source", "'hashicorp'"),
        ({"dockr": {}}, "bay:dockr", "unknown key"),
        ({"mesos": {"enabled": True}}, "bay:mesos", "zk"),
        ({"consul": {"encrypt": "c2VjcmV0"}}, "bay:consul:encrypt", "not a base64-encoded"),
    ],
)
def test_invalid_pillar_names_key_and_problem(defaults, bad, key, problem):
    with pytest.raises(settings.SettingsError) as err:
        settings.load(defaults, settings.deep_merge(pillar(), bad))
    msg = str(err.value)
    assert msg.startswith("invalid pillar: ")
    assert key in msg, msg
    assert problem in msg, msg


def test_pillar_must_be_a_mapping(defaults):
    with pytest.raises(settings.SettingsError, match="bay: must be a mapping"):
        settings.load(defaults, ["node1"])


def test_pick_address_skips_loopback_and_docker_bridges():
    grains = {"lo": ["127.0.0.1"], "docker0": ["172.17.0.1"], "br-1a2b": ["172.20.0.1"], "eth0": ["10.1.2.3"]}
    assert settings.pick_address(grains) == "10.1.2.3"
    assert settings.pick_address({"lo": ["127.0.0.1"]}) is None


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": [1]}}
    out = settings.deep_merge(base, {"a": {"b": 2}})
    assert out == {"a": {"b": 2, "c": [1]}} and base == {"a": {"b": 1, "c": [1]}}


def test_gossip_key_is_never_echoed(defaults):
    secret = "dG9vLXNob3J0LXNlY3JldC1rZXk="  # base64, but 19 bytes
    with pytest.raises(settings.SettingsError) as err:
        settings.load(defaults, pillar(consul={"encrypt": secret}))
    assert secret not in str(err.value)
    good = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
    assert settings.load(defaults, pillar(consul={"encrypt": good}))["consul"]["encrypt"] == good


@pytest.mark.parametrize(
    "node, drop, key",
    [
        ("node3", "agent", "bay:consul:acl:tokens:agent: missing on node3"),
        ("node1", "controller", "bay:consul:acl:tokens:controller: missing on node1"),  # a server makes every token
        ("node2", "registry", "bay:consul:acl:tokens:registry: missing on node2"),
    ],
)
def test_each_node_needs_its_tokens(defaults, node, drop, key):
    p = pillar()
    p["consul"]["acl"]["tokens"] = {r: t for r, t in TOKENS.items() if r != drop}
    with pytest.raises(settings.SettingsError) as err:
        settings.load(defaults, p, node)
    assert key in str(err.value)
    assert not any(t in str(err.value) for t in TOKENS.values())  # no secret in the message


def test_a_worker_needs_only_its_own_tokens(defaults):
    p = pillar(nodes={"node4": {"address": "10.0.0.4"}})
    p["consul"]["acl"]["tokens"] = {r: TOKENS[r] for r in ("agent", "reader")}
    assert settings.load(defaults, p, "node4")["node"]["consul_server"] is False
    p["consul"]["acl"]["enabled"] = False
    p["consul"]["acl"]["tokens"] = {}
    assert settings.load(defaults, p, "node1")["consul"]["acl"]["enabled"] is False


def test_registry_nodes_need_the_secret_and_pullers_the_password(defaults):
    p = pillar(docker={"registry": "127.0.0.1:5000"})
    del p["registry"]["auth"]["secret"]
    with pytest.raises(settings.SettingsError, match="bay:registry:auth:secret: missing on node2"):
        settings.load(defaults, p, "node2")
    p = pillar(docker={"registry": "127.0.0.1:5000"})
    del p["registry"]["auth"]["node_password"]
    with pytest.raises(settings.SettingsError, match="bay:registry:auth:node_password: missing on node3"):
        settings.load(defaults, p, "node3")
    p["registry"]["auth"]["mode"] = "none"
    assert settings.load(defaults, p, "node3")["registry"]["auth"]["mode"] == "none"


def test_secrets_are_found_by_their_type_never_shown_and_given_whole_to_the_formula():
    """A Secret field is hidden everywhere it must be (a model's repr, a node's report to the master)
    without a list to keep: the paths come from the field types, and match what is declared secret."""
    from pydantic import BaseModel

    from bay_salt.model.base import Secret, Strict, redact, secret_paths

    class Inner(Strict):
        key: Secret = ""
        plain: str = ""

    class Outer(BaseModel):
        inner: Inner
        many: dict[str, Secret] = {}
        maybe: Inner | None = None

    assert secret_paths(Outer) == [("inner", "key"), ("many", "*"), ("maybe", "key")]
    o = Outer(inner={"key": "hunter2", "plain": "p"}, many={"a": "s1", "b": ""})
    assert "hunter2" not in repr(o) and "s1" not in repr(o)
    assert o.model_dump() == {"inner": {"key": "hunter2", "plain": "p"}, "many": {"a": "s1", "b": ""}, "maybe": None}
    shown = redact(o.model_dump(), secret_paths(Outer))
    assert shown == {"inner": {"key": settings.REDACTED, "plain": "p"},
                     "many": {"a": settings.REDACTED, "b": ""}, "maybe": None}
    assert o.model_dump(context={"redact": True}) == shown
    # the settings' own: every secret of the pillar's schema, the services' secret env too
    assert ("kafka", "password") in settings.SECRET_PATHS and ("consul", "acl", "tokens", "*") in settings.SECRET_PATHS
    assert ("services", "*", "groups", "*", "secret_env", "*") in settings.SECRET_PATHS
    with pytest.raises(settings.SettingsError) as err:
        settings.load(settings.formula_defaults(CHECKOUT), {"consul": {"encrypt": "not-a-key-hunter2"}})
    assert "hunter2" not in str(err.value) and "bay:consul:encrypt" in str(err.value)
