"""Whatever a client sends, the server answers with a status below 500 and, for errors, the JSON
error body. Hypothesis throws random JSON values, random bytes, structurally plausible bodies
(right keys, values of any type) and hostile values (deep nesting, huge integers, NaN/Infinity,
huge strings, wrong content and part types, malformed tool calls) at every route. The strategies
live in bad_inputs.py; bench/bad_input_fuzz.py runs the same ones for 10,000+ cases."""

from __future__ import annotations

import json

from bad_inputs import GET_PATHS, POSTS, check, hostile_requests, make_client, names, raw_bodies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLIENT = make_client()


@SETTINGS
@given(path=st.sampled_from(sorted(POSTS)), data=st.data())
def test_plausible_bodies_never_crash(path: str, data: st.DataObject) -> None:
    body = data.draw(POSTS[path])
    check(
        CLIENT.post(
            path, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
    )


@SETTINGS
@given(request=hostile_requests)
def test_hostile_values_anywhere_never_crash(request: tuple[str, bytes]) -> None:
    path, body = request
    check(CLIENT.post(path, content=body, headers={"content-type": "application/json"}))


@SETTINGS
@given(path=st.sampled_from([*sorted(POSTS), "/v1/models/m/cancel"]), body=raw_bodies)
def test_random_bytes_and_json_values_never_crash(path: str, body: bytes) -> None:
    check(CLIENT.post(path, content=body))


@SETTINGS
@given(
    template=st.sampled_from(GET_PATHS),
    first=names,
    second=names,
    method=st.sampled_from(["GET", "DELETE", "PUT"]),
)
def test_any_path_and_method_never_crash(
    template: str, first: str, second: str, method: str
) -> None:
    path = template.format(first, second)
    if method == "DELETE" and path.startswith("/v1/models/") and first in ("m", "emb"):
        return  # keep the models the other examples use
    check(CLIENT.request(method, path))
