"""The registry's access policy: credentials, grants, tokens cut to what a
user may, grants derived from the services pillar."""

import base64

from bay_salt.registry import auth


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


POLICY = auth.Policy.from_dict({
    "mode": "token", "secret": "s3cret-s3cret-s3cret-s3cret-s3cret!", "token_ttl": 60,
    "users": {"alice": auth.hash_password("wonder"), "node": auth.hash_password("pulls"),
              "root": auth.hash_password("admin")},
    "grants": auth.grants_for({"demo": {"image": "127.0.0.1:5000/bay/demo:1", "owners": ["team-demo"],
                                        "groups": {"web": {"image": "127.0.0.1:5000/bay/demo-web:2"}}}},
                              "127.0.0.1:5000", admins=["root"], node_user="node",
                              teams={"team-demo": ["alice"]}),
})


def test_login_with_the_right_password_only():
    assert POLICY.login(basic("alice", "wonder")) == "alice"
    assert POLICY.login(basic("alice", "wrong")) is None
    assert POLICY.login(basic("mallory", "x")) is None and POLICY.login(None) is None
    assert POLICY.login("Basic !!!not-base64") is None


def test_a_verified_password_is_remembered_briefly_and_never_kept_in_clear(monkeypatch):
    policy = auth.Policy.from_dict({"mode": "token", "secret": "x" * 32, "users": {"bob": auth.hash_password("pw")}})
    calls = []
    real = auth.bcrypt.checkpw
    monkeypatch.setattr(auth.bcrypt, "checkpw", lambda *a: calls.append(1) or real(*a))
    assert policy.login(basic("bob", "pw")) == policy.login(basic("bob", "pw")) == "bob"
    assert len(calls) == 1
    assert policy.login(basic("bob", "other")) is None and len(calls) == 2  # wrong ones always checked
    assert not any(b"pw" in k for k in policy._checked) and all(isinstance(k, bytes) for k in policy._checked)
    policy.users["bob"] = auth.hash_password("new")  # a changed password: the old one no longer passes
    assert policy.login(basic("bob", "pw")) is None
    assert policy.login(basic("bob", "new")) == "bob"


def test_owners_push_their_repositories_nodes_pull_admins_everything():
    assert POLICY.allowed("alice", "bay/demo") == {"pull", "push", "delete"}
    assert POLICY.allowed("alice", "bay/demo-web") == {"pull", "push", "delete"}
    assert POLICY.allowed("alice", "bay/other") == set()
    assert POLICY.allowed("node", "bay/other") == {"pull"}
    assert POLICY.allowed("root", "anything/at/all") == {"pull", "push", "delete"}
    assert POLICY.allowed(None, "bay/demo") == set()
    assert POLICY.may_list_catalog("root") and not POLICY.may_list_catalog("alice")


def test_tokens_carry_only_what_was_granted_and_expire():
    out = POLICY.issue("alice", ["repository:bay/demo:pull,push repository:bay/other:push,pull"])
    claims = POLICY.bearer("Bearer " + out["token"])
    assert auth.token_allows(claims, "repository", "bay/demo", "push")
    assert not auth.token_allows(claims, "repository", "bay/other", "pull")
    assert POLICY.bearer("Bearer " + out["token"] + "x") is None  # tampered
    forged = auth.Policy(mode="token", secret="other-other-other-other-other-other").issue("alice", ["repository:bay/other:push"])
    assert POLICY.bearer("Bearer " + forged["token"]) is None  # signed with another secret
    expired = auth.Policy(mode="token", secret="s3cret-s3cret-s3cret-s3cret-s3cret!", token_ttl=-60,
                          grants=POLICY.grants).issue("alice", ["repository:bay/demo:pull"])
    assert POLICY.bearer("Bearer " + expired["token"]) is None


def test_anonymous_pull_only_when_turned_on():
    open_pull = auth.Policy(mode="token", secret="x" * 32, anonymous_pull=True)
    assert open_pull.allowed(None, "bay/demo") == {"pull"}


def test_repository_names_from_image_references():
    assert auth.repository_of("127.0.0.1:5000/bay/demo:1", "127.0.0.1:5000") == "bay/demo"
    assert auth.repository_of("registry.example:5000/team/app@sha256:" + "a" * 64, "x") == "team/app"
    assert auth.repository_of("bay/demo", "x") == "bay/demo"
    assert auth.repository_of("localhost/app:2", "x") == "app"


def test_a_changed_policy_file_is_taken_on_reload_but_not_a_change_of_mode(tmp_path):
    """SIGHUP (systemctl reload) reads the file again: new grants apply to the
    next request; a file that does not parse, or switches token/basic/none
    (which needs a restart), leaves the current policy in place."""
    import json

    from bay_salt.registry.server import Server, reload_policy

    srv = Server(None, policy=POLICY)
    path = tmp_path / "registry-auth.json"
    grants = {"bob": [{"repository": "bay/new", "actions": ["pull", "push"]}]}
    path.write_text(json.dumps({"mode": "token", "secret": "x" * 32, "grants": grants}))
    assert reload_policy(srv, str(path)) and "push" in srv.policy.allowed("bob", "bay/new")
    taken = srv.policy
    path.write_text(json.dumps({"mode": "none"}))
    assert not reload_policy(srv, str(path)) and srv.policy is taken
    path.write_text("{not json")
    assert not reload_policy(srv, str(path)) and srv.policy is taken


def test_an_image_name_with_a_glob_grants_nothing():
    grants = auth.grants_for({"evil": {"image": "127.0.0.1:5000/bay/*:1", "owners": ["mallory"],
                                       "groups": {"web": {"image": "127.0.0.1:5000/bay/evil:1"}}}},
                             "127.0.0.1:5000", admins=[], node_user="node")
    assert grants["mallory"] == [{"repository": "bay/evil", "actions": ["pull", "push", "delete"]}]


def test_two_services_of_one_image_and_owner_make_one_grant():
    """The grants depend on what is granted, not on how many services say it
    (a second apply after such a service goes changes nothing)."""
    one = {"demo": {"image": "127.0.0.1:5000/bay/demo:1", "owners": ["team"]}}
    two = {**one, "tiny": {"image": "127.0.0.1:5000/bay/demo:2", "owners": ["team"]}}
    grants = [auth.grants_for(s, "127.0.0.1:5000", admins=[], node_user="node") for s in (one, two)]
    assert grants[0] == grants[1]
    assert grants[1]["team"] == [{"repository": "bay/demo", "actions": ["pull", "push", "delete"]}]
