"""Make an environment with SGLang's CPU pins run SGLang's CPU engine: what the pins cannot say.

Run in that environment (``prepare_environment``, from ``modelyard env install SGLang`` and
scripts/setup-env.sh), idempotently:
- ``sgl_kernel``: SGLang publishes no CPU build of its kernels, yet its CPU engine imports names
  from them; ``cpu_shim/sgl_kernel.py`` goes where the package would be (see that file).
- torchvision: the registry's torchvision is a CUDA build whose ``_meta_registrations`` registers
  fake kernels for ``nms``/``qnms`` unconditionally, which fails ("operator torchvision::nms does
  not exist") beside the CPU torch; SGLang imports torchvision.transforms at import. Those two
  registrations are guarded by ``torchvision.extension._has_ops()``, as the file's others are.
"""

from __future__ import annotations

import importlib.util
import shutil
import sysconfig
from pathlib import Path

SHIM = Path(__file__).with_name("cpu_shim") / "sgl_kernel.py"
_FAKE_OPS = ("nms", "qnms")


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def install_kernel_shim(site: Path) -> bool:
    """Put the shim in place as ``sgl_kernel``; refuses to replace a real kernel package. True when
    it wrote the file."""
    target = site / "sgl_kernel" / "__init__.py"
    if target.is_file():
        if "MODELYARD_CPU_SHIM" not in target.read_text(encoding="utf-8"):
            raise RuntimeError(
                f"{target.parent} holds SGLang's real kernel package: this environment is not "
                "one for SGLang's CPU engine (build it from the CPU pins)"
            )
        if target.read_bytes() == SHIM.read_bytes():
            return False
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(SHIM, target)
    return True


def guard_text(text: str) -> str:
    """``_meta_registrations.py``'s source with the nms/qnms fake registrations guarded."""
    for op in _FAKE_OPS:
        plain = f'@torch.library.register_fake("torchvision::{op}")'
        guarded = (
            f'@(torch.library.register_fake("torchvision::{op}") '
            "if torchvision.extension._has_ops() else (lambda fn: fn))"
        )
        if guarded not in text:
            if plain not in text:
                raise RuntimeError(f"torchvision's {plain} is gone: check the recipe against it")
            text = text.replace(plain, guarded)
    return text


def guard_torchvision(site: Path) -> bool:
    """Patch torchvision's meta registrations in ``site``; True when it changed the file."""
    path = site / "torchvision" / "_meta_registrations.py"
    if not path.is_file():
        return False  # no torchvision: nothing imports it wrongly
    text = path.read_text(encoding="utf-8")
    guarded = guard_text(text)
    if guarded == text:
        return False
    path.write_text(guarded, encoding="utf-8")
    return True


def apply(site: Path | None = None) -> list[str]:
    """Apply the recipe to ``site`` (this interpreter's site-packages); what it changed."""
    site = site or _site_packages()
    if importlib.util.find_spec("sglang") is None and not (site / "sglang").is_dir():
        raise RuntimeError(f"SGLang is not installed in {site}: install the CPU pins first")
    changed = []
    if install_kernel_shim(site):
        changed.append("sgl_kernel import shim")
    if guard_torchvision(site):
        changed.append("torchvision nms/qnms guard")
    return changed
