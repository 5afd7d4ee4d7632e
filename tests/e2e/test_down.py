"""`bay down` removes what `bay up` made and nothing else. Disruptive, and
last: it removes the shared session cluster."""

import docker
import pytest

from bay_salt.model import names


@pytest.mark.disruptive(order=99)
def test_status_then_down_removes_only_its_own(cluster):
    st = cluster.status()
    # node4 joined through the bootstrap playbook test
    assert [n["id"] for n in st["nodes"]][:3] == ["node1", "node2", "node3"]
    assert all(all(v == "active" for v in n["services"].values()) for n in st["nodes"])

    client = docker.from_env()
    # unlabelled look-alikes that bay down must leave alone
    decoy_vol = client.volumes.create(f"{names.node_container(cluster.name, 1)}-decoy")
    decoy_net = client.networks.create(f"{names.network_name(cluster.name)}-decoy")
    try:
        removed = cluster.down()
        assert any(r.startswith("container ") for r in removed)
        flt = {"label": f"{names.LABEL_CLUSTER}={cluster.name}"}
        assert client.containers.list(all=True, filters=flt) == []
        assert client.networks.list(filters=flt) == []
        assert client.volumes.list(filters=flt) == []
        assert not cluster.state_dir.exists()
        client.volumes.get(decoy_vol.name)
        client.networks.get(decoy_net.id)
    finally:
        decoy_vol.remove()
        decoy_net.remove()
    with pytest.raises(Exception, match="no cluster"):
        cluster.status()
