"""modelyard serve → MLX (mlx-lm on mlx[cpu]), end to end with the openai client: SmolLM2-135M as
the float32 folder and as its 4-bit mlx_lm.convert copy (scripts/prepare_models.py).

The MLX CI step (plugins/engine-mlx/scripts/test.sh) runs it from the main environment, whose
server starts MLX runners in the environment `modelyard env install MLX` built: its interpreter is
in MODELYARD_TEST_MLX_PYTHON. Where mlx-lm is importable here (.venv-mlx) it runs without one."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import openai
import pytest
from local_families import smollm2_family

if TYPE_CHECKING:
    from conftest import Server

MLX_PYTHON = os.environ.get("MODELYARD_TEST_MLX_PYTHON")
if MLX_PYTHON is None and importlib.util.find_spec("mlx_lm") is None:
    pytest.skip(
        "needs MODELYARD_TEST_MLX_PYTHON (an MLX environment's interpreter) or mlx-lm here; "
        "plugins/engine-mlx/scripts/test.sh builds one with `modelyard env install MLX`",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
PARIS = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]


def _family(name: str, folder: Path, fmt: str, quantization: str) -> dict[str, Any]:
    from modelyard.catalog import get_catalog

    smollm2 = get_catalog().get("smollm2-instruct", "LLM")
    template = smollm2.chat_template  # type: ignore[union-attr]
    return smollm2_family(
        name,
        folder,
        model_format=fmt,
        quantization=quantization,
        tools=True,
        chat_template=template,
    )


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    serving: Callable[..., AbstractContextManager[Server]],
    test_models: Path,
    modelyard_command: list[str],
) -> Iterator[Server]:
    for folder in ("smollm2-135m-instruct", "smollm2-135m-instruct-mlx-4bit"):
        if not (test_models / folder / "config.json").is_file():
            pytest.skip(f"{folder} is not prepared: plugins/engine-mlx/scripts/test.sh builds it")
    env = {**os.environ, "MODELYARD_MLX_THREADS": "1", "MODELYARD_PLUGINS": "mlx"}
    home = tmp_path_factory.mktemp("home")
    if MLX_PYTHON is not None:  # MLX's runners start in its own environment
        used = subprocess.run(
            [*modelyard_command, "env", "use", "MLX", MLX_PYTHON],
            env={**env, "MODELYARD_HOME": str(home)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert used.returncode == 0, used.stderr
    with serving(home, "--model-root", str(test_models), env=env) as running:
        with running.client() as http:
            for name, folder, fmt, quant in (
                ("smol-f32", "smollm2-135m-instruct", "pytorch", "none"),
                ("smol-4bit", "smollm2-135m-instruct-mlx-4bit", "mlx", "4bit"),
            ):
                family = _family(name, test_models / folder, fmt, quant)
                answer = http.post(
                    "/v1/model_registrations/LLM",
                    json={"model": json.dumps(family), "persist": False},
                )
                assert answer.status_code == 200, answer.text
        yield running


@pytest.fixture(scope="module")
def uid(server: Server) -> str:
    return server.launch(model_name="smol-f32", model_engine="MLX", model_uid="smol-mlx")


@pytest.fixture(scope="module")
def oai(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300
    ) as c:
        yield c


def _stream_text(oai: openai.OpenAI, uid: str, **kw: Any) -> str:
    stream = oai.chat.completions.create(model=uid, stream=True, temperature=0, **kw)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_paris_with_a_system_prompt(server: Server, oai: openai.OpenAI, uid: str) -> None:
    reply = oai.chat.completions.create(model=uid, messages=PARIS, max_tokens=16, temperature=0)
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens == (
        reply.usage.prompt_tokens + reply.usage.completion_tokens
    )
    assert server.describe(uid).json()["model_engine"] == "MLX"


def test_streaming_stop_strings_and_logprobs(oai: openai.OpenAI, uid: str) -> None:
    plain = _stream_text(oai, uid, messages=PARIS, max_tokens=16)
    assert "Paris" in plain
    cut = _stream_text(oai, uid, messages=PARIS, max_tokens=16, stop=["Paris"])
    assert cut == plain[: plain.index("Paris")]
    reply = oai.chat.completions.create(
        model=uid, messages=PARIS, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2
    )
    content = reply.choices[0].logprobs and reply.choices[0].logprobs.content
    assert content and len(content) == reply.usage.completion_tokens  # type: ignore[union-attr]
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in content)


def test_the_4bit_mlx_copy_serves(server: Server, oai: openai.OpenAI) -> None:
    four = server.launch(model_name="smol-4bit", model_engine="MLX", model_uid="smol-4bit")
    try:
        reply = oai.chat.completions.create(
            model=four, messages=PARIS, max_tokens=12, temperature=0
        )
        assert (reply.choices[0].message.content or "").strip()
        assert reply.usage is not None and reply.usage.completion_tokens > 0
    finally:
        server.terminate(four)


def _batches(server: Server) -> list[list[str]]:
    """The batch compositions the MLX runner logged (``decoding N sequences together: [...]``)."""
    found = re.findall(r"decoding \d+ sequences together: (\[.*\])", server.log.read_text())
    return [json.loads(line.replace("'", '"')) for line in found]


def test_two_streams_share_batches_and_greedy_output_matches_solo(
    server: Server, oai: openai.OpenAI, uid: str
) -> None:
    questions = {"stream-a": "Name three fruits.", "stream-b": "Say hello."}
    solo = {
        name: _stream_text(
            oai, uid, messages=[SYSTEM, {"role": "user", "content": q}], max_tokens=24
        )
        for name, q in questions.items()
    }

    async def together() -> dict[str, str]:
        texts: dict[str, str] = {}
        async with openai.AsyncOpenAI(
            base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300
        ) as client:

            async def one(name: str) -> None:
                stream = await client.chat.completions.create(
                    model=uid,
                    messages=[SYSTEM, {"role": "user", "content": questions[name]}],
                    max_tokens=24,
                    temperature=0,
                    stream=True,
                    extra_body={"request_id": name},
                )
                texts[name] = "".join(
                    [c.choices[0].delta.content or "" async for c in stream if c.choices]
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(one, "stream-a")
                tg.start_soon(one, "stream-b")
        return texts

    assert anyio.run(together) == solo
    assert any(sorted(batch) == ["stream-a", "stream-b"] for batch in _batches(server)), _batches(
        server
    )


def test_a_cancelled_stream_leaves_the_batch(server: Server, oai: openai.OpenAI, uid: str) -> None:
    stream = oai.chat.completions.create(
        model=uid,
        messages=[SYSTEM, {"role": "user", "content": "Write a long essay."}],
        max_tokens=1500,
        temperature=0,
        stream=True,
        extra_body={"request_id": "cancelled", "ignore_eos": True},
    )
    for _, _chunk in zip(range(3), stream, strict=False):
        pass
    stream.close()
    # The next request decodes alone: the cancelled sequence is gone from the batch.
    _stream_text(oai, uid, messages=PARIS, max_tokens=8, extra_body={"request_id": "after"})
    batches = _batches(server)
    after = [b for b in batches if "after" in b]
    assert after and all(b == ["after"] for b in after), batches


def test_bad_input_is_a_400_that_says_what_to_change(
    server: Server, oai: openai.OpenAI, uid: str
) -> None:
    with pytest.raises(openai.BadRequestError, match="seed"):
        oai.chat.completions.create(model=uid, messages=PARIS, max_tokens=4, seed=1)
    long = [{"role": "user", "content": "word " * 2500}]
    with pytest.raises(openai.BadRequestError, match="context length is 2048"):
        oai.chat.completions.create(model=uid, messages=long, max_tokens=4)
    with server.client() as http:
        typo = http.post(
            "/v1/models",
            json={"model_name": "smol-f32", "model_engine": "MLX", "max_num_seq": 4},
        )
        assert typo.status_code == 400 and "max_num_seqs" in typo.text, typo.text
        gguf = http.post(
            "/v1/models",
            json={
                "model_name": "smollm2-instruct",
                "model_format": "ggufv2",
                "quantization": "Q4_1",
                "model_engine": "MLX",
            },
        )
        assert gguf.status_code == 400 and "llama.cpp" in gguf.text, gguf.text
    # The server still serves the model.
    assert "Paris" in _stream_text(oai, uid, messages=PARIS, max_tokens=12)
