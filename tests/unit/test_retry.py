"""util/retry: Bay's one retry policy, and the loops that use it."""

import pytest

from bay_salt.util import retry


def test_until_names_what_it_waited_for_and_the_last_error():
    calls = []

    def never():
        calls.append(1)
        raise OSError("connection refused")

    with pytest.raises(retry.GaveUp, match=r"the socket: not reached within 0.05 s \(last error: connection refused\)"):
        retry.until(never, "the socket", timeout=0.05, interval=0.01)
    assert len(calls) >= 2


def test_jitter_adds_at_most_its_seconds_to_each_wait():
    slept = []
    attempts = iter(range(4))

    def flaky():
        if next(attempts) < 3:
            raise ValueError("not yet")
        return "done"

    assert retry.call(flaky, "x", attempts=5, interval=0.5, jitter=1.0, on=(ValueError,), sleep=slept.append) == "done"
    assert len(slept) == 3 and all(0.5 <= s <= 1.5 for s in slept)


def test_consul_acl_reads_again_and_retries_when_another_server_created_the_same_policy(monkeypatch):
    """Every Consul server applies the ACL set-up at once on a new cluster: what another one
    created meanwhile ("already exists") is read again and the set-up tried again, with jitter."""
    import consul

    from bay_salt.node import consul_acl

    class Status:
        def leader(self):
            return "10.0.0.1:8300"

    class HTTP:
        gets = 0

        def get(self, callback, path, headers=None):
            HTTP.gets += 1
            return [{"Name": "other", "ID": "1"}]

    class Client:
        status, http = Status(), HTTP()

        def prepare_headers(self, token):
            return {}

    seen = []

    def apply(call, listed, tokens, dry_run):
        seen.append(listed)
        if len(seen) < 3:
            raise consul.ConsulException("Invalid Policy: A Policy with Name \"bay-node\" already exists")
        return ["policy bay-node"]

    monkeypatch.setattr(consul_acl, "_apply", apply)
    monkeypatch.setattr(consul_acl, "_nodes", lambda *a: [])
    assert consul_acl.ensure(Client(), {"node": "x"}) == ["policy bay-node"]
    assert len(seen) == 3 and HTTP.gets == 3  # the first read, then once after each race (about 2 s of waits)

    def refused(call, listed, tokens, dry_run):
        raise consul.ConsulException("Permission denied")

    monkeypatch.setattr(consul_acl, "_apply", refused)
    with pytest.raises(consul.ConsulException, match="Permission denied"):
        consul_acl.ensure(Client(), {"node": "x"})


def test_at_boot_tries_until_it_works_and_warns_each_time(caplog):
    slept, answers = [], iter([OSError("refused"), OSError("refused"), "up"])

    def comes_up():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    with caplog.at_level("WARNING", logger="bay.retry"):
        assert retry.at_boot(comes_up, "HDFS nn1:9870", interval=5, sleep=slept.append) == "up"
    assert slept == [5, 5]
    assert [r.getMessage() for r in caplog.records] == ["HDFS nn1:9870: not yet (refused); trying again in 5 s"] * 2
    with pytest.raises(ValueError):  # what is not "not up yet" ends it at once
        retry.at_boot(lambda: int("x"), "x", on=(OSError,), sleep=slept.append)
