from bay_salt.cluster.saltout import summarize_apply


def test_summary_counts_changes_and_failures():
    ret = {
        "node1": {
            "pkg_|-a_|-a_|-installed": {"__id__": "a", "result": True, "changes": {"x": 1}, "duration": 10.5, "comment": ""},
            "file_|-b_|-b_|-managed": {"__id__": "b", "result": True, "changes": {}, "duration": 1, "comment": ""},
        },
        "node2": {"svc_|-c_|-c_|-running": {"__id__": "c", "result": False, "changes": {}, "comment": "boom"}},
        "node3": ["Rendering SLS 'base:bay.docker' failed: invalid pillar: bay:docker:log_max_file: bad"],
    }
    s = summarize_apply(ret)
    assert (s["node1"].states, s["node1"].changed, s["node1"].ok, s["node1"].duration_ms) == (2, 1, True, 11.5)
    assert s["node2"].failed == ["c: boom"]
    assert not s["node3"].ok and "log_max_file" in s["node3"].failed[0]
