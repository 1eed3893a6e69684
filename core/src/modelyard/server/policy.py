"""What a caller may ask of the server's machine: local paths only under the model roots, remote
code only when the server allows it. Checked in the routes, before anything is opened or loaded."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
from starlette.requests import Request

from ..errors import Forbidden
from ..roots import check_local_path
from ..specs import Family, LaunchRequest
from .security import Security

REMOTE_CODE = "trust_remote_code"


def security_of(request: Request) -> Security:
    found: Security = request.app.state.security
    return found


def _remote_code_asked(params: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _remote_code_asked(value, f"{name}.")
        elif str(key).rsplit(".", 1)[-1] == REMOTE_CODE and value not in (None, False, 0, "false"):
            yield name


_PATH_SUFFIXES = ("path", "file", "dir", "directory")
_PATH_PREFIXES = ("/", "~", "file:", "./", "../")


def _paths_in(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Engine parameters that name local files (``mmproj.path``, ``chat_template_file``,
    ``download_dir``, ``tokenizer="/..."``...): by their name or by looking like a path."""
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _paths_in(value, f"{name}.")
        elif (
            isinstance(value, str)
            and value
            and (
                str(key).rsplit(".", 1)[-1].lower().endswith(_PATH_SUFFIXES)
                or value.startswith(_PATH_PREFIXES)
            )
        ):
            yield name, value


def check_launch(launch: LaunchRequest, security: Security) -> LaunchRequest:
    """The launch with ``model_path`` resolved inside a model root; Forbidden otherwise, and for
    ``trust_remote_code`` (any engine, any nesting) on a server started without
    ``--allow-remote-code``. Engine parameters that name local files are held to the roots too."""
    if not security.allow_remote_code:
        for name in _remote_code_asked(launch.params):
            raise Forbidden(
                f"{name}: this server does not run code shipped with model weights; remove "
                f"{REMOTE_CODE}, or start the server with --allow-remote-code if you trust the model",
                param=name,
                code="remote_code_not_allowed",
            )
    for name, value in _paths_in(launch.params):
        check_local_path(value, security.roots(), param=name)
    if launch.model_path is None:
        return launch
    path = check_local_path(launch.model_path, security.roots(), param="model_path")
    return msgspec.structs.replace(launch, model_path=str(path))


def check_registration(data: Any, security: Security) -> None:
    """Every local path a registration names (Xinference ``model_uri``, plain or ``file://``, or
    our ``local`` sources), joined with its file name template, must lie in a model root."""
    if not isinstance(data, dict):
        return  # malformed: the registration parser explains what is missing
    if not isinstance(data.get("model_specs"), list):
        return
    roots = security.roots()
    for index, spec in enumerate(data["model_specs"]):
        if not isinstance(spec, dict):
            continue
        quantizations = [q for q in spec.get("quantizations") or [] if isinstance(q, str)]
        if isinstance(spec.get("quantization"), str):
            quantizations.append(spec["quantization"])
        found: list[tuple[Any, Any]] = []
        if spec.get("model_uri") is not None:
            found.append((spec["model_uri"], spec.get("model_file_name_template")))
        for source in spec.get("sources") or []:
            if isinstance(source, dict) and source.get("hub") == "local":
                found.append((source.get("model_id"), source.get("file_name_template")))
        param = f"model_specs[{index}].model_uri"
        for raw, template in found:
            base = check_local_path(raw, roots, param=param)
            if isinstance(template, str):
                for quantization in quantizations or [""]:
                    name = template.replace("{quantization}", quantization)
                    check_local_path(os.path.join(base, name), roots, param=param)


def check_packages(family: Family, security: Security) -> None:
    """A family's ``virtualenv.packages`` are installed at launch, and installing a package runs
    its code (build hooks, ``.pth`` files) before the model imports it: remote code."""
    if (
        family.virtualenv is not None
        and family.virtualenv.packages
        and not security.allow_remote_code
    ):
        raise Forbidden(
            "virtualenv.packages: installing packages for a model runs code from the package "
            "index on this server; remove virtualenv, or start the server with "
            "--allow-remote-code if you trust those packages",
            param="virtualenv.packages",
            code="remote_code_not_allowed",
        )
