"""Would SGLang's embeddings be the model's own? Checked before an embedding model is launched.

SGLang fixes the pooling in each model class: its BERT and XLM-RoBERTa embedding models take the
CLS token (normalized), its decoder embedding models the last token, whatever the model was trained
with. A sentence-transformers model says its pooling in its ``Pooling`` module's config
(all-MiniLM-L6-v2: mean over the tokens); where the two differ SGLang would run and return vectors
that are not the model's embeddings, so the launch is refused with both poolings named.
"""

from __future__ import annotations

import json
from pathlib import Path

from modelyard.errors import LaunchError

# The pooling SGLang's model classes apply in embedding mode (srt/models/bert.py, roberta.py: CLS;
# the decoder classes' Pooler: the last token).
CLS_ARCHITECTURES = frozenset({"BertModel", "Contriever", "XLMRobertaModel"})
# sentence-transformers' Pooling config keys, in the words of the error message.
_MODES = {
    "pooling_mode_cls_token": "the CLS token",
    "pooling_mode_mean_tokens": "the mean over the tokens",
    "pooling_mode_max_tokens": "the max over the tokens",
    "pooling_mode_mean_sqrt_len_tokens": "the mean over the tokens (sqrt length)",
    "pooling_mode_weightedmean_tokens": "a weighted mean over the tokens",
    "pooling_mode_lasttoken": "the last token",
}


def sglang_pooling(architectures: tuple[str, ...]) -> str:
    """The pooling SGLang applies to these architectures, as a sentence-transformers key."""
    if any(name in CLS_ARCHITECTURES for name in architectures):
        return "pooling_mode_cls_token"
    return "pooling_mode_lasttoken"


def model_pooling(folder: Path) -> list[str] | None:
    """The poolings the model's sentence-transformers config asks for, or None when the folder has
    no such config (nothing to compare with)."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        module = next(m for m in modules if str(m.get("type", "")).endswith(".Pooling"))
        config = json.loads((folder / module["path"] / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError):
        return None
    return [key for key in _MODES if config.get(key)]


def check_pooling(name: str, folder: Path, architectures: tuple[str, ...]) -> None:
    """LaunchError when the model's own pooling is not the one SGLang applies."""
    wanted = model_pooling(folder)
    applied = sglang_pooling(architectures)
    if wanted is None or wanted == [applied]:
        return
    asked = " and ".join(_MODES[key] for key in wanted) or "no pooling SGLang knows"
    raise LaunchError(
        f"SGLang cannot serve {name}'s own embeddings: its {'/'.join(architectures)} embedding "
        f"model pools {_MODES[applied]}, and {name}'s sentence-transformers config pools {asked}; "
        "serve it on the Transformers engine (sentence-transformers), which pools as the model says"
    )
