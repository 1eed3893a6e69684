"""`modelyard --help` stays fast: it imports no engine, no server stack and loads no plugin."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner
from modelyard.cli import main

HEAVY = (
    "starlette", "uvicorn", "httpx", "anyio", "huggingface_hub", "prometheus_client", "rich",
    "torch", "transformers", "xllamacpp", "vllm", "sglang", "mlx", "sentence_transformers",
    "modelyard.server", "modelyard.runner", "modelyard.catalog", "modelyard.matching", "modelyard.client",
)  # fmt: skip

PROBE = """
import json, sys
from modelyard.cli import main
try:
    main({args!r})
except SystemExit as exit:
    code = exit.code
loaded = sorted({{name.split(".")[0] if not name.startswith("modelyard") else ".".join(name.split(".")[:2])
                 for name in sys.modules}})
print(json.dumps({{"code": code, "modules": loaded}}))
"""


def loaded_after(args: list[str]) -> tuple[int, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def test_help_imports_nothing_heavy() -> None:
    for args in (["--help"], ["launch", "--help"], ["chat", "--help"], ["engine", "--help"]):
        code, modules = loaded_after(args)
        assert code == 0
        assert modules.isdisjoint(HEAVY), (args, sorted(modules & set(HEAVY)))
        assert not any(name.startswith("modelyard_") for name in modules), (
            "a plugin was loaded for --help"
        )


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("plugins", "registrations", "engine", "register", "unregister", "cal-model-mem",
                    "serve", "launch", "list", "terminate", "chat", "generate"):  # fmt: skip
        assert f"  {command} " in result.output


def test_version() -> None:
    from modelyard import __version__

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
