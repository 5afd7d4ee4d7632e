import json

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


def test_services_exits_2_when_a_group_is_failed_or_short_and_json_is_the_runners_answer(monkeypatch, capsys):
    rows = {"demo.web": {"deployed": True, "pillar": None, "failed": None, "desired": 3, "registered": 3,
                         "passing": 3, "listen": 10080, "instances": []}}
    monkeypatch.setattr(cli, "_runner", lambda fun, *args: rows)
    assert cli.main(["services", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows
    rows["demo.web"]["passing"] = 2
    assert cli.main(["services"]) == 2
    rows["demo.web"]["passing"], rows["demo.web"]["failed"] = 3, "crash loop"
    assert cli.main(["services", "--json"]) == 2


def test_the_command_named_in_an_error_is_the_command_not_an_options_value(monkeypatch, capsys):
    from bay_salt.master.client import MasterError

    def refuse(fun, *args):
        raise MasterError(f"{fun}: refused: ella may not operate service demo")

    monkeypatch.setattr(cli, "_runner", refuse)
    assert cli.main(["--as", "ella", "--cluster", "x", "describe", "demo.web"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("bay describe: bay.describe: refused") and "Traceback" not in out


def test_on_a_master_without_a_local_cluster_the_cli_uses_salts_client(monkeypatch, tmp_path):
    from bay_salt.cluster import local
    from bay_salt.master import client

    monkeypatch.setattr(local, "STATE_ROOT", tmp_path / "clusters")
    (tmp_path / "master.d").mkdir()
    monkeypatch.setattr(cli.State, "cluster_given", False)
    monkeypatch.setattr(cli.State, "cluster", "default")
    monkeypatch.setattr(cli.State, "master_config", str(tmp_path / "master"))
    assert cli._on_master()
    (tmp_path / "clusters" / "default").mkdir(parents=True)  # a local cluster here: bay up's
    assert not cli._on_master()
    assert client.one_line("Passed invalid arguments: demo.x is not deployed\n\nUsage:\n  doc") == \
        "demo.x is not deployed"
    assert client.one_line("Traceback...\nsalt.exceptions.SaltInvocationError: refused: x") == "refused: x"
