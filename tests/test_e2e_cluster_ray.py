"""`modelyard serve --cluster` on a real Ray cluster: a head and two worker nodes, all on 127.0.0.1.

The test process starts the cluster (ray.cluster_utils.Cluster) and stops every Ray process it
started; the server joins it as a driver and places SmolLM2's runner (llama.cpp) on the worker
node through a custom resource; the openai client asks through the server. Losing the worker node
mid-stream ends the stream with an error and leaves the model in state error with the cause.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from e2e_support import SYSTEM, capital_of_france, data_events

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Loopback only, no auth token file, no usage reporting (ENGINES.md: Ray on these machines).
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# A dead node is noticed in about a second instead of fifteen.
FAST_HEALTH = {
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 0,
}


@pytest.fixture(scope="module")
def node_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second interpreter for llama.cpp, known only to the Ray nodes' MODELYARD_HOME: a venv
    that sees this environment's packages through a .pth file."""
    layered = tmp_path_factory.mktemp("node-env") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(layered)], check=True)
    (site,) = layered.glob("lib/python*/site-packages")
    # addsitedir, not a bare path: the main environment's own .pth files (editable installs) count.
    main_site = sysconfig.get_paths()["purelib"]
    (site / "main-env.pth").write_text(f"import site; site.addsitedir({main_site!r})\n")
    return str(layered / "bin" / "python")


@pytest.fixture(scope="module")
def ray_cluster(node_python: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    before = {name: os.environ.get(name) for name in RAY_ENV}
    os.environ.update(RAY_ENV)  # before Ray is imported: it reads them then
    pytest.importorskip("ray", reason="needs modelyard[cluster] (scripts/test installs it)")
    from ray.cluster_utils import Cluster

    # The nodes (and the runner host actors on them) resolve engine environments in a home of
    # their own, where llama.cpp runs in node_python; the supervisor's home names none.
    node_home = tmp_path_factory.mktemp("node-home")
    modelyard = str(Path(sys.executable).with_name("modelyard"))
    subprocess.run(
        [modelyard, "env", "use", "llama.cpp", node_python],
        env={**os.environ, "MODELYARD_HOME": str(node_home)},
        check=True,
    )
    supervisor_home = os.environ.get("MODELYARD_HOME")
    os.environ["MODELYARD_HOME"] = str(node_home)  # what the nodes' processes inherit
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"head_node": 1},
            "include_dashboard": False,
            "_system_config": FAST_HEALTH,
        },
    )
    try:
        # Two workers offer "spare": a runner placed by it can be relaunched on the other.
        cluster.worker = cluster.add_node(num_cpus=1, resources={"node_b": 1, "spare": 1})
        cluster.other = cluster.add_node(num_cpus=1, resources={"node_c": 1, "spare": 1})
        cluster.wait_for_nodes()
        _restore("MODELYARD_HOME", supervisor_home)
        yield cluster
    finally:
        _restore("MODELYARD_HOME", supervisor_home)
        cluster.shutdown()
        for name, value in before.items():  # later tests start Ray nodes of their own
            _restore(name, value)


