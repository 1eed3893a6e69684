"""The GGUF header reader, on the real SmolLM2 file and on synthetic and broken files."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from modelyard.errors import LaunchError
from modelyard_llamacpp.gguf import GGML_TYPES, ArrayInfo, GGUFError, read_gguf


def test_reads_smollm2_header(gguf_path: Path) -> None:
    gguf = read_gguf(gguf_path)
    assert gguf.version == 3
    assert gguf.get("general.architecture") == "llama"
    assert gguf.get("llama.block_count") == 30
    assert gguf.get("llama.embedding_length") == 576
    assert gguf.get("llama.attention.head_count_kv") == 3
    vocab = gguf.get("tokenizer.ggml.tokens")
    assert isinstance(vocab, ArrayInfo) and vocab.length == 49152  # too long to keep: length only
    assert len(gguf.tensors) == 272
    # Every byte after the header is tensor data: the block-size table matches the file exactly.
    assert gguf.data_offset + gguf.tensor_bytes == gguf_path.stat().st_size
    layers = {t.layer for t in gguf.tensors}
    assert layers == {None, *range(30)}


def test_not_a_gguf_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)  # a zip file with a .gguf name
    with pytest.raises(GGUFError, match=r"is not a GGUF file \(it does not start with") as info:
        read_gguf(path)
    assert isinstance(info.value, LaunchError)
    assert "PK" not in info.value.message  # no file contents in an error


def test_tiny_and_missing_files(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.gguf"
    tiny.write_bytes(b"GGUF")
    with pytest.raises(GGUFError, match="only 4 bytes"):
        read_gguf(tiny)
    with pytest.raises(GGUFError, match="does not exist"):
        read_gguf(tmp_path / "absent.gguf")


@pytest.mark.parametrize("keep", [3000, 50_000_000])
def test_truncated_smollm2_is_refused(gguf_path: Path, tmp_path: Path, keep: int) -> None:
    """Cut inside the header (3000 bytes) and inside the tensor data (50 MB)."""
    cut = tmp_path / "cut.gguf"
    with gguf_path.open("rb") as source:
        cut.write_bytes(source.read(keep))
    with pytest.raises(GGUFError, match="is truncated"):
        read_gguf(cut)


def test_truncated_data_names_the_sizes(gguf_writer: Callable[..., Path], tmp_path: Path) -> None:
    tensors = [("a", (1024,), 0, 0)]  # F32: 4096 bytes of data needed
    path = gguf_writer(
        tmp_path / "short.gguf", {"general.architecture": "llama"}, tensors, data_bytes=1000
    )
    with pytest.raises(GGUFError, match=r"its tensors need \d+ bytes but the file has \d+"):
        read_gguf(path)


def test_synthetic_file_sizes(synthetic_gguf: Callable[..., Path]) -> None:
    gguf = read_gguf(
        synthetic_gguf(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=100)
    )
    sizes = {t.name: t.nbytes for t in gguf.tensors}
    assert (
        sizes["blk.0.attn_k.weight"] == 64 * 32 * 2
    )  # F16: 2 bytes per element, kv dim = 2 heads x 16
    assert sizes["output.weight"] == 64 * 100 * 2
    assert gguf.get("llama.attention.head_count") == 4


def test_unknown_tensor_type_sized_by_offsets(
    gguf_writer: Callable[..., Path], tmp_path: Path
) -> None:
    """A ggml type this reader does not know is sized by the gap to the next tensor."""
    assert 99 not in GGML_TYPES
    tensors = [("a", (64,), 99, 0), ("b", (32,), 0, 512)]
    gguf = read_gguf(
        gguf_writer(
            tmp_path / "x.gguf", {"general.architecture": "llama"}, tensors, data_bytes=512 + 128
        )
    )
    assert [t.nbytes for t in gguf.tensors] == [512, 128]


def test_quantized_block_sizes(gguf_writer: Callable[..., Path], tmp_path: Path) -> None:
    # Q4_K: 256 weights in 144 bytes; Q8_0: 32 in 34.
    tensors = [("q4k", (256, 4), 12, 0), ("q8", (32, 2), 8, 1024)]
    gguf = read_gguf(gguf_writer(tmp_path / "q.gguf", {}, tensors, data_bytes=2048))
    assert [t.nbytes for t in gguf.tensors] == [4 * 144, 2 * 34]


def test_old_version_refused(tmp_path: Path) -> None:
    path = tmp_path / "v1.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<III", 1, 0, 0) + b"\0" * 32)
    with pytest.raises(GGUFError, match="version 1"):
        read_gguf(path)


CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Capital of France?"},
    ],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_catalog_template_renders_like_the_shipped_one_without_tools(
    gguf_path: Path, conversation: list[dict[str, str]]
) -> None:
    """smollm2-instruct's catalog template only adds tools: plain chats render byte for byte the same."""
    jinja2 = pytest.importorskip("jinja2.sandbox")
    from modelyard.catalog import get_catalog
    from modelyard.specs import LLMFamily

    family = get_catalog().get("smollm2-instruct", "LLM")
    assert isinstance(family, LLMFamily) and family.chat_template
    shipped = read_gguf(gguf_path).metadata["tokenizer.chat_template"]
    env = jinja2.ImmutableSandboxedEnvironment()
    # As transformers and llama.cpp do: tojson is plain JSON (Jinja's own escapes for HTML).
    env.filters["tojson"] = json.dumps
    render = {"messages": conversation, "add_generation_prompt": True}
    ours = env.from_string(family.chat_template).render(**render)
    assert ours == env.from_string(shipped).render(**render)
    with_tools = env.from_string(family.chat_template).render(
        **render, tools=[{"type": "function", "function": {"name": "get_weather"}}]
    )
    assert '"name": "get_weather"' in with_tools and "<tool_call>" in with_tools
