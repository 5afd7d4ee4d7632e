import pytest

from bay_salt.scheduling.placement import Node, PlacementError, pick_for_removal, place


def cluster(*caps):
    return [Node(f"node{i}", cpus, mem) for i, (cpus, mem) in enumerate(caps, start=1)]


def test_spreads_before_stacking():
    nodes = cluster((4, 4096), (4, 4096), (4, 4096))
    assert sorted(place(nodes, "feed", "read", 3, 1, 512)) == ["node1", "node2", "node3"]
    more = place(nodes, "feed", "read", 3, 1, 512)
    assert sorted(more) == ["node1", "node2", "node3"]
    assert all(n.groups[("feed", "read")] == 2 for n in nodes)


def test_prefers_the_node_with_most_free_cpu():
    nodes = cluster((2, 4096), (8, 4096))
    assert place(nodes, "a", "b", 1, 1, 256) == ["node2"]


def test_respects_capacity_and_skips_full_nodes():
    nodes = cluster((1, 1024), (4, 4096))
    assert place(nodes, "s", "g", 3, 1, 512) == ["node2", "node1", "node2"]
    assert nodes[0].free_cpus == 0 and nodes[1].free_cpus == 2


def test_unschedulable_group_names_what_is_missing_and_changes_nothing():
    nodes = cluster((2, 2048), (2, 2048))
    place(nodes, "other", "x", 2, 1, 1024)
    before = [(n.used_cpus, n.used_memory_mb, dict(n.groups)) for n in nodes]
    with pytest.raises(PlacementError) as err:
        place(nodes, "feed", "write", 3, 1, 1024)
    msg = str(err.value)
    assert msg.startswith("feed.write: cannot place 1 of 3 instances of 1 CPU / 1024 MiB")
    assert "lacks 1 CPU / 1024 MiB" in msg
    assert [(n.used_cpus, n.used_memory_mb, {k: v for k, v in n.groups.items() if v}) for n in nodes] == before


def test_memory_bound_as_well_as_cpu():
    nodes = cluster((16, 1000))
    with pytest.raises(PlacementError, match="cannot place 1 of 2"):
        place(nodes, "s", "g", 2, 0.5, 600)


def test_unschedulable_nodes_are_skipped():
    nodes = cluster((4, 4096), (4, 4096))
    nodes[0].schedulable = False
    assert place(nodes, "s", "g", 2, 1, 128) == ["node2", "node2"]


def test_scale_down_keeps_spread():
    nodes = cluster((8, 8192), (8, 8192), (8, 8192))
    ids = place(nodes, "s", "g", 5, 1, 128)  # 2,2,1
    placements = {f"i{k}": nid for k, nid in enumerate(ids)}
    victims = pick_for_removal(placements, nodes, 2)
    remaining = [placements[i] for i in placements if i not in victims]
    assert sorted(remaining) == ["node1", "node2", "node3"]
