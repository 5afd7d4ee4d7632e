from bay_salt import cli


def test_docker_not_running_says_how_to_fix(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    assert cli.main(["status"]) == 1
    out = capsys.readouterr().out
    assert "Docker is not reachable" in out and "scripts/setup.sh" in out
