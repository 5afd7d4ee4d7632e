"""The local cluster's HDFS firewall rules (pure parts)."""

import pytest

from bay_salt.cluster import firewall


def test_only_the_registry_nodes_and_loopback_pass():
    rules = firewall.plan("e2e", "172.20.0.1", [9870, 40001, 40002], ["172.20.0.3", "172.20.0.4"])
    chain = "BAY-HDFS-e2e"
    assert rules[0] == ["-N", chain]
    assert ["-A", chain, "-i", "lo", "-j", "RETURN"] in rules
    assert ["-A", chain, "-s", "172.20.0.3", "-j", "RETURN"] in rules
    # everything else is reset, after the sources that pass
    assert rules.index(["-A", chain, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]) > rules.index(
        ["-A", chain, "-s", "172.20.0.4", "-j", "RETURN"])
    assert rules[-1] == ["-I", "INPUT", "-d", "172.20.0.1", "-p", "tcp", "-m", "multiport", "--dports",
                         "9870,40001,40002", "-j", chain]


def test_many_ports_are_split_for_multiport_and_names_fit():
    rules = firewall.plan("a-very-long-cluster-name-indeed", "10.0.0.1", list(range(1000, 1020)), [])
    jumps = [r for r in rules if r[:2] == ["-I", "INPUT"]]
    assert [len(r[r.index("--dports") + 1].split(",")) for r in jumps] == [15, 5]
    assert len(firewall.chain("a-very-long-cluster-name-indeed")) <= 28
    with pytest.raises(ValueError):
        firewall.plan("x", "10.0.0.1", [], [])


def test_removal_deletes_only_the_clusters_jumps():
    listing = ("-P INPUT ACCEPT\n"
               "-A INPUT -d 172.20.0.1/32 -p tcp -m multiport --dports 9870,40001 -j BAY-HDFS-e2e\n"
               "-A INPUT -d 172.21.0.1/32 -p tcp -m multiport --dports 9870 -j BAY-HDFS-bench\n")
    assert firewall.removal("e2e", listing) == [
        ["-D", "INPUT", "-d", "172.20.0.1/32", "-p", "tcp", "-m", "multiport", "--dports", "9870,40001", "-j",
         "BAY-HDFS-e2e"],
        ["-F", "BAY-HDFS-e2e"], ["-X", "BAY-HDFS-e2e"]]


def test_listening_ports_of_one_process():
    ss = ('LISTEN 0 4096 172.20.0.1:9870 0.0.0.0:* users:(("java",pid=3427,fd=301))\n'
          'LISTEN 0 50 172.20.0.1:40123 0.0.0.0:* users:(("java",pid=3427,fd=310))\n'
          'LISTEN 0 4096 [::]:22 [::]:* users:(("sshd",pid=34270,fd=3))\n')
    assert firewall.listening_ports(3427, ss) == [9870, 40123]
