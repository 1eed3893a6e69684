"""An embedding model is refused when SGLang's fixed pooling is not the model's own (read from its
sentence-transformers config), with both named; agreeing or unknown poolings pass."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from modelyard.errors import LaunchError
from modelyard_sglang.pooling import check_pooling, model_pooling


def st_folder(tmp_path: Path, **modes: bool) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))  # fmt: skip
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(modes))
    return tmp_path


def test_a_mean_pooled_bert_is_refused_naming_both_poolings(tmp_path: Path) -> None:
    folder = st_folder(tmp_path, pooling_mode_cls_token=False, pooling_mode_mean_tokens=True)
    with pytest.raises(LaunchError) as info:
        check_pooling("minilm", folder, ("BertModel",))
    message = str(info.value)
    assert "the CLS token" in message and "the mean over the tokens" in message
    assert "Transformers" in message


def test_agreeing_or_unknown_poolings_pass(tmp_path: Path) -> None:
    check_pooling(
        "cls-bert", st_folder(tmp_path / "a", pooling_mode_cls_token=True), ("BertModel",)
    )
    last = st_folder(tmp_path / "b", pooling_mode_lasttoken=True)
    check_pooling("qwen3-embedding", last, ("Qwen3ForCausalLM",))
    assert model_pooling(tmp_path / "nothing-here") is None
    check_pooling("plain", tmp_path / "nothing-here", ("BertModel",))


def test_the_prepared_minilm_asks_for_mean_pooling() -> None:
    folder = Path(os.environ.get("MODELYARD_TEST_MODELS", ".models")) / "all-minilm-l6-v2"
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing; build it with `python scripts/prepare_models.py`")
    assert model_pooling(folder) == ["pooling_mode_mean_tokens"]
