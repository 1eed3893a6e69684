"""Launch parameters of both engines, validated once, and the torch runtime they configure.

Threads: torch's OpenMP pool collapses when it busy-waits on cores that other work needs. For
generation the default is the cores actually free (CPU count minus the 1-minute load, rounded), at
most all but one, at least 1: 1 thread on a 2-core machine. Embedding and rerank models default to
every core, torch's own default: their work comes in short batches, the runner's OpenMP threads
sleep after a short spin (``runner.manager.openmp_waiting``), and measured on 2 cores the second
thread pays (MiniLM, 64 concurrent requests: 226 vs 179 sentences/s at load 2; docs/performance.md).
``n_threads`` or ``MODELYARD_TORCH_THREADS`` set it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Literal

import msgspec
from modelyard import resources
from modelyard.errors import InvalidRequest, did_you_mean

Device = str  # "auto", "cpu", "cuda", "cuda:1", "mps"
DType = Literal["auto", "float32", "bfloat16", "float16"]
_DTYPE_ALIASES = {
    "fp32": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "float": "float32",
}

log = logging.getLogger(__name__)


class _Common(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    n_threads: int | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    trust_remote_code: bool = False
    # Requests arriving within this window of an idle engine start in the same batch.
    batch_wait_ms: float = 5.0


class LLMParams(_Common, kw_only=True, forbid_unknown_fields=True):
    max_num_seqs: int = 8  # rows one batch may hold (vLLM's name)
    context_length: int | None = None  # default: the family's, capped by the model config
    continuous_batching: bool = (
        True  # False: new requests wait for the running batch (debug, bench)
    )
    attn_implementation: str | None = None


class SentenceParams(_Common, kw_only=True, forbid_unknown_fields=True):
    max_batch_size: int = 64  # texts (or pairs) per encode call


def parse_params(params: dict[str, Any], kind: type[_Common]) -> Any:
    """``params`` as ``kind``; unknown names are refused with the closest known ones."""
    params = dict(params)
    # Other spellings of our names; the engine's own name wins when both are given.
    for alias, name in (("torch_dtype", "dtype"), ("parallel", "max_num_seqs")):
        if alias in params and name in kind.__struct_fields__:
            value = params.pop(alias)
            params.setdefault(name, value)
    if isinstance(params.get("dtype"), str):
        params["dtype"] = _DTYPE_ALIASES.get(params["dtype"], params["dtype"])
    known = list(kind.__struct_fields__)
    for name in params:
        if name not in known:
            hint = did_you_mean(name, known) or f"; known: {', '.join(sorted(known))}"
            raise InvalidRequest(f"unknown engine parameter {name!r}{hint}", param=name)
    try:
        return msgspec.convert(params, kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid engine parameter: {exc}") from None


default_threads = resources.free_cores


def thread_count(requested: int | None, default: Callable[[], int] = default_threads) -> int:
    return resources.engine_threads(requested, "MODELYARD_TORCH_THREADS", default)


def configure_torch(params: _Common) -> tuple[Any, Any, int]:
    """Set torch's threads and pick (device, dtype): float32 on CPU; bf16 (else fp16) on CUDA."""
    import torch

    every_core = isinstance(params, SentenceParams)  # see the module's docstring
    threads = thread_count(
        params.n_threads, resources.cpu_count if every_core else resources.free_cores
    )
    torch.set_num_threads(threads)
    # Only settable before the first parallel work; harmless to miss when torch already ran.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    name = params.device
    if name == "auto":
        name = (
            "cuda"
            if torch.cuda.is_available()
            else "mps"
            if torch.backends.mps.is_available()
            else "cpu"
        )
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidRequest(
            f"device {name!r} asked for, but torch sees no CUDA device here", param="device"
        )
    device = torch.device(name)
    if params.dtype != "auto":
        dtype = getattr(torch, params.dtype)
    elif device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif device.type == "mps":
        dtype = torch.float16
    else:
        dtype = torch.float32
    return device, dtype, threads


def load_sentence_model(kind: str, params: dict[str, Any], path: Any) -> tuple[Any, int]:
    """Load a sentence-transformers ``SentenceTransformer`` or ``CrossEncoder`` from ``path``
    with torch configured from the launch ``params``; returns the model (in eval mode) and the
    thread count used."""
    import sentence_transformers

    opts: SentenceParams = parse_params(params, SentenceParams)
    device, dtype, threads = configure_torch(opts)
    model = getattr(sentence_transformers, kind)(
        str(path),
        device=str(device),
        trust_remote_code=opts.trust_remote_code,
        local_files_only=True,
        model_kwargs={"dtype": dtype},
    )
    model.eval()
    log.info("loaded %s %s on %s (%s, %d threads)", kind, path, device, dtype, threads)
    return model, threads
