"""`bay up` checks the machine first: each missing thing in one line."""

import pytest

from bay_salt.cluster import prereq

GIB = 2**30


@pytest.fixture
def machine(tmp_path):
    """A machine that has everything (cgroups v1, overlay, br_netfilter, 16 GiB available)."""
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "sys/net/bridge").mkdir(parents=True)
    cgroup.mkdir()
    (proc / "filesystems").write_text("nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n")
    (proc / "meminfo").write_text(f"MemTotal:       {24 * GIB // 1024} kB\nMemAvailable:   {16 * GIB // 1024} kB\n")
    return prereq.Machine(proc=proc, cgroup=cgroup, docker_root=tmp_path / "docker", euid=0)


def everything(_tool):
    return "/usr/bin/x"


def test_a_machine_with_everything_passes(machine):
    assert prereq.problems(machine, which=everything) == []


def test_each_missing_thing_is_one_line_naming_what_to_do(machine, monkeypatch):
    (machine.cgroup / "cgroup.controllers").write_text("cpu memory\n")
    (machine.proc / "filesystems").write_text("nodev\tsysfs\n\text4\n")
    (machine.proc / "sys/net/bridge").rmdir()
    (machine.proc / "meminfo").write_text(f"MemAvailable:   {3 * GIB // 1024} kB\n")
    monkeypatch.setattr(prereq, "NEED_DISK_GIB", 10.0**9)  # more than any disk has
    got = prereq.problems(prereq.Machine(machine.proc, machine.cgroup, machine.docker_root, euid=1000), nodes=5,
                          which=lambda t: None if t in ("java", "skopeo") else "/usr/bin/" + t)
    assert [line.split(":")[0].split(" (")[0] for line in got] == [
        "not root", "cgroup v2", "no overlay filesystem in the kernel",
        "kernel module br_netfilter is not loaded", "missing on this machine", "3.0 GiB of memory available, 5 GiB needed for 5 nodes",
        f"{got[-1].split(' GiB')[0]} GiB free under {machine.docker_root}, 1000000000 GiB needed"]
    assert all("\n" not in line for line in got)
    assert "java (HDFS and Kafka run on it); skopeo (the demo's images are pushed with it); bash scripts/setup.sh" \
        in got[4]


def test_what_is_needed_depends_on_what_is_asked(machine):
    only_skopeo_missing = lambda t: None if t in ("skopeo", "debootstrap") else "/usr/bin/" + t  # noqa: E731
    assert prereq.problems(machine, demo=False, image_built=True, which=only_skopeo_missing) == []
    assert "debootstrap" in prereq.problems(machine, demo=False, which=only_skopeo_missing)[0]
