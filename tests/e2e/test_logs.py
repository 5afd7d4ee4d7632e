"""Logs in the `bay up` cluster: a killed container's last lines through
``bay logs --previous`` and through the URL in the controller's replaced
event, after the controller replaced and removed it; a follow session that
goes on across a replacement; kept output removed by age and by the node's
cap (times and sizes made small for the test); the demo's log records in
Kafka and in the HDFS archive, with their labels."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import pytest
import yaml

from bay_salt.logs import client
from bay_salt.logs.archive import storage_for
from bay_salt.model import names
from tests.e2e.helpers import demo_image_service, eventually, master_log_lines, master_log_since, status
from tests.e2e.prebuild import site

SERVICE, GROUP, LISTEN = "logdemo", "web", 10130  # its own frontend (other e2e services hold 10090-10121)
#: what it prints before it serves: "hello from INSTANCE", then three numbered lines
SCRIPT = ("echo hello from $BAY_INSTANCE; for i in 1 2 3; do echo line $i of $BAY_INSTANCE; done; "
          "mkdir -p /www; echo ok > /www/healthz; exec httpd -f -p 8000 -h /www")


@pytest.fixture(scope="module")
def logdemo(cluster):
    body = {"health": "demo", "owners": ["platform-team"], "command": ["sh", "-c", SCRIPT],
            "logs": {"partitions": 1, "retention": "1h"},
            "groups": {GROUP: {"instances": 1, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": LISTEN}}}
    with demo_image_service(cluster, SERVICE, body, timeout=90):
        yield f"{SERVICE}.{GROUP}"


def bay(cluster, *args, timeout=90, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bay_salt.cli", "--cluster", cluster.name, *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def current(cluster) -> tuple[str, str]:
    """(instance, node) of the group's one registered instance."""
    (line,) = status(cluster, SERVICE)[f"{SERVICE}.{GROUP}"]["instances"]
    inst, _, rest = line.partition("@")
    return inst, rest.split(":")[0]


def kill(cluster, inst: str, node_id: str) -> str:
    """Kill the instance inside its node; returns the instance that replaced it."""
    node = next(n for n in cluster.nodes() if n.id == node_id)
    cluster.client.containers.get(node.container).exec_run(["docker", "kill", names.service_container(
        SERVICE, GROUP, inst)])

    def replaced():
        st = status(cluster, SERVICE)[f"{SERVICE}.{GROUP}"]
        now = [i.split("@")[0] for i in st["instances"]]
        return now[0] if len(now) == 1 and now[0] != inst and st["passing"] == 1 else None

    new = eventually(replaced, 60, f"{inst} replaced")
    # the replacement is registered just before the dead container goes (its output kept first, then
    # removed): wait for that too, so what the node keeps is whole when the test reads it
    eventually(lambda: names.service_container(SERVICE, GROUP, inst) not in cluster.client.containers.get(
        node.container).exec_run(["docker", "ps", "-a", "--format", "{{.Names}}"]).output.decode().split(), 15,
        f"{inst}'s container removed")
    return new


def kept_on(cluster, node_id: str) -> list[str]:
    ret = cluster.salt(node_id, "bay_logs.kept_output", SERVICE, GROUP, timeout=30)
    return [k["instance"] for k in ret.get(node_id) or []]


def test_a_killed_containers_last_lines_by_previous_and_by_the_url_in_its_event(cluster, logdemo):
    victim, node_id = current(cluster)
    since = master_log_lines(cluster)
    new = kill(cluster, victim, node_id)
    # the controller removes it (just after its replacement is registered): its output is what the node kept
    node = next(n for n in cluster.nodes() if n.id == node_id)
    eventually(lambda: names.service_container(SERVICE, GROUP, victim) not in cluster.client.containers.get(
        node.container).exec_run(["docker", "ps", "-a", "--format", "{{.Names}}"]).output.decode().split(), 15,
        f"{victim}'s container removed")
    out = bay(cluster, "logs", logdemo, "--previous", "--tail", "2")
    assert out.returncode == 0, out.stderr + out.stdout
    assert f"line 2 of {victim}\nline 3 of {victim}\n" in out.stdout
    assert f"{victim} on {node_id}: removed, exit 137" in out.stdout
    # the replaced event names where the dead instance's output is
    events = eventually(lambda: [ln for ln in master_log_since(cluster, since, names.TAG_CONTAINER_REPLACED)
                                 if f"'old': '{victim}'" in ln], 30, "the replaced event in the master's log")
    url = re.search(r"'output': '(https://[^']+)'", events[0]).group(1)
    assert url == names.log_url(node.address, 8095, SERVICE, GROUP, victim)
    token = cluster.runner("bay.logs", f"{logdemo}/{victim}")["token"]
    ca = str(cluster.state_dir / "pki" / "ca.pem")
    lines = list(client.fetch(url, token, ca, tail=100))
    assert lines[0] == f"hello from {victim}\n".encode() and lines[3] == f"line 3 of {victim}\n".encode()
    # without a token the node says no
    with pytest.raises(client.FetchError, match="401"):
        list(client.fetch(url, "", ca))
    # the new instance's live output
    live = bay(cluster, "logs", f"{logdemo}/{new}")
    assert f"hello from {new}" in live.stdout, live.stderr + live.stdout


