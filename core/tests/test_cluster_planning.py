"""Cluster planning logic (no Ray): which node a launch tries first, and what a refusal says.

The nodes and each node's answer (its hardware, its plan or its reason) are given, standing in for
the Ray tasks that plan on each node (a unit test of the logic around them). The real cluster is in
tests/test_e2e_cluster_*.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import server_support as S
from modelyard import cluster as cluster_module
from modelyard.cluster import NodeAnswer, RayCluster
from modelyard.errors import InvalidRequest, LaunchError
from modelyard.runner.planning import LaunchPlan
from modelyard.specs import Estimate, Hardware, LaunchRequest

GiB = 1024**3
NODES = [
    {"node_id": "aaaa1111", "address": "10.0.0.1", "resources": {"CPU": 8.0}, "available": {}},
    {"node_id": "bbbb2222", "address": "10.0.0.2", "resources": {"CPU": 8.0, "gpu_a": 1.0}, "available": {}},
    {"node_id": "cccc3333", "address": "10.0.0.3", "resources": {"CPU": 8.0}, "available": {}},
]  # fmt: skip
FREE_GIB = {"aaaa1111": 10, "bbbb2222": 40, "cccc3333": 20}


@pytest.fixture
def ray_cluster(monkeypatch: pytest.MonkeyPatch) -> RayCluster:
    monkeypatch.setattr(RayCluster, "nodes", lambda self: [dict(n) for n in NODES])
    return RayCluster("10.0.0.1:6379")


def plan(
    cluster: RayCluster,
    gib: int,
    monkeypatch: pytest.MonkeyPatch,
    occupied: dict[str, int] | None = None,
    **fields: Any,
) -> list[str]:
    """The node chosen for each replica of a model that needs ``gib`` GiB free, each node
    answering as a node's plan_here would: its hardware, and a plan or the reason it cannot."""
    estimate = Estimate(weights=gib * GiB, kv_cache=0, overhead=0)

    def answer(node_id: str) -> NodeAnswer:
        hardware = Hardware("linux", "x86_64", 8, 64 * GiB, FREE_GIB[node_id] * GiB, ())
        if FREE_GIB[node_id] < gib:
            refused = LaunchError(f"needs {gib} GiB, {FREE_GIB[node_id]} GiB free")
            return NodeAnswer(hardware, error=refused.to_dict())
        return NodeAnswer(hardware, plan=msgspec.structs.replace(PLAN, estimate=estimate))

    monkeypatch.setattr(
        cluster_module, "_plan_on_nodes", lambda ids, request, family: {i: answer(i) for i in ids}
    )
    request = LaunchRequest(model_name="m", **fields)
    return cluster.plan(request, S.LLM, occupied).node_ids


PLAN = LaunchPlan(
    model_name="m", model_type="LLM", family=S.LLM, spec=S.LLM.model_specs[0],
    quantization="none", engine="e",
)  # fmt: skip


def test_spread_takes_the_node_with_most_free_memory_and_pack_the_tightest_fit(
    ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert plan(ray_cluster, 5, monkeypatch) == ["bbbb2222"]
    ray_cluster.policy = "pack"
    assert plan(ray_cluster, 5, monkeypatch) == ["aaaa1111"]
    assert plan(ray_cluster, 15, monkeypatch) == [
        "cccc3333"
    ]  # the 10 GiB node refuses; the next tightest fits


def test_node_resources_and_worker_ip_narrow_the_candidates(
    ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray_cluster.policy = "pack"
    assert plan(ray_cluster, 1, monkeypatch, node_resources={"gpu_a": 1}) == ["bbbb2222"]
    assert plan(ray_cluster, 1, monkeypatch, worker_ip="10.0.0.3") == ["cccc3333"]
    with pytest.raises(InvalidRequest, match=r"worker_ip '10\.9\.9\.9'.*10\.0\.0\.1, 10\.0\.0\.2"):
        plan(ray_cluster, 1, monkeypatch, worker_ip="10.9.9.9")
    with pytest.raises(InvalidRequest, match=r"gpu_b.*10\.0\.0\.2 \{'CPU': 8\.0, 'gpu_a': 1\.0\}"):
        plan(ray_cluster, 1, monkeypatch, node_resources={"gpu_b": 1})


def test_a_launch_that_fits_nowhere_names_every_node_and_its_free_memory(
    ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(LaunchError) as refused:
        plan(ray_cluster, 100, monkeypatch)
    message = refused.value.message
    assert message.startswith("m fits on no node of the cluster")
    for node, free in (
        ("10.0.0.1 (aaaa1111)", 10),
        ("10.0.0.2 (bbbb2222)", 40),
        ("10.0.0.3 (cccc3333)", 20),
    ):
        assert f"node {node} ({free:.1f} of 64.0 GiB free" in message
        assert f"needs 100 GiB, {free} GiB free" in message
    assert refused.value.status == 400


def test_spread_puts_each_replica_on_a_node_holding_fewest_of_them(
    ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert plan(ray_cluster, 5, monkeypatch, replica=3) == ["bbbb2222", "cccc3333", "aaaa1111"]
    # Scaling up: the nodes already holding replicas come last.
    held = {"bbbb2222": 1, "cccc3333": 1}
    assert plan(ray_cluster, 5, monkeypatch, held, replica=2) == ["aaaa1111", "bbbb2222"]
    # Only as many as each node's free memory holds: 40 // 15 + 20 // 15 = 3.
    assert sorted(plan(ray_cluster, 15, monkeypatch, replica=3)) == [
        "bbbb2222", "bbbb2222", "cccc3333"
    ]  # fmt: skip


def test_pack_fills_the_tightest_node_first(
    ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray_cluster.policy = "pack"
    assert plan(ray_cluster, 4, monkeypatch, replica=3) == ["aaaa1111", "aaaa1111", "cccc3333"]


def test_replicas_beyond_the_clusters_room_are_a_400_saying_how_many_fit(
    ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(LaunchError, match=r"4 replica\(s\) do not fit.*room for 3") as refused:
        plan(ray_cluster, 15, monkeypatch, replica=4)
    assert (refused.value.status, refused.value.param) == (400, "replica")
    assert "node 10.0.0.2 (bbbb2222): room for 2" in refused.value.message
    # A custom resource each runner holds limits a node to as many runners as it has units.
    with pytest.raises(LaunchError, match=r"2 replica\(s\) do not fit"):
        plan(ray_cluster, 1, monkeypatch, replica=2, node_resources={"gpu_a": 1})
