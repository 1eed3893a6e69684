"""Starting this machine's Ray node for ``modelyard supervisor`` (a head) and ``modelyard worker``.

Both run Ray's own ``ray start --block`` from this environment as a child process (an argv list,
never a shell), so the node's Ray workers, and the runner host actors among them, import the same
modelyard and engine plugins. Stopping the child stops every Ray process of that node and no other.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import LaunchError

NODE_START_TIMEOUT = 90.0
READY_LINE = b"Ray runtime started"
# The head's health checks: a lost node is noticed in about 5 s (Ray's defaults take ~15 s), so
# its replicas' requests end and relaunches start soon after.
HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_failure_threshold": 5}


def ray_start_argv(
    *,
    head: bool,
    address: str | None = None,
    port: int | None = None,
    node_ip: str | None = None,
    num_cpus: int | None = None,
    resources: Mapping[str, float] | None = None,
    temp_dir: str | None = None,
) -> list[str]:
    ray = Path(sys.executable).with_name("ray")
    argv = [str(ray) if ray.exists() else shutil.which("ray") or "ray", "start", "--block"]
    argv.append("--disable-usage-stats")
    if head:
        argv += ["--head", f"--port={port}", "--include-dashboard=false"]
        argv.append(f"--system-config={json.dumps(HEALTH_CHECKS)}")
    else:
        argv += [f"--address={address}"]
        # Another node on the same host (tests, small setups) needs its own agent ports.
        argv += ["--dashboard-agent-listen-port=0", "--metrics-export-port=0"]
    if node_ip:
        argv.append(f"--node-ip-address={node_ip}")
    if num_cpus is not None:
        argv.append(f"--num-cpus={num_cpus}")
    if resources:
        argv.append(f"--resources={json.dumps(dict(resources))}")
    if temp_dir:
        argv.append(f"--temp-dir={temp_dir}")
    return argv


def start_node(argv: list[str], timeout: float = NODE_START_TIMEOUT) -> subprocess.Popen[bytes]:
    """``ray start --block``, once it says the node runs; its output is forwarded to stderr."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        node = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise LaunchError(
            "the `ray` command is missing: pip install 'modelyard[cluster]'"
        ) from None
    started = threading.Event()
    threading.Thread(target=_forward, args=(node, started), daemon=True).start()
    deadline = time.monotonic() + timeout
    while not started.wait(0.2):
        if node.poll() is not None or time.monotonic() > deadline:
            stop_node(node, grace=5)
            raise LaunchError(
                f"`{' '.join(argv[1:3])}` did not start a Ray node (exit {node.returncode}); "
                "its output is above"
            )
    return node


def _forward(node: subprocess.Popen[bytes], started: threading.Event) -> None:
    assert node.stdout is not None
    for line in node.stdout:
        sys.stderr.buffer.write(line)
        sys.stderr.flush()
        if READY_LINE in line:
            started.set()


def stop_node(node: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM makes ``ray start --block`` stop the node's processes; SIGKILL if it hangs."""
    if node.poll() is not None:
        return
    node.send_signal(signal.SIGTERM)
    try:
        node.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait()
