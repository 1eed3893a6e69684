"""The reply bodies of the OpenAI and management routes, as msgspec types, for ``/openapi.json``.

The routes build these shapes as dicts (they pass engine chunks through with little copying);
these Structs state them once so that the API description is generated, not written by hand, and
tests decode real replies into them (``msgspec.convert``) so that the two cannot drift apart.
Unknown keys are allowed, as in every OpenAI object.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from ..envs import Environment
from ..specs import EngineInfo, ModelFormat, ModelType


class ErrorDetail(Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(Struct):
    """Every error of the OpenAI and management routes: OpenAI's ``error`` object and
    Xinference's ``detail`` string (the same message)."""

    error: ErrorDetail
    detail: str


class Usage(Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolCallFunction(Struct):
    name: str
    arguments: str


class ToolCall(Struct):
    id: str
    function: ToolCallFunction
    type: Literal["function"] = "function"


class AssistantMessage(Struct):
    role: Literal["assistant"]
    content: str | None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(Struct):
    index: int
    message: AssistantMessage
    logprobs: dict[str, Any] | None
    finish_reason: str | None


class ChatCompletion(Struct):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class ChatDelta(Struct):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChunkChoice(Struct):
    index: int
    delta: ChatDelta
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(Struct):
    """One ``data:`` event of a streamed chat completion; the stream ends with ``data: [DONE]``.
    The usage chunk (empty ``choices``) comes only with ``stream_options.include_usage``."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class TextChoice(Struct):
    index: int
    text: str
    logprobs: dict[str, Any] | None
    finish_reason: str | None


class Completion(Struct):
    """A text completion, and (with ``object`` ``text_completion``) each streamed chunk of one."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class Embedding(Struct):
    index: int
    embedding: list[float] | str  # a base64 string with encoding_format "base64"
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(Struct):
    object: Literal["list"]
    model: str
    data: list[Embedding]
    usage: EmbeddingUsage
    truncated_inputs: list[int] | None = None


class RerankDocument(Struct):
    text: str


class RerankResult(Struct):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankTokens(Struct):
    input_tokens: int
    output_tokens: int


class RerankMeta(Struct):
    api_version: Any = None
    billed_units: Any = None
    tokens: RerankTokens | None = None
    warnings: list[str] | None = None


class RerankResponse(Struct):
    id: str
    results: list[RerankResult]
    meta: RerankMeta | None = None


class LaunchBody(Struct, kw_only=True):
    """Xinference's launch payload. Keys not listed here are engine parameters, passed to the
    engine as written (``n_ctx``, ``n_parallel``, dotted names such as ``sampling.top_k``);
    Xinference-only keys are accepted when null. ``?wait_ready=false`` answers at once."""

    model_name: str
    model_type: ModelType = "LLM"
    model_uid: str | None = None
    model_engine: str | None = None
    model_format: ModelFormat | None = None
    model_size_in_billions: float | str | None = None
    quantization: str | None = None
    replica: int = 1
    n_gpu: int | Literal["auto"] | None = "auto"
    download_hub: str | None = None
    model_path: str | None = None
    gpu_idx: int | list[int] | None = None
    request_limits: int | None = None
    enable_thinking: bool | None = None
    keep_alive: str | float | None = None
    register: bool = False


class Launched(Struct):
    model_uid: str


class ModelObject(Struct):
    """An OpenAI model object with Xinference's describe keys and modelyard's own state."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    model_type: str
    model_name: str
    model_engine: str | None
    model_ability: list[str]
    model_format: str | None
    quantization: str | None
    context_length: int | None
    state: str
    progress: float
    error: str | None
    pid: int | None
    engine_params: dict[str, Any]
    replica: int
    memory_estimate: int | None  # bytes the launch was admitted on
    resident_memory_bytes: int | None  # the runner's process tree, read where it runs here
    engine_reason: str | None = None
    keep_alive: float | None = None
    last_used: float | None = None
    in_flight: int = 0
    loads: int = 0
    events: list[ModelEvent] = []
    replicas: list[ReplicaInfo] = []


class ReplicaInfo(Struct):
    """One runner of the model: its id (``replica_id`` in the replica routes), state and place."""

    index: int
    state: Literal["loading", "ready", "unresponsive", "error", "stopping"]
    pid: int | None
    node: str | None  # the cluster node's address; None: this machine
    node_id: str | None
    error: str | None
    in_flight: int
    restarts: int


class ScaleBody(Struct, forbid_unknown_fields=True):
    """``POST /v1/models/{uid}/scale``: how many replicas the model runs from now on. Replicas
    removed stop taking requests at once and stop after their requests in flight end (at most
    ``drain_timeout`` seconds)."""

    replica: Annotated[int, Meta(ge=1)]
    drain_timeout: Annotated[float, Meta(ge=0)] = 60.0


class AddReplicasBody(Struct):
    """Xinference's ``add_model_replica``: ``replica`` more replicas (its other keys must be null)."""

    replica: Annotated[int, Meta(ge=1)] = 1
    replica_config: None = None
    model_engine: str | None = None
    n_gpu: int | Literal["auto"] | None = None


class ReplicaRemoved(Struct):
    model_uid: str
    replica_id: str
    remaining_replicas: int


class ModelEvent(Struct):
    """A load, unload or eviction decision about the model, with its reason."""

    at: float
    event: str
    reason: str


class ModelLogs(Struct):
    uid: str
    lines: list[str]


class MemoryEstimate(Struct, kw_only=True):
    """What ``modelyard cal-model-mem --json`` prints; sizes in bytes."""

    model_name: str
    model_format: str
    model_size_in_billions: float | int | str
    quantization: str
    engine: str | None
    weights: int
    kv_cache: int
    overhead: int
    total: int
    device: str
    gpu_layers: int | None = None
    total_layers: int | None = None
    context_length: int | None = None
    parallel: int = 1
    notes: list[str] = []
    ignored: list[str] = []


class ModelList(Struct):
    object: Literal["list"]
    data: list[ModelObject]


class Deleted(Struct):
    id: str
    object: str
    deleted: bool


class Progress(Struct):
    uid: str
    state: str
    stage: str
    progress: float
    error: str | None
    replicas: list[ReplicaProgress] = []


class ReplicaProgress(Struct):
    replica_id: int
    replica_model_uid: str
    stage: str
    progress: float


class Status(Struct):
    status: Literal["ok"]
    version: str
    uptime_s: float
    models: dict[str, int]


class Health(Struct):
    status: Literal["ok"]


class ClusterAuth(Struct):
    auth: bool


class ApiKey(Struct, kw_only=True):
    """An API key as the server describes it: never the key itself, nor its hash."""

    object: Literal["api_key"]
    id: str
    name: str = ""
    scopes: list[Literal["inference", "manage", "admin"]]
    created: float
    revoked: float | None


class NewApiKey(ApiKey, kw_only=True):
    key: str  # shown this once


class ApiKeyList(Struct):
    object: Literal["list"]
    data: list[ApiKey]


class ClusterVersion(Struct, rename={"full_revisionid": "full-revisionid"}):
    version: str
    full_revisionid: str | None


class Plugins(Struct):
    plugins: list[dict[str, Any]]
    engines: list[EngineInfo]


# A family in Xinference's registration format (model_name, model_specs, ...).
Registration = dict[str, Any]
# Per engine: the specs and quantizations it can run here, or why it cannot (one string).
EngineTable = dict[str, list[dict[str, Any]] | str]


class Environments(Struct):
    environments: list[Environment]
