"""Start SGLang's ``Engine`` for one model, in the runner process.

Arguments are checked against the installed SGLang's ``ServerArgs`` before anything heavy starts,
so a typo fails in seconds with the bad name and its close matches. When SGLang fails to start, its
reason (printed by its scheduler process, which the parent only reports as dead) is captured from
stderr and put in the launch error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
from modelyard.errors import LaunchError, ModelyardError
from modelyard.runner.stderr_tail import StderrTail
from modelyard.specs import Ability, Family, LLMFamily

from .args import apply_defaults, check_params, server_arg_names, settle_tool_parser
from .engine_thread import EngineThread
from .install import SglangInstall
from .model import SglangModel
from .pooling import check_pooling
from .store import LoopbackStore

log = logging.getLogger("modelyard.sglang")


def cpu_engine_env() -> dict[str, str]:
    """What SGLang's CPU engine needs before sglang is imported: the CPU engine itself (with only
    ``device="cpu"`` model init imports vllm), and one OpenMP thread bound to the first core unless
    the user chose (two spinning threads on a shared 2-core machine run many times slower)."""
    return {"SGLANG_USE_CPU_ENGINE": "1", "SGLANG_CPU_OMP_THREADS_BIND": "0"}


@contextlib.contextmanager
def _runner_logging_kept() -> Iterator[None]:
    """SGLang's Engine reconfigures the root logger (``basicConfig(force=True)`` at its own
    log_level) in the process that creates it: put the runner's logging back afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


@contextlib.contextmanager
def _child_failures_noted() -> Iterator[None]:
    """SGLang's processes send SIGQUIT to their parent when they fail, which ends a process that has
    no handler for it: this runner, since SGLang installs its own only from the main thread and
    loads run in a worker thread. While the engine starts, the main thread notes the signal instead,
    so the start fails with SGLang's reason; afterwards the runner's handling is back (a process
    failing later still ends the runner, and the server sees it)."""
    try:
        previous = anyio.from_thread.run_sync(signal.signal, signal.SIGQUIT, _note_child_failure)
    except RuntimeError:  # not in a worker thread of an event loop: nothing to do
        yield
        return
    try:
        yield
    finally:
        anyio.from_thread.run_sync(signal.signal, signal.SIGQUIT, previous)


def _note_child_failure(signum: int, frame: object) -> None:
    log.warning("an SGLang process failed while the engine was starting")


def _abilities(family: Family, is_embedding: bool) -> tuple[Ability, ...]:
    if is_embedding:
        return ("embed",)
    wanted: tuple[Ability, ...] = family.model_ability if isinstance(family, LLMFamily) else ()
    return tuple(a for a in wanted if a in ("chat", "generate", "tools")) or ("generate",)


def load(family: Family, params: dict[str, Any], path: Path, install: SglangInstall) -> SglangModel:
    """Build SGLang's arguments, start its ``Engine`` and wrap it; raises ``InvalidRequest`` for bad
    arguments and ``LaunchError`` with SGLang's own reason when the engine does not come up."""
    on_cpu = install.build == "cpu"
    if on_cpu:
        for name, value in cpu_engine_env().items():
            os.environ.setdefault(name, value)
    args = check_params(params, known=server_arg_names())
    chosen = "tool_call_parser" in args
    args = apply_defaults(
        args, family=family, path=path, on_cpu=on_cpu, served_name=family.model_name
    )
    from sglang.srt.function_call.function_call_parser import FunctionCallParser

    settle_tool_parser(args, chosen=chosen, known=list(FunctionCallParser.ToolCallParserEnum))
    if args.get("is_embedding"):
        check_pooling(family.model_name, path, family.architectures)
    import sglang

    store = None
    if int(args.get("nnodes") or 1) == 1 and not args.get("dist_init_addr"):
        store = LoopbackStore()  # one machine: torch's rendezvous stays on loopback
        args["nccl_port"] = store.port
    with StderrTail() as tail, _runner_logging_kept(), _child_failures_noted():
        try:
            home = EngineThread(lambda: sglang.Engine(**args))
            engine = home.result()
        except ModelyardError:
            raise
        except Exception as exc:
            # SGLang's own checks raise with the reason; a dead scheduler only says "see logs".
            reason = str(exc) if isinstance(exc, TypeError | ValueError) else tail.reason()
            reason = reason or f"{type(exc).__name__}: {exc}"
            if store is not None:
                store.close()
            raise LaunchError(f"SGLang failed to start {family.model_name}: {reason}") from exc
    try:
        info = engine.tokenizer_manager
        context = int(info.context_len)
        pool = args.get("max_total_tokens")
        if isinstance(pool, int):
            context = min(context, pool)  # one request can never hold more than the KV pool
        is_embedding = bool(args.get("is_embedding"))
    except Exception:
        engine.shutdown()
        home.release()
        if store is not None:
            store.close()
        raise
    log.info("SGLang engine up for %s (context %d tokens)", family.model_name, context)
    # SGLang's parser name when it has the model's format, else the catalog's (modelyard's parser).
    tool_parser = args.get("tool_call_parser") or (
        family.tool_parser if isinstance(family, LLMFamily) else None
    )
    return SglangModel(
        engine,
        context_length=context,
        abilities=_abilities(family, is_embedding),
        tool_parser=tool_parser,
        store=store,
        home=home,
    )
