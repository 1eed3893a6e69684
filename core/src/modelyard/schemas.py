"""OpenAI-compatible request bodies, validated once at the HTTP edge.

Unknown top-level keys are tolerated (clients such as xinference-client send extras), known ones are
typed and range-checked with ``Meta`` constraints so that a bad value becomes a 400 naming its JSON
path. The same Structs travel to the runner, so engines receive typed, already-valid requests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from .errors import InvalidRequest

Temperature = Annotated[float, Meta(ge=0, le=2)]
Probability = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
INT32_MAX = 2**31 - 1
PositiveInt = Annotated[int, Meta(ge=1, le=INT32_MAX)]
TokenId = Annotated[int, Meta(ge=0, le=INT32_MAX)]
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
Stop = str | Annotated[list[str], Meta(max_length=16)] | None


class TextPart(Struct, tag="text", tag_field="type"):
    text: str


class ImageURL(Struct):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class ImagePart(Struct, tag="image_url", tag_field="type"):
    image_url: ImageURL


class InputAudio(Struct):
    data: str
    format: str


class AudioPart(Struct, tag="input_audio", tag_field="type"):
    input_audio: InputAudio


ContentPart = TextPart | ImagePart | AudioPart


def check_json_ints(value: Any, field: str) -> None:
    """Free-form JSON (``dict[str, Any]`` fields) may hold any integer; the runner's msgpack frames
    carry 64 bits. Raises ValueError naming the place of the first integer that does not fit."""
    pending: list[tuple[Any, str]] = [(value, field)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, dict):
            pending.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, list):
            pending.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, int) and not -(2**63) <= item < 2**63:
            raise ValueError(
                f"`{where}` holds the integer {str(item)[:40]}, which does not fit in 64 bits; "
                "send a smaller number (or a string)"
            )


def _check_tool_calls(calls: list[dict[str, Any]]) -> None:
    """An assistant message's ``tool_calls``: ``{"id", "type": "function", "function": {"name",
    "arguments"}}`` each, as OpenAI sends them back; refused here rather than inside an engine."""
    for i, call in enumerate(calls):
        where = f"tool_calls[{i}]"
        function = call.get("function")
        if call.get("type", "function") != "function":
            raise ValueError(f'`{where}.type` must be "function", got {call.get("type")!r}')
        if not isinstance(function, dict):
            raise ValueError(
                f'`{where}.function` must be an object {{"name": ..., "arguments": "..."}}'
            )
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise ValueError(f"`{where}.function.name` must be a non-empty string")
        if not isinstance(function.get("arguments", ""), (str, dict)):
            raise ValueError(
                f"`{where}.function.arguments` must be a JSON string (or an object), "
                f"got {type(function['arguments']).__name__}"
            )
        if call.get("id") is not None and not isinstance(call["id"], str):
            raise ValueError(f"`{where}.id` must be a string")


class ChatMessage(Struct, omit_defaults=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    def __post_init__(self) -> None:
        if self.tool_calls:
            _check_tool_calls(self.tool_calls)
            check_json_ints(self.tool_calls, "tool_calls")

    def text(self) -> str:
        """The message's text, with non-text parts left out."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class FunctionDef(Struct, omit_defaults=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def __post_init__(self) -> None:
        # OpenAI's rule: a function's parameters are a JSON schema of an object.
        schema = self.parameters
        if schema is None:
            return
        if schema.get("type", "object") != "object" or not isinstance(
            schema.get("properties", {}), dict
        ):
            raise ValueError(
                "`parameters` must be a JSON schema of an object, e.g. "
                '{"type": "object", "properties": {"city": {"type": "string"}}}'
            )
        check_json_ints(schema, "parameters")


class Tool(Struct):
    # Not omit_defaults: engines (llama.cpp) refuse a tool without its "type".
    function: FunctionDef
    type: Literal["function"] = "function"


class JSONSchemaFormat(Struct, omit_defaults=True):
    name: str = "response"
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None

    def __post_init__(self) -> None:
        check_json_ints(self.schema, "schema")


