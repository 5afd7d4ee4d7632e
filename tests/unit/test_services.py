import json

import pytest

from bay_salt.model import services, units

FEED = {
    "image": "registry.bay:5000/feed:1.0",
    "owners": ["team-feed"],
    "env": {"LOG": "info"},
    "health": {"http": "/healthz", "interval": "2s", "timeout": "500ms"},
    "groups": {
        "read": {"instances": 8, "cpu": 1, "memory": "512Mi", "port": 8000, "listen": 10080},
        "write": {"instances": 2, "cpu": 2, "memory": "1Gi", "port": 8000, "listen": 10081,
                  "env": {"LOG": "debug"}, "health": {"tcp": True}},
    },
}


def test_groups_resolve_service_defaults():
    spec = services.parse({"feed": FEED})["feed"]
    g = spec.groups()
    assert g["read"].memory_mb == 512 and g["write"].memory_mb == 1024
    assert g["read"].image == "registry.bay:5000/feed:1.0"
    assert g["read"].health.http == "/healthz" and g["read"].health.timeout == 0.5
    assert g["write"].health.tcp is True
    assert g["write"].env == {"LOG": "debug"} and g["read"].env == {"LOG": "info"}
    assert g["read"].owners == ["team-feed"] and g["read"].name == "feed.read"


@pytest.mark.parametrize("value, mb", [("512Mi", 512), ("1Gi", 1024), ("1.5G", 1536), ("256m", 256), (64, 64),
                                       ("2048Ki", 2)])
def test_memory_sizes(value, mb):
    if mb < 4:
        with pytest.raises(ValueError, match="less than the 4 MiB"):
            units.memory_mb(value)
    else:
        assert units.memory_mb(value) == mb


def bad(path, value):
    spec = {"feed": __import__("copy").deepcopy(FEED)}
    node = spec["feed"]
    *parents, last = path
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    with pytest.raises(services.SpecError) as err:
        services.parse(spec)
    return str(err.value)


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("groups", "read", "memory"), "-5Mi", "feed.read: memory: '-5Mi' is not a memory size"),
        (("groups", "read", "cpu"), 0, "feed.read: cpu: Input should be greater than 0"),
        (("groups", "read", "instances"), -1, "feed.read: instances: Input should be greater than or equal to 0"),
        (("groups", "read", "listen"), 8500, "feed.read: listen: port 8500 is used by the node itself"),
        (("groups", "write", "listen"), 10080, "feed.write: listen: port 10080 is already the frontend of feed.read"),
        (("groups", "write", "colour"), "blue", "feed.write: colour: unknown field"),
        (("groups", "write", "health"), {"tcp": True, "http": "/x"}, "feed.write: health: give exactly one of"),
        (("health", "http"), "healthz", "feed: health:http: 'healthz' is not an absolute URL path"),
        (("owners",), [], "feed: owners: List should have at least 1 item"),
        (("image",), KeyError, "feed.read: image: no image here nor at the service level"),
        (("image",), "reg.example/bay/*:1", "feed: image: 'reg.example/bay/*:1' is not an image reference"),
        (("groups", "read", "image"), "127.0.0.1:5000/Bay/Feed", "feed.read: image: '127.0.0.1:5000/Bay/Feed' is not"),
        (("groups", "read", "autoscale"), {"min": 10, "max": 20, "target_cpu": 0.6},
         "feed.read: instances (8) is outside autoscale min..max (10..20)"),
        (("groups", "read", "autoscale"), {"min": 5, "max": 2, "target_cpu": 0.6},
         "feed.read: autoscale: min (5) is more than max (2)"),
        (("security",), {"cap_add": ["SYS_ADMIN", "NET_RAW"]},
         "feed: security:cap_add: SYS_ADMIN: only what Bay drops may be added back (NET_RAW, MKNOD)"),
        (("groups", "read", "security"), {"pids_limit": 1}, "feed.read: security:pids_limit: Input should be greater"),
    ],
)
def test_invalid_spec_names_service_group_and_field(path, value, expected):
    msg = bad(path, value)
    assert msg.startswith("invalid service spec: ")
    assert expected in msg, msg


def test_bad_names():
    with pytest.raises(services.SpecError, match="Feed: service name must match"):
        services.parse({"Feed": FEED})
    spec = __import__("copy").deepcopy(FEED)
    spec["groups"]["Read_1"] = spec["groups"].pop("read")
    with pytest.raises(services.SpecError, match="group name 'Read_1' must match"):
        services.parse({"feed": spec})


def test_every_problem_is_listed():
    spec = __import__("copy").deepcopy(FEED)
    spec["groups"]["read"]["cpu"] = -1
    spec["groups"]["write"]["memory"] = "lots"
    msg = str(pytest.raises(services.SpecError, services.parse, {"feed": spec}).value)
    assert "feed.read: cpu" in msg and "feed.write: memory" in msg


def test_secret_environment_travels_by_name_only():
    from bay_salt.model import settings

    raw = {"image": "r/a:1", "owners": ["t"], "env": {"MODE": "x"}, "secret_env": {"DB_PASSWORD": "hunter2"},
           "groups": {"web": {"instances": 1, "cpu": 0.1, "memory": 32, "port": 8000, "listen": 10080,
                              "secret_env": {"API_KEY": "k3y"}}}}
    g = services.parse({"a": raw})["a"].groups()["web"]
    assert g.secret_env == ["API_KEY", "DB_PASSWORD"] and "hunter2" not in g.model_dump_json()
    assert services.secret_values(raw, "web") == {"DB_PASSWORD": "hunter2", "API_KEY": "k3y"}
    shown = settings.redacted({"services": {"a": raw}})
    assert "hunter2" not in str(shown) and "k3y" not in str(shown)
    plain = dict(raw, secret_env={}, groups={"web": {k: v for k, v in raw["groups"]["web"].items()
                                                     if k != "secret_env"}})
    pg = services.parse({"a": plain})["a"].groups()["web"]
    import hashlib

    before = {k: pg.to_dict()[k] for k in services.SPEC_FIELDS}  # the hash groups had before secrets existed
    assert pg.spec_hash() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert g.spec_hash() != pg.spec_hash()
    with pytest.raises(services.SpecError, match="a.web: secret_env: MODE also in env"):
        services.parse({"a": dict(raw, secret_env={"MODE": "y"})})


def test_security_gives_back_only_what_bay_drops_and_a_group_without_it_keeps_its_hash():
    plain = services.parse({"feed": FEED})["feed"].groups()
    spec = json.loads(json.dumps(FEED))
    spec["security"] = {"cap_add": ["cap_net_raw"], "read_only": True}
    spec["groups"]["write"]["security"] = {"pids_limit": 64}
    groups = services.parse({"feed": spec})["feed"].groups()
    read, write = groups["read"].security, groups["write"].security
    assert read.cap_add == ["NET_RAW"] and read.read_only and read.pids_limit == services.PIDS_LIMIT
    assert write.cap_add == [] and not write.read_only and write.pids_limit == 64  # a group's replaces the whole
    assert plain["read"].security is None
    # a spec with security runs other containers (a roll); one without keeps the hash it always had
    assert groups["read"].spec_hash() != plain["read"].spec_hash()
    again = services.GroupSpec.from_dict(groups["read"].to_dict())
    assert again.security == read and again.spec_hash() == groups["read"].spec_hash()
