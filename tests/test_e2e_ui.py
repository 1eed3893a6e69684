"""The web UI at /ui in a real browser (Debian's Chromium through Playwright, headless) against a
real `modelyard serve` and the packaged SmolLM2 on llama.cpp: launch from the form (a refused
parameter shown beside its field), chat with a streamed answer, terminate; API keys; a connection
lost in the middle of an answer."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import browser
import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing())),
]

SYSTEM = "You are a helpful assistant. Answer in one short sentence."
KEY = "ui-test-manage-key"
INFERENCE_ONLY = "ui-test-inference-key"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser.chromium() as running:
        yield running


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport=browser.DESKTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def nav(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Pages").get_by_role("link", name=name).click()


def test_launch_chat_and_terminate_from_the_ui(
    page: Any, server: Server, smollm2_gguf: dict[str, str]
) -> None:
    page.goto(f"{server.url}/ui#launch")
    form = page.get_by_role("region", name="Launch a model")
    form.get_by_label("Model name").fill(smollm2_gguf["model_name"])
    form.get_by_label("Format").fill(smollm2_gguf["model_format"])
    form.get_by_label("Quantization").fill(smollm2_gguf["quantization"])
    form.get_by_label("Model uid").fill("ui-smol")
    form.get_by_role("button", name="Add parameter").click()
    form.get_by_label("Parameter 1 name").fill("sampling.top_kk")
    form.get_by_label("Parameter 1 value").fill("40")
    form.get_by_role("button", name="Launch", exact=True).click()

    # The server names the parameter: its message sits beside that row, which is marked invalid.
    value = form.get_by_label("Parameter 1 value")
    expect(value).to_have_attribute("aria-invalid", "true")
    described = page.locator("#" + (value.get_attribute("aria-describedby") or "none"))
    expect(described).to_contain_text("unknown llama.cpp parameter 'sampling.top_kk'")
    expect(described).to_contain_text("sampling.top_k")

    form.get_by_label("Parameter 1 name").fill("sampling.top_k")
    form.get_by_role("button", name="Launch", exact=True).click()
    expect(form.get_by_role("status")).to_contain_text("Launched ui-smol", timeout=180_000)
    expect(value).not_to_have_attribute("aria-invalid", "true")
    with server.client() as http:
        assert http.get("/v1/models/ui-smol").json()["engine_params"] == {"sampling.top_k": 40}

    nav(page, "Running")
    card = page.get_by_role("article", name="Model ui-smol")
    expect(card).to_contain_text("ready")
    expect(card).to_contain_text("llama.cpp")
    expect(card.locator("dd").filter(has_text=re.compile(r"MiB used"))).to_be_visible()
    card.get_by_role("button", name="Show log of ui-smol").click()
    log_tail = page.get_by_label("Log of ui-smol", exact=True)
    expect(log_tail).to_contain_text("loaded smollm2-instruct", timeout=10_000)

    card.get_by_role("link", name="Try it").click()
    play = page.get_by_role("region", name="Playground")
    expect(play.get_by_label("Model", exact=True)).to_have_value("ui-smol")
    play.get_by_label("System prompt").fill(SYSTEM)
    play.get_by_label("Temperature").fill("0")
    play.get_by_label("Max tokens").fill("40")
    play.get_by_label("Message").fill("What is the capital of France?")
    page.keyboard.press("Control+Enter")  # the keyboard sends, as the placeholder says
    log = play.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("Paris", timeout=120_000)
    stats = page.locator("#chat-stats")
    expect(stats).to_contain_text(re.compile(r"Time to first token \d+ ms · [\d.]+ tokens/s"))
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    nav(page, "Running")
    page.get_by_role("button", name="Terminate ui-smol").click()
    expect(page.get_by_role("article", name="Model ui-smol")).to_have_count(0, timeout=60_000)
    with server.client() as http:
        assert http.get("/v1/models/ui-smol").status_code == 404


def test_catalog_filters_engine_table_and_memory_estimate(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/ui")
    page = page.get_by_role("region", name="Catalog")
    families = page.get_by_role("list", name="Model families")
    smollm2 = families.get_by_role("button", name=re.compile(r"^smollm2-instruct "))
    expect(families.get_by_role("button", name=re.compile(r"^qwen2.5-instruct "))).to_be_visible()
    page.get_by_label("Search").fill("smollm2")
    expect(families.get_by_role("button", name=re.compile(r"^qwen2.5-instruct "))).to_have_count(0)
    page.get_by_label("Type").select_option("embedding")
    expect(smollm2).to_have_count(0)
    page.get_by_label("Type").select_option("LLM")
    page.get_by_label("Ability").select_option("tools")
    page.get_by_label("Format").select_option("ggufv2")
    smollm2.click()
    table = page.get_by_role("table").filter(has_text="Runs here")
    expect(table.get_by_role("row").filter(has_text="llama.cpp")).to_contain_text("yes")
    expect(table.get_by_role("row").filter(has_text="vLLM")).to_contain_text("no")
    # The spec picked for the estimate (the GGUF one) would launch on llama.cpp: marked as such.
    expect(table.get_by_role("row").filter(has_text="llama.cpp")).to_contain_text(
        "chosen for the selected spec"
    )
    estimate = page.locator("#estimate-result")
    expect(estimate).to_contain_text("Total")
    before = estimate.locator("dd").nth(2).inner_text()
    page.get_by_label("Context length").fill("8192")
    page.get_by_role("button", name="Estimate").click()
    expect(estimate).to_contain_text("context 8192")
    assert estimate.locator("dd").nth(2).inner_text() != before  # the KV cache grew
    page.get_by_label("Search").fill("no-such-model-anywhere")
    expect(page.get_by_text("No model matches.")).to_be_visible()


def test_api_keys_prompt_401_and_403(
    page: Any,
    tmp_path: Path,
    serving: Callable[..., AbstractContextManager[Server]],
) -> None:
    env = {**os.environ, "MODELYARD_API_KEYS": f"{INFERENCE_ONLY}:inference"}
    with serving(tmp_path / "home", "--api-key", KEY, env=env) as secured:
        assert httpx.get(f"{secured.url}/ui").status_code == 200  # the page itself is open
        page.goto(f"{secured.url}/ui")
        dialog = page.get_by_role("dialog", name="API key")
        expect(dialog).to_be_visible()
        dialog.get_by_label("API key").fill("not-a-key")
        dialog.get_by_role("button", name="Use this key").click()
        expect(page.locator("#notice")).to_contain_text("401 Unauthorized")
        expect(dialog).to_be_visible()  # asked again, with the reason
        expect(dialog).to_contain_text("401 Unauthorized")
        dialog.get_by_label("API key").fill(KEY)
        dialog.get_by_role("button", name="Use this key").click()
        expect(page.get_by_role("button", name="smollm2-instruct")).to_be_visible()
        expect(page.locator("#notice")).to_be_hidden()
        # Kept for the browser session: a reload asks nothing.
        page.reload()
        expect(page.get_by_role("button", name="smollm2-instruct")).to_be_visible()
        expect(dialog).to_be_hidden()

        # A key without the manage scope: the launch is refused as 403, said so.
        page.get_by_role("button", name="API key ✓").click()
        dialog.get_by_label("API key").fill(INFERENCE_ONLY)
        dialog.get_by_role("button", name="Use this key").click()
        nav(page, "Launch")
        form = page.get_by_role("region", name="Launch a model")
        form.get_by_label("Model name").fill("smollm2-instruct")
        form.get_by_role("button", name="Launch", exact=True).click()
        expect(page.locator("#launch-error")).to_contain_text("403 Forbidden")
        expect(page.locator("#launch-error")).to_contain_text("manage")


def test_a_connection_lost_mid_stream_shows_an_error_and_the_page_still_works(
    page: Any,
    tmp_path: Path,
    start_server_with: Callable[..., Server],
    modelyard_command: list[str],
    smollm2_gguf: dict[str, str],
) -> None:
    doomed = start_server_with(modelyard_command[0], tmp_path / "home")
    # Never stopping at end-of-text: the answer is still streaming whatever the model says.
    uid = doomed.launch(**smollm2_gguf, **{"sampling.ignore_eos": True})
    runner_pid = doomed.describe(uid).json()["pid"]
    page.goto(f"{doomed.url}/ui#playground?model={uid}")
    play = page.get_by_role("region", name="Playground")
    play.get_by_label("Max tokens").fill("4000")
    play.get_by_label("Message").fill("Count from 1 to 1000, one number per line.")
    play.get_by_role("button", name="Send").click()
    answer = page.locator(".msg-assistant .text")
    expect(answer).to_contain_text(re.compile(r"\S{3}"), timeout=120_000)
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()  # still streaming

    doomed.process.kill()  # no goodbye: the connection just breaks
    doomed.process.wait()
    error = page.locator("#chat-error")
    expect(error).to_contain_text("No connection", timeout=30_000)
    expect(error).to_contain_text("partial answer is kept")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    # Still usable: the next message is sent and its failure is said plainly.
    play.get_by_label("Message").fill("Are you there?")
    play.get_by_role("button", name="Send").click()
    expect(error).to_contain_text("the server did not answer")
    nav(page, "Catalog")
    expect(page.get_by_role("heading", name="Catalog")).to_be_visible()
    _reap(runner_pid)


def _reap(pid: int) -> None:
    """The runner loses its server with it; make sure it is gone (it is ours: we launched it)."""
    import signal
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)


@pytest.mark.slow
def test_register_a_custom_reranker_then_try_embeddings_and_rerank(
    page: Any, server: Server, cross_encoder_family: Callable[[str], dict[str, object]]
) -> None:
    family = cross_encoder_family("ui-cross-encoder")
    page.goto(f"{server.url}/ui#register")
    region = page.get_by_role("region", name="Register a custom model")
    region.get_by_label("Model type").select_option("rerank")
    region.get_by_label("Family (Xinference's registration JSON)").fill("{not json")
    region.get_by_label("Keep it after a restart").uncheck()
    region.get_by_role("button", name="Register", exact=True).click()
    expect(region.get_by_role("alert")).to_contain_text("not valid JSON")
    region.get_by_label("Family (Xinference's registration JSON)").fill(json.dumps(family))
    region.get_by_role("button", name="Register", exact=True).click()
    expect(region.get_by_role("status")).to_contain_text("Registered ui-cross-encoder")
    expect(region.get_by_role("button", name="Unregister ui-cross-encoder")).to_be_visible()

    uids = []
    try:
        for name, model_type, uid in (
            ("ui-cross-encoder", "rerank", "ui-ce"),
            ("all-MiniLM-L6-v2", "embedding", "ui-minilm"),
        ):
            nav(page, "Launch")
            form = page.get_by_role("region", name="Launch a model")
            for label in ("Format", "Size (billions)", "Quantization"):
                form.get_by_label(label).fill("")
            form.get_by_label("Model name").fill(name)
            form.get_by_label("Model type").select_option(model_type)
            form.get_by_label("Model uid").fill(uid)
            form.get_by_role("button", name="Launch", exact=True).click()
            expect(form.get_by_role("status")).to_contain_text(f"Launched {uid}", timeout=180_000)
            uids.append(uid)

        page.goto(f"{server.url}/ui#playground?model=ui-minilm")
        play = page.get_by_role("region", name="Playground")
        play.get_by_role("tab", name="Embeddings").click()
        play.get_by_role("button", name="Embed").click()
        expect(play.locator("#embed-result")).to_contain_text("3 vectors of 384 dimensions")
        play.get_by_label("Model", exact=True).select_option("ui-ce")
        play.get_by_role("tab", name="Embeddings").press("ArrowRight")  # the keyboard moves tabs
        expect(play.get_by_role("tab", name="Rerank")).to_be_focused()
        play.get_by_role("button", name="Rerank").click()
        expect(play.locator("#rerank-result li")).to_have_count(3)
    finally:
        for uid in uids:
            server.terminate(uid)
        with server.client() as http:
            http.delete("/v1/model_registrations/rerank/ui-cross-encoder")


def test_every_page_fits_a_phone_and_works_from_the_keyboard(page: Any, server: Server) -> None:
    page.set_viewport_size(browser.PHONE)
    page.goto(f"{server.url}/ui")
    for name in ("Catalog", "Launch", "Running", "Playground", "Register"):
        link = page.get_by_role("navigation", name="Pages").get_by_role("link", name=name)
        link.focus()
        page.keyboard.press("Enter")
        expect(link).to_have_attribute("aria-current", "page")
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the {name} page is {overflow} px wider than a phone"
    # A family's engine table and estimate, the widest content, still fit.
    nav(page, "Catalog")
    page.get_by_role("button", name=re.compile(r"^smollm2-instruct ")).click()
    expect(page.locator("#estimate-result")).to_contain_text("Total")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    # The launch form from the keyboard: type into a field and submit with Enter.
    nav(page, "Launch")
    page.get_by_role("region", name="Launch a model").get_by_label("Model name").focus()
    page.keyboard.type("no-such-model")
    page.keyboard.press("Enter")
    name = page.get_by_role("region", name="Launch a model").get_by_label("Model name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#launch-model_name-error")).to_contain_text("404")
