"""Installed as ``sgl_kernel`` into an SGLang environment built for the CPU (by ``cpu_recipe``).

SGLang publishes no CPU build of its kernel package, yet with ``SGLANG_USE_CPU_ENGINE=1`` it imports
a few names from it (``copy_all_layer_kv_cache_cpu``, ``assign_req_to_token_pool_cpu``, ...). A
model on the torch_native attention backend of a CPU without AMX calls none of them, so every name
resolves to a function that says so when called, instead of failing the import.
"""

from __future__ import annotations

from typing import Any, NoReturn

MODELYARD_CPU_SHIM = True  # how cpu_recipe recognises its own file


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)

    def unavailable(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(
            f"sgl_kernel.{name} has no CPU build; this environment has modelyard's import shim "
            "in its place (install SGLang's CUDA build to run kernels)"
        )

    unavailable.__name__ = name
    return unavailable