@pytest.fixture(scope="module")
def supervisor(
    ray_cluster: Any,
    serving: Callable[..., AbstractContextManager[Server]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    # The server inherits RAY_ENV from this process (set by ray_cluster).
    with serving(tmp_path_factory.mktemp("home"), "--cluster", ray_cluster.address) as running:
        yield running


def launch(server: Server, **fields: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models", json=fields, timeout=180)


def test_a_runner_placed_on_the_worker_node_answers_through_the_supervisor(
    ray_cluster: Any, supervisor: Server, smollm2_gguf: dict[str, str], node_python: str
) -> None:
    from openai import OpenAI

    made = launch(supervisor, **smollm2_gguf, model_uid="on-b", node_resources={"node_b": 0.01})
    assert made.status_code == 200, made.text
    record = httpx.get(f"{supervisor.url}/v1/models/on-b", timeout=10).json()
    assert record["node_id"] == ray_cluster.worker.node_id
    assert record["node"] == "127.0.0.1"
    # The runner is a real process on this host, started by the worker node's actor, not the server,
    # with the interpreter the node's own engine environment names (the supervisor knows none).
    cmdline = Path(f"/proc/{record['pid']}/cmdline").read_bytes().split(b"\0")
    assert b"modelyard.runner" in cmdline
    assert cmdline[0].decode() == node_python
    assert _parent(record["pid"]) != supervisor.process.pid
    # Its log comes from the worker node's host actor; its memory is not read on the wrong machine.
    logs = httpx.get(f"{supervisor.url}/v1/models/on-b/logs", timeout=10).json()
    assert any("loaded smollm2-instruct" in line for line in logs["lines"]), logs
    assert record["resident_memory_bytes"] is None and record["memory_estimate"] > 0
    workers = httpx.get(f"{supervisor.url}/v1/workers", timeout=10).json()
    by_id = {w["node_id"]: w for w in workers}
    nodes = (ray_cluster.head_node, ray_cluster.worker, ray_cluster.other)
    assert set(by_id) == {node.node_id for node in nodes}
    assert "on-b" in by_id[ray_cluster.worker.node_id]["models"]
    assert by_id[ray_cluster.worker.node_id]["resources"]["node_b"] == 1
    assert by_id[ray_cluster.head_node.node_id]["models"] == {}

    client = OpenAI(base_url=f"{supervisor.url}/v1", api_key="unused")
    assert "Paris" in capital_of_france(client, "on-b")


def test_placement_that_no_node_offers_is_a_400_naming_the_nodes(supervisor: Server) -> None:
    refused = launch(
        supervisor, model_name="smollm2-instruct", model_format="ggufv2", quantization="Q4_1",
        node_resources={"gpu_h100": 1},
    )  # fmt: skip
    assert refused.status_code == 400, refused.text
    message = refused.json()["error"]["message"]
    assert "gpu_h100" in message and "node_b" in message and "node_c" in message
    assert "head_node" in message
    missing = launch(supervisor, model_name="smollm2-instruct", worker_ip="10.9.9.9")
    assert missing.status_code == 400 and "10.9.9.9" in missing.json()["error"]["message"]


def test_a_supervisor_crash_leaves_no_runner_behind_and_a_new_one_starts_clean(
    ray_cluster: Any,
    start_server_with: Callable[..., Server],
    smollm2_gguf: dict[str, str],
    tmp_path: Path,
) -> None:
    """The runner host actors belong to the supervisor's Ray driver: when it dies, Ray stops them
    and their runners see their socket close, so nothing is orphaned and nothing is duplicated."""
    executable = str(Path(sys.executable).with_name("modelyard"))
    first = start_server_with(executable, tmp_path / "first", "--cluster", ray_cluster.address)
    assert launch(first, **smollm2_gguf, model_uid="kept").status_code == 200
    old_pid = httpx.get(f"{first.url}/v1/models/kept", timeout=10).json()["pid"]
    first.process.kill()  # a crash: no shutdown, no terminate
    first.process.wait()
    deadline = time.monotonic() + 60
    while Path(f"/proc/{old_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(f"/proc/{old_pid}").exists(), "the crashed supervisor's runner lives on"

    second = start_server_with(executable, tmp_path / "second", "--cluster", ray_cluster.address)
    assert httpx.get(f"{second.url}/v1/models", timeout=10).json()["data"] == []
    assert launch(second, **smollm2_gguf, model_uid="kept").status_code == 200
    new_pid = httpx.get(f"{second.url}/v1/models/kept", timeout=10).json()["pid"]
    assert new_pid != old_pid and Path(f"/proc/{new_pid}").exists()
    assert httpx.delete(f"{second.url}/v1/models/kept", timeout=60).status_code == 200


def test_an_actor_that_died_before_starting_is_placed_again_only_when_ray_chose_its_node(
    ray_cluster: Any,  # Ray is imported here only after the fixture kept it on loopback
) -> None:
    from modelyard.cluster import placed_on_a_dead_node
    from modelyard.errors import LaunchError
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

    # Killed with its node (a system death, no cause from its own code): another node can take it.
    # The restart below can meet this: Ray may place it on the node it has not yet found dead.
    assert placed_on_a_dead_node(ActorDiedError(), {})
    assert placed_on_a_dead_node(ActorUnavailableError("node gone", None), {})
    # Pinned to that node, or failed in its own code (creation or the runner's start): it would
    # fail the same way again.
    assert not placed_on_a_dead_node(ActorDiedError(), {"scheduling_strategy": object()})
    crashed = RayTaskError("RunnerHost.__init__", "Traceback ...", ValueError("bad"))
    assert not placed_on_a_dead_node(ActorDiedError(crashed), {})
    assert not placed_on_a_dead_node(crashed, {})
    assert not placed_on_a_dead_node(LaunchError("no room"), {})


def test_a_runner_whose_node_is_lost_is_relaunched_on_another_with_restart_lost(
    ray_cluster: Any, supervisor: Server, smollm2_gguf: dict[str, str]
) -> None:
    made = launch(
        supervisor, **smollm2_gguf, model_uid="phoenix", node_resources={"spare": 0.01},
        restart_lost=True,
    )  # fmt: skip
    assert made.status_code == 200, made.text
    first = httpx.get(f"{supervisor.url}/v1/models/phoenix", timeout=10).json()
    lost = (
        ray_cluster.worker if first["node_id"] == ray_cluster.worker.node_id else ray_cluster.other
    )
    ray_cluster.remove_node(lost, allow_graceful=False)
    deadline = time.monotonic() + 120
    record = first
    while time.monotonic() < deadline:
        record = httpx.get(f"{supervisor.url}/v1/models/phoenix", timeout=10).json()
        if record["state"] == "ready" and record["restarts"] == 1:
            break
        time.sleep(0.5)
    assert (record["state"], record["restarts"]) == ("ready", 1), record
    assert record["node_id"] not in (first["node_id"], None)
    answer = httpx.post(
        f"{supervisor.url}/v1/chat/completions",
        json={
            "model": "phoenix",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            "max_tokens": 24,
            "temperature": 0,
        },
        timeout=60,
    )
    assert "Paris" in answer.json()["choices"][0]["message"]["content"]
    # The node-loss test below needs node_b: keep whichever worker survived as "worker".
    ray_cluster.worker = ray_cluster.other if lost is ray_cluster.worker else ray_cluster.worker


def test_losing_the_node_mid_stream_ends_the_stream_and_marks_the_model(
    ray_cluster: Any, supervisor: Server, smollm2_gguf: dict[str, str]
) -> None:
    made = launch(supervisor, **smollm2_gguf, model_uid="doomed", node_resources={"spare": 0.01})
    assert made.status_code == 200, made.text
    body = {
        "model": "doomed",
        "messages": [{"role": "user", "content": "Count from one to five hundred."}],
        "max_tokens": 2000,
        "stream": True,
        "ignore_eos": True,
    }
    events: list[str] = []
    with httpx.stream(
        "POST", f"{supervisor.url}/v1/chat/completions", json=body, timeout=60
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            events.append(line)
            if len(events) == 3:
                ray_cluster.remove_node(ray_cluster.worker, allow_graceful=False)
    assert len(events) > 3
    assert '"error"' in events[-1], events[-3:]  # an error event, not a normal [DONE]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = httpx.get(f"{supervisor.url}/v1/models/doomed", timeout=10).json()
        if record["state"] == "error":
            break
        time.sleep(0.5)
    assert record["state"] == "error"
    assert "lost" in record["error"]
    refused = httpx.post(
        f"{supervisor.url}/v1/chat/completions",
        json={"model": "doomed", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert refused.status_code == 503


def test_two_replicas_on_two_nodes_survive_losing_one_and_scale_down_and_up(
    ray_cluster: Any, supervisor: Server, smollm2_gguf: dict[str, str]
) -> None:
    """Each replica holds the "pair" resource its node has one of, so they land on two nodes;
    losing one mid-stream ends only its stream, the other keeps serving, and scaling up waits for
    a node with room (a 400 naming the nodes until one joins)."""
    from openai import OpenAI
    from xinference_client import RESTfulClient

    added = [ray_cluster.add_node(num_cpus=1, resources={"pair": 1}) for _ in range(2)]
    try:
        ray_cluster.wait_for_nodes()
        made = launch(
            supervisor, **smollm2_gguf, model_uid="pair", replica=2, node_resources={"pair": 1}
        )
        assert made.status_code == 200, made.text
        record = _model(supervisor, "pair")
        assert record["replica"] == 2 and [r["state"] for r in record["replicas"]] == ["ready"] * 2
        assert {r["node_id"] for r in record["replicas"]} == {node.node_id for node in added}
        xinference = RESTfulClient(supervisor.url)
        hosting = {w["node_id"] for w in xinference.get_workers_info() if "pair" in w["models"]}
        assert hosting == {node.node_id for node in added}  # listed on each replica's node
        assert xinference.get_supervisor_info() == {"supervisor_ip": supervisor.url[7:]}

        client = OpenAI(base_url=f"{supervisor.url}/v1", api_key="unused")
        for _ in range(2):
            assert "Paris" in capital_of_france(client, "pair")

        body = {
            "model": "pair",
            "messages": [{"role": "user", "content": "Count from one to five hundred."}],
            "max_tokens": 300,
            "stream": True,
            "ignore_eos": True,
        }
        url = f"{supervisor.url}/v1/chat/completions"
        with (
            httpx.stream("POST", url, json=body, timeout=120) as first,
            httpx.stream("POST", url, json=body, timeout=120) as second,
        ):
            streams = [first.iter_lines(), second.iter_lines()]
            for lines in streams:
                data_events(lines, 2)
            serving = _model(supervisor, "pair")["replicas"]
            assert [r["in_flight"] for r in serving] == [1, 1]  # least loaded: one each
            lost = next(node for node in added if node.node_id == serving[0]["node_id"])
            ray_cluster.remove_node(lost, allow_graceful=False)
            ends = [data_events(lines, 10_000)[-1] for lines in streams]
        assert sorted('"error"' in end for end in ends) == [False, True], ends

        record = _wait_for(supervisor, "pair", lambda r: "error" in _states(r))
        assert record["state"] == "ready" and "lost" in record["replicas"][0]["error"]
        assert "Paris" in capital_of_france(client, "pair")  # the other replica serves on

        scaled = httpx.post(
            f"{supervisor.url}/v1/models/pair/scale", json={"replica": 1}, timeout=60
        )
        assert scaled.status_code == 200, scaled.text
        assert [r["index"] for r in scaled.json()["replicas"]] == [1]  # the lost one went first
        full = httpx.post(f"{supervisor.url}/v1/models/pair/scale", json={"replica": 2}, timeout=60)
        assert full.status_code == 400 and "pair" in full.json()["error"]["message"], full.text
        added.append(ray_cluster.add_node(num_cpus=1, resources={"pair": 1}))
        ray_cluster.wait_for_nodes()
        grown = httpx.post(
            f"{supervisor.url}/v1/models/pair/scale", json={"replica": 2}, timeout=180
        )
        assert grown.status_code == 200, grown.text
        replicas = grown.json()["replicas"]
        assert _states(grown.json()) == ["ready", "ready"]
        assert replicas[1]["node_id"] == added[-1].node_id != replicas[0]["node_id"]
        assert "Paris" in capital_of_france(client, "pair")
        assert httpx.delete(f"{supervisor.url}/v1/models/pair", timeout=60).status_code == 200
    finally:
        for node in added:
            if node in ray_cluster.list_all_nodes():
                ray_cluster.remove_node(node)


def _model(server: Server, uid: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{server.url}/v1/models/{uid}", timeout=10).json()
    return found


def _states(record: dict[str, Any]) -> list[str]:
    return [replica["state"] for replica in record["replicas"]]


def _wait_for(
    server: Server, uid: str, done: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    record = _model(server, uid)
    while not done(record) and time.monotonic() < deadline:
        time.sleep(0.5)
        record = _model(server, uid)
    return record


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])