class ResponseFormat(Struct, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(Struct, omit_defaults=True):
    include_usage: bool = False


class _Sampling(Struct, kw_only=True, omit_defaults=True):
    """Sampling and stopping parameters common to chat and completions (OpenAI plus vLLM extras)."""

    model: str
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: Annotated[int, Meta(ge=1, le=16)] = 1
    max_tokens: PositiveInt | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100, le=100)]] | None = None
    seed: Int64 | None = None
    user: str | None = None
    # Extras that vLLM, llama.cpp and Xinference accept at the top level.
    top_k: Annotated[int, Meta(ge=-1, le=INT32_MAX)] | None = None
    min_p: Probability | None = None
    repetition_penalty: Annotated[float, Meta(gt=0, le=10)] | None = None
    stop_token_ids: list[TokenId] | None = None
    ignore_eos: bool | None = None
    request_id: str | None = None
    # Ollama's: how long the model stays loaded after this request ("5m", 30, 0, -1).
    keep_alive: str | float | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def token_bias(self) -> dict[int, float]:
        """``logit_bias`` keyed by token id (JSON keys are strings); a key that is no id is a 400."""
        bias: dict[int, float] = {}
        for key, value in (self.logit_bias or {}).items():
            try:
                bias[int(key)] = value
            except ValueError:
                raise InvalidRequest(
                    f"logit_bias keys are token ids; {key!r} is not", param="logit_bias"
                ) from None
        return bias

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(_Sampling, kw_only=True, omit_defaults=True):
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    max_completion_tokens: PositiveInt | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    enable_thinking: bool | None = None

    def __post_init__(self) -> None:
        check_json_ints(self.tool_choice, "tool_choice")
        check_json_ints(self.chat_template_kwargs, "chat_template_kwargs")

    @property
    def token_limit(self) -> int | None:
        """max_completion_tokens (the newer name) wins over max_tokens."""
        return self.max_completion_tokens or self.max_tokens


def _check_homogeneous(field: str, items: object, kinds: tuple[type, ...]) -> None:
    """msgspec allows one list type per union, so "list of str, or list of int" is checked here."""
    if not isinstance(items, list):
        return
    for kind in kinds:
        if all(type(item) is kind for item in items):
            return
    names = " or ".join(f"only {kind.__name__}s" for kind in kinds)
    raise ValueError(f"`{field}` must be a string or a list holding {names}")


class CompletionRequest(_Sampling, kw_only=True, omit_defaults=True):
    prompt: str | Annotated[list[str | TokenId], Meta(min_length=1)]
    max_tokens: PositiveInt | None = 16
    echo: bool = False
    logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    suffix: str | None = None
    best_of: Annotated[int, Meta(ge=1, le=16)] | None = None

    def __post_init__(self) -> None:
        _check_homogeneous("prompt", self.prompt, (str, int))
        if self.best_of is not None and self.best_of != self.n:
            # No engine here generates extra candidates to rank (vLLM's v1 engine dropped it too).
            raise ValueError(
                f"`best_of` ({self.best_of}) other than `n` ({self.n}) is not supported: "
                "leave best_of out, or set it equal to n"
            )

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(Struct, kw_only=True, omit_defaults=True):
    model: str
    input: str | Annotated[list[str | TokenId | list[TokenId]], Meta(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PositiveInt | None = None
    user: str | None = None
    # Inputs longer than the model's maximum: refuse with a 400 (default), or truncate when asked.
    truncate: bool = False
    keep_alive: str | float | None = None

    def __post_init__(self) -> None:
        _check_homogeneous("input", self.input, (str, int, list))


class RerankDocument(Struct):
    text: str


class RerankRequest(Struct, kw_only=True, omit_defaults=True):
    model: str
    query: str
    documents: Annotated[list[str | RerankDocument], Meta(min_length=1)]
    top_n: PositiveInt | None = None
    # Booleans, or "true"/"false" as strings (RAGFlow's Xinference client sends those).
    return_documents: bool | str | None = None
    return_len: bool | str | None = None
    max_chunks_per_doc: PositiveInt | None = None
    # Query + document pairs longer than the model's maximum: cut them (default, as Cohere, Jina
    # and Xinference do; the response's meta.warnings names them), or refuse with a 400 when false.
    truncate: bool = True
    # xinference-client sends its extra keyword arguments again as a JSON string.
    kwargs: str | None = None
    keep_alive: str | float | None = None

    def __post_init__(self) -> None:
        self.return_documents = _flag("return_documents", self.return_documents)
        self.return_len = _flag("return_len", self.return_len)

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


def _flag(field: str, value: bool | str | None) -> bool | None:
    if not isinstance(value, str):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise ValueError(f"`{field}` must be true or false, got {value!r}")


InferenceRequest = ChatCompletionRequest | CompletionRequest | EmbeddingRequest | RerankRequest


def to_plain(request: Struct) -> dict[str, Any]:
    """The request as an OpenAI-shaped dict (unset fields left out), e.g. to hand to an engine."""
    return msgspec.to_builtins(request)
