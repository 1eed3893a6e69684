"""Prometheus metrics: requests, errors, time to first token and tokens generated, per model.

Each app owns its ``CollectorRegistry`` (not prometheus-client's global one), so several apps in
one process (tests, embedding) never collide. ``MODELYARD_DISABLE_METRICS=1`` leaves /metrics out.
"""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from typing import Any, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..proctree import proc_stats
from ..runner.records import RecordState
from .models import local_resident_bytes, warm_runners

# Seconds; first tokens range from milliseconds (warm GPU) to minutes (long prompts on a CPU).
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
UNMATCHED = "<unmatched>"


def metrics_enabled() -> bool:
    return os.environ.get("MODELYARD_DISABLE_METRICS", "").strip().lower() not in (
        "1",
        "true",
        "yes",
    )


def model_label(scope: Scope) -> str:
    """The model a request was for, set by endpoints once the uid is known to exist (unknown
    names from clients would otherwise make the label set unbounded)."""
    state = scope.get("state") or {}
    return str(state.get("model", ""))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.routes: dict[Any, str] = {}
        self.requests = Counter(
            "modelyard_requests",
            "HTTP requests answered",
            ["method", "route", "model", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "modelyard_errors",
            "Errors answered, by kind",
            ["route", "model", "kind"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "modelyard_request_duration_seconds",
            "Time to answer a request, streams included",
            ["route"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "modelyard_time_to_first_token_seconds",
            "Time from request to the first generated chunk",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.generated = Counter(
            "modelyard_generated_tokens",
            "Tokens generated (from usage)",
            ["model"],
            registry=self.registry,
        )
        self.prompt = Counter(
            "modelyard_prompt_tokens",
            "Prompt tokens processed (from usage)",
            ["model"],
            registry=self.registry,
        )
        self.models = Gauge(
            "modelyard_models",
            "Models known to the server, by state",
            ["state"],
            registry=self.registry,
        )
        self.memory = Gauge(
            "modelyard_model_resident_memory_bytes",
            "Resident memory of each model's runner process tree",
            ["model"],
            registry=self.registry,
        )
        self.warm_memory = Gauge(
            "modelyard_warm_runner_resident_memory_bytes",
            "Resident memory of the idle warm runners kept for fast launches, by engine",
            ["engine"],
            registry=self.registry,
        )

    def route(self, scope: Scope) -> str:
        return self.routes.get(scope.get("endpoint"), UNMATCHED)

    def error(self, scope: Scope, kind: str) -> None:
        self.errors.labels(self.route(scope), model_label(scope), kind).inc()

    def first_token(self, model: str, seconds: float) -> None:
        self.ttft.labels(model).observe(seconds)

    def usage(self, model: str, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        completion, prompt = usage.get("completion_tokens"), usage.get("prompt_tokens")
        if isinstance(completion, int) and completion > 0:
            self.generated.labels(model).inc(completion)
        if isinstance(prompt, int) and prompt > 0:
            self.prompt.labels(model).inc(prompt)

    def render(
        self,
        states: list[str],
        memory: dict[str, int] | None = None,
        warm: dict[str, int] | None = None,
    ) -> bytes:
        counts = Tally(states)
        # Every state a model can be in is reported, 0 or not, so dashboards see each series.
        for state in (*get_args(RecordState), *counts):
            self.models.labels(state).set(counts.get(state, 0))
        self.memory.clear()  # a terminated model's series goes with it
        for model, size in (memory or {}).items():
            self.memory.labels(model).set(size)
        self.warm_memory.clear()
        for engine, size in (warm or {}).items():
            self.warm_memory.labels(engine).set(size)
        return generate_latest(self.registry)


def _has_token(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if (
            choice.get("text")
            or delta.get("content")
            or delta.get("reasoning_content")
            or delta.get("tool_calls")
        ):
            return True
    return False


class GenerationObserver:
    """Watches one generation's chunks: the first one carrying a token sets time to first token
    (engines often send a role-only chunk before prefill ends), usage chunks count tokens."""

    def __init__(self, metrics: Metrics | None, model: str) -> None:
        self.metrics = metrics
        self.model = model
        self.started = time.perf_counter()
        self.first_seen = False

    def see(self, chunk: dict[str, Any]) -> None:
        if self.metrics is None:
            return
        if not self.first_seen and _has_token(chunk):
            self.first_seen = True
            self.metrics.first_token(self.model, time.perf_counter() - self.started)
        if chunk.get("usage"):
            self.metrics.usage(self.model, chunk["usage"])


class MetricsMiddleware:
    """Counts every answered request with its route template, model and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            route = self.metrics.route(scope)
            self.metrics.requests.labels(
                scope["method"], route, model_label(scope), str(status)
            ).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    records = request.app.state.manager.list()
    stats = proc_stats()  # one scan of /proc for every model's process tree
    memory = {record.uid: local_resident_bytes(record, stats) for record in records}
    sizes = {uid: size for uid, size in memory.items() if size is not None}
    warm: dict[str, int] = {}
    for spare in warm_runners(request.app.state.manager):
        warm[spare["engine"]] = warm.get(spare["engine"], 0) + (spare["resident_memory_bytes"] or 0)
    body = metrics.render([record.state for record in records], sizes, warm)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
