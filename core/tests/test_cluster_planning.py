"""Cluster planning logic (no Ray): which node a launch tries first, and what a refusal says.

The nodes and each node's answer (its hardware, its plan or its reason) are given, standing in for
the Ray tasks that plan on each node (a unit test of the logic around them). The real cluster is in
tests/test_e2e_cluster_*.
"""

from __future__ import annotations

from typing import Any

import pytest
import server_support as S
from modelyard import cluster as cluster_module
from modelyard.cluster import NodeAnswer, RayCluster
from modelyard.errors import InvalidRequest, LaunchError
from modelyard.runner.planning import LaunchPlan
from modelyard.specs import Hardware, LaunchRequest

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
    cluster: RayCluster, gib: int, monkeypatch: pytest.MonkeyPatch, **fields: Any
) -> str | None:
    """The node chosen for a model that needs ``gib`` GiB free, each node answering as a node's
    plan_here would: its hardware, and a plan or the reason it cannot."""

    def answer(node_id: str) -> NodeAnswer:
        hardware = Hardware("linux", "x86_64", 8, 64 * GiB, FREE_GIB[node_id] * GiB, ())
        if FREE_GIB[node_id] < gib:
            refused = LaunchError(f"needs {gib} GiB, {FREE_GIB[node_id]} GiB free")
            return NodeAnswer(hardware, error=refused.to_dict())
        return NodeAnswer(hardware, plan=PLAN)

    monkeypatch.setattr(
        cluster_module, "_plan_on_nodes", lambda ids, request, family: {i: answer(i) for i in ids}
    )
    return cluster.plan(LaunchRequest(model_name="m", **fields), S.LLM).node_id


PLAN = LaunchPlan(
    model_name="m", model_type="LLM", family=S.LLM, spec=S.LLM.model_specs[0],
    quantization="none", engine="e",
)  # fmt: skip


def test_spread_takes_the_node_with_most_free_memory_and_pack_the_tightest_fit(
    ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert plan(ray_cluster, 5, monkeypatch) == "bbbb2222"
    ray_cluster.policy = "pack"
    assert plan(ray_cluster, 5, monkeypatch) == "aaaa1111"
    assert (
        plan(ray_cluster, 15, monkeypatch) == "cccc3333"
    )  # the 10 GiB node refuses; the next tightest fits


def test_node_resources_and_worker_ip_narrow_the_candidates(
    ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray_cluster.policy = "pack"
    assert plan(ray_cluster, 1, monkeypatch, node_resources={"gpu_a": 1}) == "bbbb2222"
    assert plan(ray_cluster, 1, monkeypatch, worker_ip="10.0.0.3") == "cccc3333"
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
