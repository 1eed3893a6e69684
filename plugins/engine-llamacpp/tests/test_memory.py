"""The estimate against memory really used (issue 2 item 6): load SmolLM2-135M with n_threads=1,
n_ctx=2048, n_parallel=1 in a fresh process, serve one warm-up request, and compare the RSS increase
with the estimate's total.

Tolerance, 20%: the estimate is arithmetic from the GGUF header (96.6 MB of weights, 47.2 MB of KV
cache, 17 MB of compute buffer for this launch, which match llama.cpp's own log lines to <1%, see
test_estimate.py); the measured increase also holds what no header tells: the allocator's arenas,
thread stacks, the tokenizer's tables and the server's structures, about 10-15 MB here. RSS counts
pages touched, which after one request is all of them: the weights are memory-mapped and every layer
(with the tied output matrix) runs; llama.cpp clears the KV cache at load; the compute buffer is
used in full by the warm-up. 20% of ~180 MB leaves room for that noise, and is still tight enough
that a missed term (the KV cache alone is 26% of the total) fails the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import modelyard_llamacpp as plugin
import pytest
from modelyard.specs import Hardware, LLMFamily, ModelSpec

TOLERANCE = 0.20
PARAMS = {"n_threads": 1, "n_ctx": 2048, "n_parallel": 1}

MEASURE = r"""
import json, sys, anyio
from pathlib import Path
import modelyard_llamacpp as plugin
from modelyard.schemas import ChatCompletionRequest, ChatMessage
from modelyard.specs import LLMFamily, ModelSource, ModelSpec
import xllamacpp  # imported before the first reading, so that its code is not counted

def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")

spec = ModelSpec(model_format="ggufv2", model_size_in_billions=0.135, quantizations=("Q4_1",),
                 sources=(ModelSource(hub="local", model_id=sys.argv[1]),))
family = LLMFamily(model_name="smollm2", model_specs=(spec,), model_ability=("chat",), context_length=8192)
before = rss()
model = plugin.load_model(engine="llama.cpp", family=family, spec=spec, quantization="Q4_1",
                          params=json.loads(sys.argv[2]), path=Path(sys.argv[1]))

async def warm_up() -> None:
    request = ChatCompletionRequest(model="m", messages=[ChatMessage(role="user", content="Hello!")], max_tokens=8)
    async for _ in model.chat(request):
        pass

anyio.run(warm_up)
after = rss()
print(json.dumps({"before": before, "after": after}))
anyio.run(model.close)
"""


def test_estimate_matches_measured_memory(
    gguf_path: Path, family: LLMFamily, spec: ModelSpec, xllamacpp_installed: None
) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status (Linux) to read the resident set size")
    hardware = Hardware(
        system="linux",
        machine="x86_64",
        cpu_count=2,
        memory_total=1 << 34,
        memory_available=1 << 33,
    )
    estimate = plugin.estimate_resources(
        engine="llama.cpp",
        family=family,
        spec=spec,
        quantization="Q4_1",
        params=PARAMS,
        hardware=hardware,
    )
    assert estimate is not None and estimate.device == "cpu"
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(gguf_path), json.dumps(PARAMS)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    reading = json.loads(out.stdout.strip().splitlines()[-1])
    measured = reading["after"] - reading["before"]
    assert measured > estimate.weights  # sanity: the weights really are resident
    assert abs(estimate.total - measured) <= TOLERANCE * measured, (
        f"estimate {estimate.total / 2**20:.1f} MiB vs measured {measured / 2**20:.1f} MiB"
    )
