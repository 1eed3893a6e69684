"""`modelyard supervisor` and `modelyard worker -e` as a user starts them: two Ray nodes, a model
placed on the worker, an answer through the supervisor, and nothing left running after Ctrl-C.

Ray sends its traffic to the machine's interface address unless only loopback exists, so the
scenario (tests/cluster_cli_scenario.py) runs in a network namespace of its own (`unshare -n`,
root only), where 127.0.0.1 is the only address.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SCENARIO = Path(__file__).with_name("cluster_cli_scenario.py")


def test_supervisor_and_worker_serve_a_model_placed_on_the_worker(
    tmp_path: Path, smollm2_gguf: dict[str, str]
) -> None:
    # Not imported here: Ray reads its settings at import, and test_e2e_cluster_ray sets them first.
    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs modelyard[cluster] (scripts/test installs it)")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a loopback-only network namespace")
    done = subprocess.run(
        [
            "unshare",
            "-n",
            sys.executable,
            str(SCENARIO),
            str(Path(sys.executable).parent),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    logs = "\n".join(
        f"--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(tmp_path.glob("*.log"))
    )
    assert done.returncode == 0, done.stderr[-3000:] + logs
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["ray_address"] == "127.0.0.1:6390"
    assert seen["launch_status"] == 200, logs
    assert seen["models_by_node"] == {"head_node": [], "node_b": ["smol"]}
    assert "Paris" in seen["answer"]
    # The worker's node killed: the supervisor's head notices, the worker command says so.
    assert seen["model_after_node_loss"] == "error", seen
    print(f"node loss noticed after {seen['noticed_after_s']} s")  # a figure, not a threshold
    assert seen["exit_worker"] == 1, seen
    assert "Ray node stopped" in (tmp_path / "worker.log").read_text()
    assert seen["exit_supervisor"] in (0, 130, -2), seen
    assert seen["leftover_processes"] == 0
