"""`modelyard bench` against a real `modelyard serve` with SmolLM2 on llama.cpp."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]
MODELYARD = str(Path(sys.executable).with_name("modelyard"))


@pytest.fixture(scope="module")
def smollm2(server: Server, smollm2_gguf: dict[str, str]) -> Iterator[str]:
    uid = server.launch(model_uid="smollm2-bench", n_ctx=2048, n_parallel=2, **smollm2_gguf)
    yield uid
    server.terminate(uid)


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELYARD, "bench", *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_two_targets_alternate_and_report_every_figure(
    server: Server, smollm2: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    # Enough tokens per round that the serve process's CPU, counted in 10 ms clock ticks, shows.
    done = bench(
        "--url", server.url, "--url", f"{server.url}/v1", "--model", smollm2,
        "--concurrency", "1,2", "--requests", "4", "--max-tokens", "24", "--rounds", "2",
        "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [(lv["concurrency"], lv["target"]) for lv in report["levels"]] == [
        (1, 0), (1, 1), (2, 0), (2, 1),
    ]  # fmt: skip
    # Round by round the order alternates: A B, then B A.
    order = [(r["concurrency"], r["round"], r["target"]) for r in report["runs"]]
    assert order[:4] == [(1, 0, 0), (1, 0, 1), (1, 1, 1), (1, 1, 0)]
    for level in report["levels"]:
        assert level["tokens_per_second_min"] <= level["tokens_per_second"]
        assert level["tokens_per_second"] <= level["tokens_per_second_max"]
        assert 0 < level["ttft_p50"] <= level["ttft_p95"]
        # The server runs here: its CPU per token is measured, the runner's included.
        assert level["cpu_ms_per_token"] >= level["server_cpu_ms_per_token"] > 0
        assert len(level["load_averages"]) == 2
    assert all(r["tokens"] == 4 * 24 for r in report["runs"])  # usage counted, not guessed
    assert "vs first" in done.stdout and "concurrency 2, round 2/2" in done.stderr


def test_what_does_not_answer_is_one_line_and_a_failure(server: Server, smollm2: str) -> None:
    gone = bench("--url", "http://127.0.0.1:9", "--model", smollm2, "--requests", "1")
    assert gone.returncode == 1 and "does not answer" in gone.stderr
    assert "Traceback" not in gone.stderr and len(gone.stderr.strip().splitlines()) == 1
    missing = bench("--url", server.url, "--model", "no-such-model", "--requests", "1")
    assert missing.returncode == 1 and "has no model 'no-such-model'" in missing.stderr
    assert smollm2 in missing.stderr  # it names what the server has


@pytest.mark.parametrize(
    "args", [("--concurrency", "0"), ("--requests", "0"), ("--concurrency", "x")]
)
def test_zero_or_garbage_is_a_usage_error(server: Server, args: tuple[str, str]) -> None:
    done = bench("--url", server.url, "--model", "m", *args)
    assert done.returncode == 2 and "Usage:" in done.stderr
