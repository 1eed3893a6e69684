"""/metrics in Prometheus format (per app registry, switchable off), log files, and serve()."""

from __future__ import annotations

import logging
import logging.handlers
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import server_support as S
import uvicorn
from modelyard.server import create_app, serve, setup_logging
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

HELLO = [{"role": "user", "content": "hi"}]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.anyio
async def test_metrics_count_requests_errors_tokens_and_first_tokens() -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.add("loading", state="loading")
    async with S.asgi_client(app) as http:
        await http.post("/v1/chat/completions", json={"model": "m", "messages": HELLO})
        await http.post(
            "/v1/chat/completions", json={"model": "m", "messages": HELLO, "stream": True}
        )
        await http.post("/v1/chat/completions", json={"model": "ghost", "messages": HELLO})
        await http.get("/nowhere")
        # No token at all (a role chunk, then the end): no time to first token to observe.
        manager.next_stream["m"] = lambda: S.FakeStream(S.chat_chunks([])[:1])
        await http.post("/v1/chat/completions", json={"model": "m", "messages": HELLO})
        response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    chat = "/v1/chat/completions"
    assert (
        value(found, "modelyard_requests_total", method="POST", route=chat, model="m", status="200")
        == 3
    )
    # An unknown model name is not a label value (it would make the label set unbounded).
    assert (
        value(found, "modelyard_requests_total", method="POST", route=chat, model="", status="404")
        == 1
    )
    assert (
        value(
            found,
            "modelyard_requests_total",
            method="GET",
            route="<unmatched>",
            model="",
            status="404",
        )
        == 1
    )
    assert value(found, "modelyard_errors_total", route=chat, model="", kind="ModelNotFound") == 1
    assert value(found, "modelyard_generated_tokens_total", model="m") == 6
    assert value(found, "modelyard_prompt_tokens_total", model="m") == 10
    assert value(found, "modelyard_time_to_first_token_seconds_count", model="m") == 2
    assert value(found, "modelyard_models", state="ready") == 1
    assert value(found, "modelyard_models", state="loading") == 1


@pytest.mark.anyio
async def test_metrics_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_DISABLE_METRICS", "1")
    app, _ = S.app_with()
    async with S.asgi_client(app) as http:
        response = await http.get("/metrics")
        assert (await http.get("/status")).status_code == 200
    assert response.status_code == 404 and response.json()["detail"]


def test_each_app_has_its_own_registry() -> None:
    first, second = S.app_with()[0], S.app_with()[0]
    assert first.state.metrics.registry is not second.state.metrics.registry


@pytest.fixture
def clean_logging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield tmp_path
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_setup_logging_writes_a_rotating_file_per_run(clean_logging: Path) -> None:
    path = setup_logging("server", "debug", console=False)
    assert re.fullmatch(r"server_\d{13}", path.parent.name)
    assert path.parent.parent == clean_logging / "logs" and path.name == "modelyard.log"
    logging.getLogger("modelyard.test").debug("a debug line")
    setup_logging("server", "info", console=False)  # a second call replaces, never doubles
    ours = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.handlers.RotatingFileHandler)
    ]
    assert len(ours) == 1
    assert (ours[0].maxBytes, ours[0].backupCount) == (100 * 1024 * 1024, 30)
    assert "a debug line" in path.read_text()
    with pytest.raises(ValueError, match="verbose"):
        setup_logging("server", "verbose")


def test_the_log_file_rolls_over_at_its_size_limit(
    clean_logging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelyard.server.logs as logs

    monkeypatch.setattr(logs, "MAX_BYTES", 2000)
    path = setup_logging("server", "info", console=False)
    line = "x" * 90
    for i in range(100):  # ~13 KB of records: about six files' worth
        logging.getLogger("modelyard.test").info("%03d %s", i, line)
    files = sorted(path.parent.glob("modelyard.log*"))
    assert len(files) >= 5
    # Each file stops one record past the limit at most; the newest holds the last record.
    assert all(f.stat().st_size < 2000 + 200 for f in files)
    assert f"099 {line}" in path.read_text()
    assert "000 " in (path.parent / f"modelyard.log.{len(files) - 1}").read_text()


def test_serve_binds_localhost_and_logs_to_home(
    clean_logging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def run(server: uvicorn.Server, sockets: Any = None) -> None:
        seen.update(vars(server.config), server=server)
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    serve(port=12345, log_level="warning", shutdown_timeout=3)
    assert isinstance(seen["app"], Starlette)
    assert (seen["host"], seen["port"], seen["log_level"], seen["log_config"]) == (
        "127.0.0.1",
        12345,
        "warning",
        None,
    )
    # Streams end at once on shutdown, so the graceful wait is short (serve --shutdown-timeout).
    assert seen["timeout_graceful_shutdown"] == 3
    assert list((clean_logging / "logs").glob("server_*/modelyard.log"))


def test_creating_an_app_has_no_side_effects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    handlers = list(logging.getLogger().handlers)
    app = create_app()
    assert not (tmp_path / "home" / "logs").exists()
    assert logging.getLogger().handlers == handlers
    assert app.state.manager.list() == []
