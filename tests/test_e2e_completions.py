"""Legacy /v1/completions through modelyard serve → llama.cpp → SmolLM2, with the openai client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import openai
import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def smollm2(server: Server, smollm2_gguf: dict[str, str]) -> Iterator[str]:
    uid = server.launch(model_uid="smollm2-legacy", n_ctx=2048, n_parallel=4, **smollm2_gguf)
    yield uid
    server.terminate(uid)


def test_a_list_of_prompts_gets_one_choice_each_and_summed_usage(
    oai: openai.OpenAI, smollm2: str
) -> None:
    prompts = ["The capital of France is", "One, two, three,"]
    both = oai.completions.create(model=smollm2, prompt=prompts, max_tokens=4, temperature=0)
    assert sorted(c.index for c in both.choices) == [0, 1]
    singles = [
        oai.completions.create(model=smollm2, prompt=p, max_tokens=4, temperature=0)
        for p in prompts
    ]
    by_index = {c.index: c.text for c in both.choices}
    assert [by_index[0], by_index[1]] == [s.choices[0].text for s in singles]
    assert both.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in singles)
    assert both.usage.completion_tokens == sum(s.usage.completion_tokens for s in singles)


def test_n_choices_per_prompt(oai: openai.OpenAI, smollm2: str) -> None:
    reply = oai.completions.create(
        model=smollm2, prompt=["Hello", "Bye"], n=2, max_tokens=3, temperature=0.8, seed=1
    )
    assert sorted(c.index for c in reply.choices) == [0, 1, 2, 3]
    # Four choices of at most 3 tokens each, every one counted; both prompts counted once.
    assert 4 <= reply.usage.completion_tokens <= 12
    hello = oai.completions.create(model=smollm2, prompt="Hello", max_tokens=1)
    bye = oai.completions.create(model=smollm2, prompt="Bye", max_tokens=1)
    assert reply.usage.prompt_tokens == hello.usage.prompt_tokens + bye.usage.prompt_tokens


def test_echo_puts_the_prompt_before_the_completion(oai: openai.OpenAI, smollm2: str) -> None:
    prompt = "The capital of France is"
    plain = oai.completions.create(model=smollm2, prompt=prompt, max_tokens=4, temperature=0)
    echoed = oai.completions.create(
        model=smollm2, prompt=prompt, max_tokens=4, temperature=0, echo=True
    )
    assert echoed.choices[0].text == prompt + plain.choices[0].text
    stream = oai.completions.create(
        model=smollm2, prompt=prompt, max_tokens=4, temperature=0, echo=True, stream=True
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == echoed.choices[0].text


def test_logprobs_come_in_the_legacy_shape(oai: openai.OpenAI, smollm2: str) -> None:
    prompt = "The capital of France is"
    reply = oai.completions.create(
        model=smollm2, prompt=prompt, max_tokens=3, temperature=0, logprobs=2
    )
    choice = reply.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == 3
    assert "".join(logprobs.tokens) == choice.text
    assert all(lp <= 0 for lp in logprobs.token_logprobs)
    assert all(len(top) <= 2 and top for top in logprobs.top_logprobs)
    # Greedy: each chosen token is the most likely one.
    for token, top in zip(logprobs.tokens, logprobs.top_logprobs, strict=True):
        assert max(top, key=top.__getitem__) == token
    assert logprobs.text_offset[0] == len(prompt)
    assert logprobs.text_offset[1] == len(prompt) + len(logprobs.tokens[0])


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"suffix": "return x"}, "suffix"), ({"best_of": 3}, "best_of")],
)
def test_what_llamacpp_cannot_do_is_a_400_naming_it(
    oai: openai.OpenAI, smollm2: str, extra: dict[str, object], field: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.completions.create(model=smollm2, prompt="def f(", max_tokens=3, **extra)  # type: ignore[call-overload]
    assert field in str(caught.value)
