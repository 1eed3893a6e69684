"""Launch parameters: defaults, validation, aliases, threads. Pure: no llama.cpp involved."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelyard.errors import InvalidRequest
from modelyard.specs import EmbeddingFamily, LLMFamily, ModelSpec, RerankFamily
from modelyard_llamacpp.estimate import ModelShape
from modelyard_llamacpp.gguf import read_gguf
from modelyard_llamacpp.settings import THREADS_ENV, default_threads, flatten, resolve

ONE_THREAD = {THREADS_ENV: "1"}


@pytest.fixture(scope="module")
def shape(gguf_path: Path) -> ModelShape:
    return ModelShape.from_gguf(read_gguf(gguf_path))


def test_defaults_give_each_of_four_slots_4096_tokens(family: LLMFamily, shape: ModelShape) -> None:
    settings = resolve(family, {}, shape, env=ONE_THREAD)
    assert settings.assignments["n_parallel"] == 4
    assert settings.assignments["n_ctx"] == 4 * 4096
    assert settings.context_length == 4096
    assert settings.assignments["cpuparams.n_threads"] == 1
    assert settings.assignments["fit_params"] is False
    assert settings.abilities == ("chat", "generate")
    assert not settings.gpu_layers_given


def test_short_model_context_caps_the_slot(spec: ModelSpec, shape: ModelShape) -> None:
    short = LLMFamily(
        model_name="short", model_specs=(spec,), model_ability=("chat",), context_length=1024
    )
    settings = resolve(short, {"n_parallel": 2}, shape, env=ONE_THREAD)
    assert (settings.assignments["n_ctx"], settings.context_length) == (2048, 1024)


def test_n_ctx_is_shared_by_the_slots_rounded_up_like_llama_cpp(
    family: LLMFamily, shape: ModelShape
) -> None:
    settings = resolve(family, {"n_ctx": 1000, "n_parallel": 3}, shape, env=ONE_THREAD)
    assert settings.context_length == 512  # 333 rounded up to 256s, as llama.cpp logs n_ctx_seq
    assert settings.plan.cells == 3 * 512


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_ctx": 0}, "n_ctx must be a positive whole number"),
        ({"n_ctx": -5}, "n_ctx must be a positive whole number"),
        ({"n_ctx": 2.5}, "n_ctx must be a positive whole number"),
        ({"n_parallel": 0}, "n_parallel must be a positive whole number"),
        ({"n_parallel": True}, "n_parallel must be a positive whole number"),
        ({"n_ctx": 4, "n_parallel": 8}, "n_parallel=8 is larger than n_ctx=4"),
        ({"cache_type_k": "q9_9"}, "is not a ggml type"),
    ],
)
def test_bad_values_are_refused(
    family: LLMFamily, shape: ModelShape, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        resolve(family, params, shape, env=ONE_THREAD)


def test_aliases_and_nested_dicts_flatten() -> None:
    flat = flatten(
        {"n_threads": 3, "sampling": {"top_k": 5, "grammar": {"type": 1}}, "n_gpu_layers": 0}
    )
    assert flat == {
        "cpuparams.n_threads": 3,
        "cpuparams_batch.n_threads": 3,
        "sampling.top_k": 5,
        "sampling.grammar.type": 1,
        "n_gpu_layers": 0,
    }


def test_explicit_threads_win_over_the_default(family: LLMFamily, shape: ModelShape) -> None:
    settings = resolve(family, {"n_threads": 3, "n_gpu_layers": 0}, shape, env={THREADS_ENV: "7"})
    assert settings.assignments["cpuparams.n_threads"] == 3
    assert settings.gpu_layers_given


def test_embedding_launch_turns_on_pooling(family: LLMFamily, shape: ModelShape) -> None:
    settings = resolve(family, {"embedding": True}, shape, env=ONE_THREAD)
    assert (
        settings.assignments["pooling_type"] == 1
    )  # mean: the GGUF names none, and "none" cannot serve /v1/embeddings
    assert "embed" in settings.abilities and "chat" in settings.abilities


def test_embedding_and_rerank_families(spec: ModelSpec, shape: ModelShape) -> None:
    embedder = EmbeddingFamily(model_name="e", model_specs=(spec,), dimensions=576, max_tokens=512)
    settings = resolve(embedder, {}, shape, env=ONE_THREAD)
    assert settings.abilities == ("embed",)
    assert settings.assignments["embedding"] is True
    assert settings.context_length == 512
    assert settings.assignments["n_ubatch"] == 512  # a whole input fits one micro-batch
    reranker = RerankFamily(model_name="r", model_specs=(spec,), max_tokens=1024)
    settings = resolve(reranker, {"n_parallel": 1}, shape, env=ONE_THREAD)
    assert settings.abilities == ("rerank",)
    assert settings.assignments["pooling_type"] == 4
    assert settings.assignments["n_ubatch"] == 1024


def test_vision_needs_the_projector(spec: ModelSpec, shape: ModelShape) -> None:
    seeing = LLMFamily(
        model_name="v", model_specs=(spec,), model_ability=("chat", "vision"), context_length=4096
    )
    assert "vision" not in resolve(seeing, {}, shape, env=ONE_THREAD).abilities
    assert (
        "vision"
        in resolve(seeing, {"mmproj.path": "/x/mmproj.gguf"}, shape, env=ONE_THREAD).abilities
    )


def test_threads_on_two_cores_is_one() -> None:
    assert default_threads({}, cpus=2, load=0.0) == 1
    assert default_threads({}, cpus=1, load=3.0) == 1


def test_threads_leave_busy_cores_alone() -> None:
    assert default_threads({}, cpus=16, load=0.2) == 16
    assert default_threads({}, cpus=16, load=5.7) == 11
    assert default_threads({}, cpus=4, load=0.0) == 3


def test_threads_env_override_and_its_validation() -> None:
    assert default_threads({THREADS_ENV: "6"}, cpus=2, load=0.0) == 6
    with pytest.raises(InvalidRequest, match=THREADS_ENV):
        default_threads({THREADS_ENV: "many"})
    with pytest.raises(InvalidRequest, match=THREADS_ENV):
        default_threads({THREADS_ENV: "0"})


@given(cpus=st.integers(1, 512), load=st.floats(0, 1000, allow_nan=False))
def test_threads_always_within_the_usable_cpus(cpus: int, load: float) -> None:
    threads = default_threads({}, cpus=cpus, load=load)
    assert 1 <= threads <= cpus
    if cpus <= 2:
        assert threads == 1


def test_generic_context_length_and_parallel_mean_per_request_context_and_slots(
    family: LLMFamily, shape: ModelShape
) -> None:
    settings = resolve(family, {"context_length": 2048, "parallel": 2}, shape, env=ONE_THREAD)
    assert (settings.plan.n_ctx, settings.plan.n_parallel, settings.context_length) == (
        4096,
        2,
        2048,
    )
    assert "context_length" not in settings.assignments and "parallel" not in settings.assignments
    # llama.cpp's own names win when both are given.
    both = {"context_length": 2048, "n_ctx": 1024, "parallel": 2, "n_parallel": 1}
    settings = resolve(family, both, shape, env=ONE_THREAD)
    assert (settings.plan.n_ctx, settings.plan.n_parallel) == (1024, 1)
