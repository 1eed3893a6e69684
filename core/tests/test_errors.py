"""The shared error helpers."""

from __future__ import annotations

from modelyard.errors import InvalidRequest, ModelyardError, Unavailable, did_you_mean


def test_did_you_mean_names_the_closest_known_names() -> None:
    assert did_you_mean("n_ctxx", ["n_ctx", "n_parallel", "n_batch"]) == "; did you mean 'n_ctx'?"
    assert did_you_mean("top_kk", ["top_k", "top_p"]) == "; did you mean 'top_k' or 'top_p'?"


def test_did_you_mean_is_empty_when_nothing_is_close() -> None:
    assert did_you_mean("temperature", ["n_ctx", "n_parallel"]) == ""


def test_a_class_defined_after_import_crosses_the_boundary_as_itself() -> None:
    class PluginError(InvalidRequest):  # as a plugin imported after the server started defines it
        pass

    error = ModelyardError.from_dict(PluginError("bad file", param="model_path").to_dict())
    assert isinstance(error, PluginError)
    assert (error.status, error.type, error.param) == (400, "invalid_request_error", "model_path")


def test_an_unknown_class_keeps_status_type_code_and_param() -> None:
    sent = {
        "kind": "OnlyInTheRunner",
        "status": 413,
        "type": "invalid_request_error",
        "message": "too big",
        "param": "input",
        "code": "too_big",
        "retry_after": None,
    }
    error = ModelyardError.from_dict(sent)
    assert (error.status, error.type, error.code, error.param, error.message) == (
        413,
        "invalid_request_error",
        "too_big",
        "input",
        "too big",
    )


def test_a_known_name_with_another_status_keeps_the_sent_status() -> None:
    error = ModelyardError.from_dict({"kind": "InvalidRequest", "status": 422, "message": "x"})
    assert error.status == 422
    assert error.type == "invalid_request_error"


def test_a_frame_from_an_older_runner_without_status_uses_the_class() -> None:
    error = ModelyardError.from_dict({"kind": "Unavailable", "message": "loading"})
    assert isinstance(error, Unavailable) and error.status == 503


def test_a_nonsense_status_is_not_trusted() -> None:
    error = ModelyardError.from_dict({"kind": "Nope", "status": 200, "message": "x"})
    assert error.status == 500
