"""Objects that hold a secret name none in their repr: a repr ends up in
tracebacks, logs and test reports (a CI report once showed a password)."""

from bay_salt.cluster.sitefiles import Secrets
from bay_salt.logs.kafka import Client
from bay_salt.metrics.render import RenderClient
from bay_salt.registry.auth import Policy


def test_no_secret_in_a_repr():
    s = Secrets.new()
    shown = " ".join(repr(o) for o in (
        s, RenderClient("https://g:8088", "bay", "pw-render-1"), Client("k:9092", "bay", "pw-kafka-2"),
        Policy("token", "secret-policy-3", users={"alice": "hash-4"})))
    for secret in ("pw-render-1", "pw-kafka-2", "secret-policy-3", "hash-4", s.admin_password,
                   s.registry_secret, s.kafka_password, *s.tokens.values()):
        assert secret not in shown
    assert "bay" in shown  # the rest is still there
