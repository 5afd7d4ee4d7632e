"""cAdvisor answers (/api/v1.3/docker/) to per-container usage and per-group samples."""

import pytest

from bay_salt.control.autoscale_round import group_sample
from bay_salt.kv.records import Instance
from bay_salt.metrics import cadvisor as metrics


def stat(second, cpu_ns, mem=50 << 20):
    return {"timestamp": f"2026-11-26T02:00:{second:02d}.500000000Z", "cpu": {"usage": {"total": cpu_ns}},
            "memory": {"usage": mem + 1, "working_set": mem}}


PAYLOAD = {
    "/docker/aaa": {"aliases": ["bay-demo-web-1", "aaa"], "stats": [stat(0, 0), stat(2, 10**8), stat(4, 4 * 10**8)]},
    "/docker/bbb": {"aliases": ["bay-demo-web-2", "bbb"], "stats": [stat(4, 5)]},  # just started
    "/docker/ccc": {"aliases": [], "stats": [stat(4, 5)]},
}


def test_cpu_is_averaged_over_the_recent_samples():
    u = metrics.container_usage(PAYLOAD)
    assert abs(u["bay-demo-web-1"]["cpu"] - 0.1) < 1e-9  # 0.4 s of CPU over 4 s
    assert u["bay-demo-web-1"]["memory"] == 50 << 20
    assert u["bay-demo-web-2"]["cpu"] is None  # one sample: no rate yet
    assert "ccc" not in u
    assert abs(metrics.container_usage(PAYLOAD, window=2)["bay-demo-web-1"]["cpu"] - 0.15) < 1e-9


def rec(i, node, health="passing"):
    return Instance("demo", "web", i, node, "10.0.0.1", 1, health, container=f"bay-demo-web-{i}")


def test_group_sample_counts_only_ready_measured_instances():
    usage = {"node1": metrics.container_usage(PAYLOAD)}
    s = group_sample(10.0, [rec("1", "node1"), rec("2", "node1"), rec("3", "node1", "critical")], 0.25,
                             usage, {})
    assert (s.instances, s.ready, s.complete) == (3, 1, True)
    assert abs(s.cpu_used - 0.1) < 1e-9 and s.cpu_reserved == 0.25


def test_a_node_without_metrics_makes_the_sample_incomplete():
    s = group_sample(10.0, [rec("1", "node1"), rec("9", "node2")], 0.25,
                             {"node1": metrics.container_usage(PAYLOAD)}, {"node2": "cAdvisor at x: timed out"})
    assert not s.complete and s.missing == ("node2",)


def test_fetch_names_the_cadvisor_that_does_not_answer():
    from tests.support.daemons import free_port

    port = free_port()
    with pytest.raises(OSError, match=f"cAdvisor at 127.0.0.1:{port}"):
        metrics.fetch("127.0.0.1", port, timeout=0.5)
