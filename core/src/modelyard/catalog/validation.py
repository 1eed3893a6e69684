"""Rules a family must follow that its msgspec types cannot express.

msgspec checks types and ranges when a family is decoded; these checks come after and cover what
needs more than one field: quantization names that fit the format, GGUF file templates, abilities
that fit the model type, reasoning tags, and unique names. Every failure is a ``CatalogError`` whose
message says where (file and entry), which field (a msgspec-style ``$`` path) and what is expected.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

from ..errors import CatalogError
from ..specs import Family, LLMFamily, ModelSpec, ModelType

# The name patterns Hugging Face repositories really use for each format. Kept loose enough for
# the variants quantizers publish (Int4-W4A16, UD-Q4_K_XL, 8bit-MXFP8) and strict enough to
# catch a quantization filed under the wrong format ("Int4" on a GGUF spec, "Q4_K_M" on AWQ).
_GGUF = r"(UD-|i1-)?(I?Q\d+(_[0-9A-Z]+)*|TQ\d_\d|MXFP4(_MOE)?|F16|BF16|F32|FP16|FP32)"
QUANTIZATION_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "pytorch": (
        re.compile(r"none|4-bit|8-bit"),
        '"none" (or "4-bit"/"8-bit" for bitsandbytes at load time)',
    ),
    "awq": (re.compile(r"Int4(-[\w-]+)?"), '"Int4"'),
    "gptq": (re.compile(r"Int[2348](-[\w-]+)?"), '"Int2", "Int3", "Int4" or "Int8"'),
    "fp8": (re.compile(r"FP8"), '"FP8"'),
    "fp4": (re.compile(r"FP4|NVFP4|MXFP4"), '"FP4", "NVFP4" or "MXFP4"'),
    "bnb": (re.compile(r"4-bit|8-bit"), '"4-bit" or "8-bit"'),
    "mlx": (
        re.compile(r"\d+bit(-\w+)?|bf16|fp16|none|mxfp[48]|nvfp4"),
        'e.g. "4bit", "8bit", "bf16"',
    ),
    "ggufv2": (
        re.compile(_GGUF, re.IGNORECASE),
        'a GGUF type such as "Q4_K_M", "Q8_0", "IQ4_XS" or "F16"',
    ),
}

ABILITIES: dict[ModelType, tuple[frozenset[str], frozenset[str]]] = {
    # type: (allowed abilities, at least one of these is required)
    "LLM": (
        frozenset({"chat", "generate", "tools", "vision", "reasoning"}),
        frozenset({"chat", "generate"}),
    ),
    "embedding": (frozenset({"embed", "vision"}), frozenset({"embed"})),
    "rerank": (frozenset({"rerank"}), frozenset({"rerank"})),
}


def check_family(family: Family, *, where: str, path: str = "$") -> None:
    """Raise ``CatalogError`` for the first rule ``family`` breaks. ``where`` names the file and
    entry for the message; ``path`` is the family's own ``$`` path inside that file."""
    model_type = family.model_type
    _check_abilities(family, model_type, where, path)
    if isinstance(family, LLMFamily):
        _check_reasoning(family, where, path)
    for index, spec in enumerate(family.model_specs):
        _check_spec(spec, where, f"{path}.model_specs[{index}]")


def check_unique(families: Iterable[tuple[Family, str, str]]) -> None:
    """Names are unique per model type, ignoring case (a name is typed by people and URLs).

    ``families`` yields (family, where, path) so that the error can point at the second entry.
    """
    seen: dict[tuple[ModelType, str], str] = {}
    for family, where, path in families:
        key = (family.model_type, family.model_name.lower())
        if key in seen:
            raise CatalogError(
                f"{where}: model_name {family.model_name!r} at `{path}.model_name` is already used by "
                f"{seen[key]}; expected a name unique among {key[0]} models (case-insensitive)"
            )
        seen[key] = where


def _check_abilities(family: Family, model_type: ModelType, where: str, path: str) -> None:
    allowed, required = ABILITIES[model_type]
    abilities = set(family.model_ability)
    wrong = sorted(abilities - allowed)
    if wrong:
        raise CatalogError(
            f"{where}: ability {wrong[0]!r} at `{path}.model_ability` does not fit a {model_type} "
            f"model; expected abilities among {sorted(allowed)}"
        )
    if not abilities & required:
        raise CatalogError(
            f"{where}: `{path}.model_ability` is {sorted(abilities)}; a {model_type} model needs "
            f"at least one of {sorted(required)}"
        )
    if model_type == "LLM" and abilities & {"tools", "vision"} and "chat" not in abilities:
        raise CatalogError(
            f"{where}: `{path}.model_ability` lists tools or vision without 'chat'; "
            "expected 'chat' too (tools and images are chat features)"
        )


def _check_reasoning(family: LLMFamily, where: str, path: str) -> None:
    start, end = family.reasoning_start_tag, family.reasoning_end_tag
    if (start is None) != (end is None):
        field = "reasoning_end_tag" if end is None else "reasoning_start_tag"
        raise CatalogError(
            f"{where}: `{path}.{field}` is missing; expected both reasoning_start_tag and "
            "reasoning_end_tag, or neither"
        )
    if "reasoning" in family.model_ability and start is None:
        raise CatalogError(
            f"{where}: `{path}.model_ability` has 'reasoning' but `{path}.reasoning_start_tag` is "
            "null; expected the tags that wrap the reasoning, e.g. '<think>' and '</think>'"
        )


def _check_spec(spec: ModelSpec, where: str, path: str) -> None:
    pattern, expected = QUANTIZATION_RULES[spec.model_format]
    for index, quantization in enumerate(spec.quantizations):
        if not pattern.fullmatch(quantization):
            raise CatalogError(
                f"{where}: quantization {quantization!r} at `{path}.quantizations[{index}]` does not "
                f"fit format {spec.model_format!r}; expected {expected}"
            )
    lowered = [q.lower() for q in spec.quantizations]
    if len(set(lowered)) != len(lowered):
        raise CatalogError(
            f"{where}: `{path}.quantizations` lists a quantization twice; expected each once"
        )
    for index, source in enumerate(spec.sources):
        spath = f"{path}.sources[{index}]"
        if "{" in source.model_id or "}" in source.model_id:
            raise CatalogError(
                f"{where}: `{spath}.model_id` is {source.model_id!r}; expected a literal repository "
                "id or path (write one spec per quantization rather than a placeholder in model_id)"
            )
        template = source.file_name_template
        if spec.model_format == "ggufv2" and template is None and source.hub != "local":
            raise CatalogError(
                f"{where}: `{spath}.file_name_template` is missing; a ggufv2 spec on {source.hub} "
                "expected a file name such as 'model-{quantization}.gguf'"
            )
        if template is not None:
            _check_template(template, len(spec.quantizations), where, f"{spath}.file_name_template")


def _check_template(template: str, n_quantizations: int, where: str, path: str) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise CatalogError(
            f"{where}: `{path}` {template!r} is not a valid template ({exc})"
        ) from None
    unknown = fields - {"quantization"}
    if unknown:
        raise CatalogError(
            f"{where}: `{path}` {template!r} uses {{{sorted(unknown)[0]}}}; expected only {{quantization}}"
        )
    if n_quantizations > 1 and "quantization" not in fields:
        raise CatalogError(
            f"{where}: `{path}` {template!r} names one file for {n_quantizations} quantizations; "
            "expected {quantization} in it"
        )
