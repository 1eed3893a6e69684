"""The runner's environment keeps torch.distributed's gloo device on loopback (vLLM's CPU build
initialises gloo even for one process); shown with torch alone, so it runs without vllm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from modelyard_vllm.launch import loopback_env

SCRIPT = """
import sys, tempfile, uuid
sys.path.insert(0, sys.argv[1])
import torch.distributed as dist
from proc_sockets import listening
before = listening()[0]
store = f"file://{tempfile.gettempdir()}/modelyard-gloo-{uuid.uuid4().hex}"
dist.init_process_group("gloo", init_method=store, world_size=1, rank=0)
print(" ".join(sorted(listening()[0] - before)))
dist.destroy_process_group()
"""


def test_loopback_env() -> None:
    assert loopback_env("linux") == {"VLLM_HOST_IP": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    assert loopback_env("darwin")["GLOO_SOCKET_IFNAME"] == "lo0"
    assert "GLOO_SOCKET_IFNAME" not in loopback_env("win32")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_gloo_listens_on_loopback_only_with_that_env() -> None:
    pytest.importorskip("torch.distributed", reason="needs torch")
    helpers = Path(__file__).resolve().parents[3] / "core" / "tests"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(helpers)],
        env={**os.environ, **loopback_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    addresses = done.stdout.split()
    assert addresses, "gloo opened no listener (nothing to check)"
    for address in addresses:  # /proc/net/tcp: 0100007F is 127.0.0.1; tcp6 loopback is ::1
        host = address.split(":")[0]
        assert host in ("0100007F", "00000000000000000000000001000000"), address
