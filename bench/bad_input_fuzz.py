"""The long run of the bad-input property tests: at least 10,000 generated requests over every route,
and the tally of answers. Fails (exit 1) on the first 5xx other than 503, printing the request.

The strategies are the test suite's (core/tests/bad_inputs.py): structurally plausible bodies,
random bytes and JSON values, and hostile values placed anywhere in a valid body (deep nesting,
integers beyond 64 bits, NaN/Infinity, huge strings, wrong content and part types, malformed tool
calls). Requests go through the whole ASGI app (routes, validation, error handlers, metrics) over
a fake model manager, as in the tests. With ``--url`` they go to a real server instead, whose
chat model has the uid ``m`` (e.g. SmolLM2 on llama.cpp: ``modelyard launch -n smollm2-instruct
-f ggufv2 -q Q4_1 -u m --n_ctx 512``); bodies then get ``max_tokens: 4`` unless they set it, so
that the engine's answers to bad input are what takes the time.

    python bench/bad_input_fuzz.py [--cases 10000] [--seed 0] [--url http://127.0.0.1:9997]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "tests"))

from bad_inputs import POSTS, check, hostile_requests, make_client, raw_bodies
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

requests = st.one_of(
    hostile_requests,
    hostile_requests,  # twice: the shapes the issue names get half of the cases
    st.sampled_from(sorted(POSTS)).flatmap(
        lambda path: st.tuples(st.just(path), POSTS[path].map(lambda b: json.dumps(b).encode()))
    ),
    st.tuples(st.sampled_from([*sorted(POSTS), "/v1/models/m/cancel"]), raw_bodies),
)


def _short(body: bytes) -> bytes:
    """The body with ``max_tokens: 4`` added when it is a JSON object that does not set it."""
    if not body.startswith(b"{") or b'"max_tokens"' in body:
        return body
    return b'{"max_tokens": 4, ' + body[1:] if body[1:].strip() != b"}" else body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", default=None, help="a running server (default: in-process app)")
    args = parser.parse_args()
    client = make_client() if args.url is None else httpx.Client(base_url=args.url, timeout=120)
    statuses: collections.Counter[int] = collections.Counter()
    routes: collections.Counter[str] = collections.Counter()

    @seed(args.seed)
    @settings(
        max_examples=args.cases,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests)
    def run(request: tuple[str, bytes]) -> None:
        path, body = request
        if args.url is not None:
            body = _short(body)
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        statuses[response.status_code] += 1
        routes[path] += 1
        check(response)

    started = time.perf_counter()
    try:
        run()
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    took = time.perf_counter() - started
    total = sum(statuses.values())
    print(f"{total} requests in {took:.1f} s ({total / took:.0f}/s), none answered 5xx except 503")
    print("by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    print("by route:  " + ", ".join(f"{k}: {v}" for k, v in sorted(routes.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
