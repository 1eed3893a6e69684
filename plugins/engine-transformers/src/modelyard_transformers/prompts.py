"""From OpenAI requests to prompt token ids: the model's own chat template, checks, sampling."""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidRequest, Unsupported
from modelyard.schemas import ChatCompletionRequest, CompletionRequest
from modelyard.templating import template_arguments

from .sampling import SamplingParams


def check_chat(request: ChatCompletionRequest) -> None:
    """Refuse what this engine cannot honour, before any work is queued."""
    if request.response_format is not None and request.response_format.type != "text":
        raise Unsupported(
            f"response_format {request.response_format.type!r} is not supported by the Transformers engine "
            "(it has no constrained decoding); launch the model on vLLM or llama.cpp, or leave response_format out",
            param="response_format",
        )
    if request.logprobs or request.top_logprobs:
        raise Unsupported(
            "logprobs are not supported by the Transformers engine; leave logprobs out",
            param="logprobs",
        )
    if request.tools and (
        request.tool_choice == "required" or isinstance(request.tool_choice, dict)
    ):
        raise Unsupported(
            "the Transformers engine has no guided decoding to force a tool call: use tool_choice "
            "'auto' or 'none', or serve the model on llama.cpp or vLLM, which can",
            param="tool_choice",
        )


def check_completion(request: CompletionRequest) -> None:
    if request.suffix:
        raise Unsupported(
            "suffix (fill-in-the-middle) is not supported by the Transformers engine",
            param="suffix",
        )
    if request.logprobs:
        raise Unsupported(
            "logprobs are not supported by the Transformers engine; leave logprobs out",
            param="logprobs",
        )


def render_chat(tokenizer: Any, request: ChatCompletionRequest) -> list[int]:
    """Token ids of the conversation through the model's chat template, ready for the answer."""
    from jinja2 import TemplateError

    try:
        text = tokenizer.apply_chat_template(
            **template_arguments(request, "Transformers"),
            add_generation_prompt=True,
            tokenize=False,
        )
    except TemplateError as exc:
        raise InvalidRequest(
            f"the model's chat template refused these messages: {exc}", param="messages"
        ) from None
    # The template writes the special tokens (BOS...) itself.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def completion_prompts(tokenizer: Any, request: CompletionRequest) -> list[list[int]]:
    prompt = request.prompt
    if isinstance(prompt, str):
        return [list(tokenizer(prompt)["input_ids"])]
    token_ids = [p for p in prompt if isinstance(p, int)]
    if len(token_ids) == len(prompt):
        vocab = len(tokenizer)
        if any(not 0 <= p < vocab for p in token_ids):
            raise InvalidRequest(f"prompt token ids must be in [0, {vocab})", param="prompt")
        return [token_ids]
    return [list(tokenizer(p)["input_ids"]) for p in prompt]


def sampling_params(
    request: ChatCompletionRequest | CompletionRequest, defaults: dict[str, Any], choice: int
) -> SamplingParams:
    """Request values, else the model's generation_config sampling defaults, else OpenAI's."""

    def pick(name: str, fallback: Any) -> Any:
        value = getattr(request, name)
        return value if value is not None else defaults.get(name, fallback)

    return SamplingParams(
        temperature=pick("temperature", 1.0),
        top_p=pick("top_p", 1.0),
        top_k=max(pick("top_k", 0), 0),
        min_p=pick("min_p", 0.0),
        repetition_penalty=pick("repetition_penalty", 1.0),
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias=request.token_bias(),
        # n choices from one seed must still differ from each other.
        seed=None if request.seed is None else request.seed + choice,
    )
