"""Setting llama.cpp common_params by dotted name on a real xllamacpp.CommonParams."""

from __future__ import annotations

from typing import Any

import pytest
from modelyard.errors import InvalidRequest
from modelyard_llamacpp.params import apply, field_names


@pytest.fixture
def common(xllamacpp_installed: None) -> Any:
    import xllamacpp

    return xllamacpp.CommonParams()


def test_every_nested_field_is_addressable(common: Any) -> None:
    names = field_names(common)
    for name in (
        "n_ctx",
        "sampling.top_k",
        "cpuparams.n_threads",
        "cpuparams_batch.n_threads",
        "sampling.grammar.type",
    ):
        assert name in names
    assert "sampling" not in names  # a group, not a value


def test_dotted_values_reach_llama_cpp(common: Any) -> None:
    apply(
        common,
        {
            "sampling.top_k": 7,
            "sampling.temp": 1,
            "n_ctx": 333,
            "cpuparams.n_threads": 2,
            "embedding": True,
        },
    )
    assert (common.sampling.top_k, common.sampling.temp, common.n_ctx) == (7, 1.0, 333)
    assert common.cpuparams.n_threads == 2 and common.embedding is True


def test_enum_fields_take_short_names_or_numbers(common: Any) -> None:
    apply(common, {"cache_type_k": "q8_0", "pooling_type": "MEAN", "flash_attn_type": 0})
    assert common.cache_type_k.name == "GGML_TYPE_Q8_0"
    assert common.pooling_type.name == "LLAMA_POOLING_TYPE_MEAN"
    assert common.flash_attn_type.name == "LLAMA_FLASH_ATTN_TYPE_DISABLED"


def test_short_float_arrays_are_padded(common: Any) -> None:
    apply(common, {"tensor_split": [3, 1]})
    assert common.tensor_split[:3] == [3.0, 1.0, 0.0]


def test_unknown_name_suggests_close_matches(common: Any) -> None:
    with pytest.raises(
        InvalidRequest,
        match=r"unknown llama.cpp parameter 'sampling.top_kk'; did you mean 'sampling.top_k'",
    ) as info:
        apply(common, {"sampling.top_kk": 3})
    assert info.value.param == "sampling.top_kk"
    with pytest.raises(InvalidRequest, match=r"did you mean 'n_ctx'"):
        apply(common, {"n_ctxx": 3})


def test_unknown_name_without_neighbours_explains_the_naming(common: Any) -> None:
    with pytest.raises(
        InvalidRequest, match=r"'zzqqxx'\. Parameters are llama.cpp common_params fields"
    ):
        apply(common, {"zzqqxx": 1})


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        ({"sampling.top_k": "five"}, r"'sampling.top_k' takes a whole number, got 'five'"),
        ({"sampling.top_k": 2.5}, "takes a whole number"),
        ({"embedding": 1}, "takes true or false"),
        ({"n_ctx": True}, "takes a whole number"),
        ({"sampling.temp": "hot"}, "takes a number"),
        ({"pooling_type": "average"}, r"takes one of unspecified, none, mean, cls, last, rank"),
        ({"sampling": 3}, r"'sampling' is a group of settings: set its fields with dots"),
        ({"model.path": "/etc/passwd"}, "set by modelyard from the launched model"),
        ({"chat_template": 5}, "takes a string"),
    ],
)
def test_wrong_values_are_refused(common: Any, assignments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        apply(common, assignments)


def test_template_kwargs_keep_their_keys_and_become_json(common: Any) -> None:
    """Dict-valued fields are not split at dots: their keys are the dict's keys."""
    apply(
        common,
        {
            "default_template_kwargs.enable_thinking": False,
            "default_template_kwargs.style": "brief",
        },
    )
    assert common.default_template_kwargs == {"enable_thinking": "false", "style": "brief"}
    with pytest.raises(InvalidRequest, match="takes an object"):
        apply(common, {"default_template_kwargs": 3})
