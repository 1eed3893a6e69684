"""From OpenAI requests to prompt token ids: the model's own chat template, checks, sampling."""

from __future__ import annotations

import json
from typing import Any

from modelyard.errors import InvalidRequest, Unsupported
from modelyard.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest, TextPart

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


def _arguments(value: Any) -> Any:
    # OpenAI sends tool-call arguments as a JSON string; chat templates expect the object.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def template_message(message: ChatMessage, index: int) -> dict[str, Any]:
    if isinstance(message.content, list) and any(
        not isinstance(part, TextPart) for part in message.content
    ):
        raise Unsupported(
            f"messages[{index}] has image or audio parts; this model on Transformers takes text only",
            param=f"messages[{index}].content",
        )
    out: dict[str, Any] = {"role": message.role, "content": message.text()}
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.reasoning_content:
        out["reasoning_content"] = message.reasoning_content
    if message.tool_calls:
        calls = []
        for call in message.tool_calls:
            call = dict(call)
            if isinstance(call.get("function"), dict):
                call["function"] = {
                    **call["function"],
                    "arguments": _arguments(call["function"].get("arguments")),
                }
            calls.append(call)
        out["tool_calls"] = calls
    return out


def render_chat(tokenizer: Any, request: ChatCompletionRequest) -> list[int]:
    """Token ids of the conversation through the model's chat template, ready for the answer."""
    from jinja2 import TemplateError

    messages = [template_message(m, i) for i, m in enumerate(request.messages)]
    kwargs = dict(request.chat_template_kwargs or {})
    if request.enable_thinking is not None:
        kwargs.setdefault("enable_thinking", request.enable_thinking)
    tools = None
    if request.tools and request.tool_choice != "none":
        tools = [{"type": "function", "function": _plain(tool.function)} for tool in request.tools]
    try:
        text = tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=False, **kwargs
        )
    except TemplateError as exc:
        raise InvalidRequest(
            f"the model's chat template refused these messages: {exc}", param="messages"
        ) from None
    # The template writes the special tokens (BOS...) itself.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _plain(function: Any) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(function)


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

    bias: dict[int, float] = {}
    for key, value in (request.logit_bias or {}).items():
        try:
            bias[int(key)] = value
        except ValueError:
            raise InvalidRequest(
                f"logit_bias keys are token ids; {key!r} is not", param="logit_bias"
            ) from None
    return SamplingParams(
        temperature=pick("temperature", 1.0),
        top_p=pick("top_p", 1.0),
        top_k=max(pick("top_k", 0), 0),
        min_p=pick("min_p", 0.0),
        repetition_penalty=pick("repetition_penalty", 1.0),
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias=bias,
        # n choices from one seed must still differ from each other.
        seed=None if request.seed is None else request.seed + choice,
    )
