"""Run by tests/test_e2e_cluster_cli.py inside a network namespace that has only loopback.

`modelyard supervisor` (a Ray head plus the server) and `modelyard worker -e` (a second Ray node)
on 127.0.0.1, as a user would start them; SmolLM2 is placed on the worker by a custom resource and
answers through the openai client. Prints one JSON line of what it saw; stops both commands with
Ctrl-C (SIGINT) and reports which Ray processes outlived them.

    python tests/cluster_cli_scenario.py BIN_DIR WORK_DIR
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SYSTEM = "You are a helpful assistant. Answer in one short sentence."


def wait_for(predicate, what: str, watched: subprocess.Popen[bytes], seconds: float = 180) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if watched.poll() is not None:
            raise SystemExit(f"{what}: its command exited with {watched.returncode}")
        try:
            if predicate():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"gave up waiting for {what}")


def wait_for_state(url: str, state: str, bound: float = 120) -> str:
    """The model's state once it is ``state`` (or when the bound on a hang passes)."""
    deadline = time.monotonic() + bound
    found = httpx.get(url).json()["state"]
    while found != state and time.monotonic() < deadline:
        time.sleep(0.2)
        found = httpx.get(url).json()["state"]
    return str(found)


def main() -> None:
    bin_dir, work = Path(sys.argv[1]), Path(sys.argv[2])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # `ray start` refuses to join a node when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is set (to 0, as
    # the in-process cluster tests set it): this scenario's namespace keeps Ray on loopback instead.
    inherited = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env = {
        **inherited,
        "MODELYARD_HOME": str(work / "home"),
        "RAY_AUTH_MODE": "disabled",
        "MODELYARD_LLAMACPP_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    modelyard = str(bin_dir / "modelyard")
    # Ray's sockets live under its temp dir, and a Unix socket path has at most 107 bytes.
    ray_root = Path(tempfile.mkdtemp(prefix="myray-", dir="/tmp"))
    logs = {name: (work / f"{name}.log").open("wb") for name in ("supervisor", "worker")}
    supervisor = subprocess.Popen(
        [modelyard, "supervisor", "--port", "9997", "--ray-port", "6390", "--num-cpus", "1",
         "--resources", '{"head_node": 1}', "--ray-temp-dir", str(ray_root / "h")],
        env=env, stdout=logs["supervisor"], stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = "http://127.0.0.1:9997"
    seen: dict[str, object] = {}
    worker = None
    try:
        wait_for(
            lambda: httpx.get(f"{url}/health").status_code == 200, "the supervisor", supervisor
        )
        seen["ray_address"] = httpx.get(f"{url}/v1/cluster").json()["ray_address"]
        worker = subprocess.Popen(
            [modelyard, "worker", "-e", url, "--num-cpus", "1", "--resources", '{"node_b": 1}',
             "--ray-temp-dir", str(ray_root / "w")],
            env=env, stdout=logs["worker"], stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: len(httpx.get(f"{url}/v1/workers").json()) == 2, "the worker node", worker)
        made = httpx.post(
            f"{url}/v1/models",
            json={"model_name": "smollm2-instruct", "model_format": "ggufv2",
                  "quantization": "Q4_1", "model_uid": "smol", "node_resources": {"node_b": 0.5}},
            timeout=300,
        )  # fmt: skip
        seen["launch_status"] = made.status_code
        workers = httpx.get(f"{url}/v1/workers").json()
        seen["models_by_node"] = {
            ",".join(sorted(k for k in w["resources"] if k in ("head_node", "node_b"))): sorted(
                w["models"]
            )
            for w in workers
        }
        from openai import OpenAI

        answer = OpenAI(base_url=f"{url}/v1", api_key="none").chat.completions.create(
            model="smol",
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            max_tokens=24,
            temperature=0,
        )
        seen["answer"] = answer.choices[0].message.content
        # The worker's Ray node dies: every process of it at once (`modelyard worker` itself lives).
        lost_at = time.monotonic()
        for pid in subprocess.run(
            ["pgrep", "-f", str(ray_root / "w")], capture_output=True, text=True, check=False
        ).stdout.split():
            if int(pid) != worker.pid:
                os.kill(int(pid), signal.SIGKILL)
        seen["model_after_node_loss"] = wait_for_state(f"{url}/v1/models/smol", "error")
        seen["noticed_after_s"] = round(time.monotonic() - lost_at, 1)
        seen["exit_worker"] = worker.wait(60)
    finally:
        for process in (worker, supervisor):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    seen[f"exit_{'worker' if process is worker else 'supervisor'}"] = process.wait(
                        60
                    )
                except subprocess.TimeoutExpired:
                    process.kill()
        time.sleep(2)
        leftover = subprocess.run(
            ["pgrep", "-f", str(ray_root)], capture_output=True, text=True, check=False
        ).stdout.split()
        seen["leftover_processes"] = len(leftover)
        for pid in leftover:  # the test's own processes: never leave them behind
            os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(ray_root, ignore_errors=True)
        print(json.dumps(seen))


if __name__ == "__main__":
    main()
