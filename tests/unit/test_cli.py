from bay_salt import cli


def test_docker_not_running_says_how_to_fix(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    assert cli.main(["status"]) == 1
    out = capsys.readouterr().out
    assert "Docker is not reachable" in out and "scripts/setup.sh" in out


def test_alerts_and_silences_through_the_runner(monkeypatch, capsys):
    calls = []
    answers = {
        "bay.alerts": {"alerts": [{"alert": "GroupUnhealthy", "state": "firing", "since": 0.0,
                                   "labels": {"alertname": "GroupUnhealthy", "service": "demo", "group": "web"},
                                   "summary": "demo.web: 0 of its instances pass"}],
                       "silences": [], "failed_deliveries": [{"receiver": "bob", "channel": "email", "to": "bob@x",
                                                              "subject": "s", "attempts": 8, "error": "refused"}]},
        "bay.silence": {"abc": {"matchers": {"service": "demo"}, "ends": "2026-11-27 10:00:00 UTC", "reason": "r",
                                "by": "root"}},
    }

    def runner(fun, *args):
        calls.append((fun, args))
        return answers[fun]

    monkeypatch.setattr(cli, "_runner", runner)
    assert cli.main(["alerts"]) == 0
    out = capsys.readouterr().out
    assert "GroupUnhealthy" in out and "firing" in out and "not delivered" in out and "refused" in out
    assert cli.main(["silence", "add", "service=demo", "--for", "2h", "--reason", "moving it"]) == 0
    assert calls[-1] == ("bay.silence", ("service=demo", "duration=2h", 'reason="moving it"'))
    assert "silence abc: service=demo until 2026-11-27 10:00:00 UTC" in capsys.readouterr().out
    assert cli.main(["silence", "add", "service=demo", "--for", "2h"]) == 2  # no reason: a usage error
