"""Stop strings over streamed text, and incremental detokenization with a real tokenizer."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from modelyard_transformers.text import Detokenizer, StopMatcher


@given(
    text=st.text(alphabet="abc \n", max_size=40),
    stops=st.lists(st.text(alphabet="abc", min_size=1, max_size=4), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=10),
)
def test_streamed_output_is_the_text_before_the_first_stop(
    text: str, stops: list[str], cuts: list[int]
) -> None:
    matcher = StopMatcher(stops)
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    out, stopped = "", False
    for start, end in itertools.pairwise(bounds):
        piece, stopped = matcher.feed(text[start:end])
        out += piece
        if stopped:
            break
    if not stopped:
        out += matcher.flush()
    hits = [text.find(s) for s in stops if s in text]
    # Earliest end of any stop string decides where generation notices it; text before its start is kept.
    expected = text if not hits else text[: _first_stop_start(text, stops)]
    assert out == expected
    assert stopped == bool(hits)


def _first_stop_start(text: str, stops: list[str]) -> int:
    # The matcher sees text growing; the first stop to be complete wins, at its start.
    best_end, best_start = None, None
    for s in stops:
        i = text.find(s)
        if i >= 0 and (
            best_end is None or i + len(s) < best_end or (i + len(s) == best_end and i < best_start)
        ):
            best_end, best_start = i + len(s), i
    assert best_start is not None
    return best_start


def test_detokenizer_rebuilds_text_with_spaces_and_multibyte_characters(
    smollm2_tokenizer: Any,
) -> None:
    tokenizer = smollm2_tokenizer
    text = "Héllo wörld — naïve café 東京 🙂 end"
    detok = Detokenizer(tokenizer)
    pieces = [detok.add(token) for token in tokenizer(text, add_special_tokens=False)["input_ids"]]
    pieces.append(detok.flush())
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