def test_a_follow_session_goes_on_across_a_replacement(cluster, logdemo):
    inst, node_id = current(cluster)
    proc = subprocess.Popen([sys.executable, "-m", "bay_salt.cli", "--cluster", cluster.name, "logs", logdemo,
                             "--follow"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        eventually(lambda: any(f"hello from {inst}" in ln for ln in seen), 60,
                   f"{inst}'s output followed: {seen[-10:]}")
        new = kill(cluster, inst, node_id)
        eventually(lambda: any(f"line 3 of {new}" in ln for ln in seen), 60,
                   f"the follow session goes on with {new}: {seen[-5:]}")
        assert proc.poll() is None, "the follow session ended"
    finally:
        proc.terminate()
        proc.wait(30)


def test_kept_output_goes_by_age_and_by_the_nodes_cap(cluster, logdemo):
    try:
        # two dead containers kept on the instance's node (a replacement stays where it is healthy)
        for _ in range(2):
            inst, node_id = current(cluster)
            kill(cluster, inst, node_id)
        held = kept_on(cluster, node_id)
        assert len(held) >= 2, held
        # the node's cap: room for the newest output only; the older go
        newest = cluster.salt(node_id, "bay_logs.kept_output", SERVICE, GROUP, timeout=30)[node_id][0]
        site(cluster, {"logs": {"node_max_size": str(newest["bytes"] + 10), "gc_interval": 1}})
        assert apply_logs(cluster, node_id)
        eventually(lambda: kept_on(cluster, node_id) == held[:1], 30,
                   f"only the newest ({held[0]}) kept under the cap: {kept_on(cluster, node_id)}")
        # age: a retention of seconds
        site(cluster, {"logs": {"retention": "5s", "gc_interval": 1}})
        assert apply_logs(cluster, node_id)
        eventually(lambda: kept_on(cluster, node_id) == [], 30, "kept output gone after the retention")
    finally:
        site(cluster)
        assert apply_logs(cluster, "*")


def apply_logs(cluster, target: str) -> bool:
    ret = cluster.salt(target, "state.sls", "bay.logs", timeout=180)
    return bool(ret) and all(isinstance(r, dict) and all(v.get("result") for v in r.values()) for r in ret.values())


def test_the_demos_log_records_reach_kafka_and_the_archive(cluster):
    def archived():
        got = cluster.runner("bay.archived_logs", "demo", "since=3h", "limit=100")["records"]
        return [r for r in got if r.get("message", "").startswith("started v")] or None

    records = eventually(archived, 120, "the demo's start records in the HDFS archive")
    groups = {r["group"] for r in records}
    assert groups <= {"web", "api"} and all(r["service"] == "demo" for r in records)
    assert all(r["instance"] and r["node"].startswith("node") and r["port"] == 8000 for r in records)
    # where the issue says: /bay/logs/SERVICE/DATE/HOUR/part-PARTITION-FIRST-LAST.jsonl
    archive = yaml.safe_load((cluster.state_dir / "pillar" / "bay.sls").read_text())["bay"]["logs"]["archive"]["hdfs"]
    assert archive.endswith("/bay/logs"), archive
    hdfs = storage_for(archive, "root")  # its listings leave out a file being written
    files = [f"{date}/{hour}/{name}" for date in hdfs.list("demo")
             for hour in hdfs.list(f"demo/{date}") for name in hdfs.list(f"demo/{date}/{hour}")]
    assert files and all(re.fullmatch(r"\d{4}-\d\d-\d\d/\d\d/part-\d+-\d+-\d+\.jsonl", f) for f in files), files
    out = bay(cluster, "logs", "demo", "--archive", "--since", "3h", "--grep", "started")
    assert out.returncode == 0 and "started v" in out.stdout, out.stderr + out.stdout
    # a reader the archive does not know of a service is told so, in one line
    bad = bay(cluster, "logs", "nosuch", "--archive")
    said = " ".join(bad.stdout.split())  # (the console wraps long lines)
    assert bad.returncode == 1 and "no service 'nosuch'" in said and "Traceback" not in said


def test_records_and_a_containers_stdout_are_searchable(cluster, logdemo):
    """The demo's log records (through the relay) and logdemo's stdout (shipped
    from Docker, label ``stream``) in the kafka node's OpenSearch, found by
    ``bay logs SERVICE --search``; an owner of neither finds nothing of them."""
    def found(service, query):
        got = cluster.runner("bay.search_logs", service, f"query={json.dumps(query)}", "since=3h", "limit=50")
        return got["records"] or None

    demo = eventually(lambda: found("demo", "started"), 120, "the demo's start records in the search store")
    assert all(r["service"] == "demo" and r["message"].startswith("started v") for r in demo)
    lines = eventually(lambda: found(SERVICE, '"line 2 of"'), 120, "logdemo's stdout in the search store")
    assert all(r["stream"] == "stdout" and r["group"] == GROUP and r["instance"] for r in lines)
    out = bay(cluster, "logs", SERVICE, "--search", "hello", "--since", "3h")
    assert out.returncode == 0 and "hello from" in out.stdout, out.stderr + out.stdout
    cluster.add_user("stranger", "stranger-pw")
    refused = bay(cluster, "--as", "stranger", "logs", SERVICE, "--search", "hello", env={"BAY_PASSWORD": "stranger-pw"})
    said = " ".join(refused.stdout.split())
    assert refused.returncode == 1 and "may not read the logs of service logdemo" in said, said


def test_a_token_for_one_service_reads_no_other(cluster, logdemo):
    """A token from bay.logs for one service does not read another's output."""
    inst, node_id = current(cluster)
    node = next(n for n in cluster.nodes() if n.id == node_id)
    token = cluster.runner("bay.logs", f"{logdemo}")["token"]
    ca = str(cluster.state_dir / "pki" / "ca.pem")
    demo_url = names.log_url(node.address, 8095, "demo", "web", "anything")
    with pytest.raises(client.FetchError, match="403"):
        list(client.fetch(demo_url, token, ca))
