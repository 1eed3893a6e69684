"""Start vLLM's async engine for one model, in the runner process.

Arguments are checked against the installed vLLM before anything heavy starts, so a typo fails in a
second with the bad name and its close matches. When vLLM itself fails to start, its reason (often
printed by the engine-core subprocess, not raised) is captured from stderr and put in the launch error.
"""

from __future__ import annotations

import logging
import os
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

from modelyard.errors import LaunchError, ModelyardError
from modelyard.runner.stderr_tail import StderrTail
from modelyard.specs import Ability, Family, LLMFamily

from .args import LaunchArgs, apply_defaults, check_tool_parser, engine_arg_names, split_params
from .install import VllmInstall
from .model import VllmModel

log = logging.getLogger("modelyard.vllm")


def _frontend_namespace(engine_args: Any, frontend: dict[str, Any], served_name: str) -> Namespace:
    """The argparse namespace ``vllm serve`` would build, with the engine arguments and the frontend
    options modelyard was given: vLLM's serving layer reads its options from it."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    args = make_arg_parser(FlexibleArgumentParser()).parse_args(["--model", engine_args.model])
    for name, value in vars(engine_args).items():
        setattr(args, name, value)
    for name, value in frontend.items():
        setattr(args, name, value)
    args.served_model_name = [served_name]
    return args


def _abilities(family: Family, model_type: str, tasks: tuple[str, ...]) -> tuple[Ability, ...]:
    if model_type == "embedding":
        return ("embed",)
    wanted: tuple[Ability, ...] = family.model_ability if isinstance(family, LLMFamily) else ()
    return tuple(
        a for a in wanted if a in ("chat", "generate", "tools", "reasoning", "vision")
    ) or ("generate",)


def loopback_env(platform: str = sys.platform) -> dict[str, str]:
    """Keep the sockets vLLM opens inside the runner on loopback: torch.distributed's gloo device
    (which binds the address the host name resolves to, often a LAN address, even for one
    process) and anything vLLM binds to ``get_ip()``. One runner is one machine; modelyard has no
    multi-node vLLM. The user's own values win (setdefault)."""
    interface = {"linux": "lo", "darwin": "lo0"}.get(platform)
    env = {"VLLM_HOST_IP": "127.0.0.1"}
    if interface is not None:
        env["GLOO_SOCKET_IFNAME"] = interface
    return env


def load(family: Family, params: dict[str, Any], path: Path, install: VllmInstall) -> VllmModel:
    """Build the engine arguments, start ``AsyncLLM`` and wrap it; raises ``InvalidRequest`` for bad
    arguments and ``LaunchError`` with vLLM's own reason when the engine does not come up."""
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
    for name, value in loopback_env().items():
        os.environ.setdefault(name, value)
    from vllm.engine.arg_utils import AsyncEngineArgs

    model_type = family.model_type
    launch: LaunchArgs = split_params(params, engine_names=engine_arg_names())
    launch = apply_defaults(
        launch, family=family, path=path, on_cpu=install.build == "cpu", model_type=model_type
    )
    if parser := launch.frontend.get("tool_call_parser"):
        from vllm.tool_parsers import ToolParserManager

        check_tool_parser(str(parser), ToolParserManager.list_registered())
    served_name = family.model_name
    engine_kwargs = {**launch.engine, "served_model_name": [served_name]}
    with StderrTail() as tail:
        try:
            engine_args = AsyncEngineArgs(**engine_kwargs)
            engine = _start(engine_args)
        except ModelyardError:
            raise
        except Exception as exc:
            # "See root cause above": the cause is the engine process's last error line.
            reason = (
                tail.reason() if _points_elsewhere(exc) else ""
            ) or f"{type(exc).__name__}: {exc}"
            raise LaunchError(f"vLLM failed to start {family.model_name}: {reason}") from exc
    try:
        args = _frontend_namespace(engine_args, launch.frontend, served_name)
        max_model_len = int(engine.model_config.max_model_len)
        tasks = tuple(getattr(engine.model_config, "supported_tasks", ()) or ())
    except Exception:
        engine.shutdown()
        raise
    log.info("vLLM engine up for %s (max_model_len=%d)", family.model_name, max_model_len)
    return VllmModel(
        engine,
        args,
        served_name=served_name,
        context_length=max_model_len,
        abilities=_abilities(family, model_type, tasks),
    )


def _start(engine_args: Any) -> Any:
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_engine_args(engine_args, usage_context=UsageContext.OPENAI_API_SERVER)


def _points_elsewhere(exc: BaseException) -> bool:
    """vLLM's startup errors that only say "see above": the cause is in the engine process's output."""
    text = str(exc).lower()
    return "see root cause above" in text or "initialization failed" in text or not text.strip()
