"""The shared error helpers."""

from __future__ import annotations

from modelyard.errors import did_you_mean


def test_did_you_mean_names_the_closest_known_names() -> None:
    assert did_you_mean("n_ctxx", ["n_ctx", "n_parallel", "n_batch"]) == "; did you mean 'n_ctx'?"
    assert did_you_mean("top_kk", ["top_k", "top_p"]) == "; did you mean 'top_k' or 'top_p'?"


def test_did_you_mean_is_empty_when_nothing_is_close() -> None:
    assert did_you_mean("temperature", ["n_ctx", "n_parallel"]) == ""
