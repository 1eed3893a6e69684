"""Screenshots of each web UI page into docs/ui/ (run by scripts/ui-screenshots): a real
`modelyard serve` with the packaged SmolLM2 on llama.cpp, driven by Debian's Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core" / "tests"))
import browser  # noqa: E402

OUT = ROOT / "docs" / "ui"
SMOLLM2 = {"model_name": "smollm2-instruct", "model_format": "ggufv2", "quantization": "Q4_1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "MODELYARD_HOME": str(home), "MODELYARD_LLAMACPP_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "modelyard.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("modelyard serve did not start")


PHONE_PAGES = ("catalog", "playground")


def shoot(
    page: Any, name: str, wanted: tuple[str, ...] | None = None, *, full: bool = False
) -> None:
    if wanted is not None and name.split("-")[0] not in wanted:
        return
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KiB")


def main() -> None:
    if browser.missing():
        raise SystemExit(browser.missing())
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        process, url = serve(Path(home))
        try:
            httpx.post(f"{url}/v1/models", json=SMOLLM2, timeout=300).raise_for_status()
            with browser.chromium() as chromium:
                take_all(chromium.new_page(viewport=browser.DESKTOP), url, "")
                # At phone width: the two busiest pages (each page takes the same layout rules).
                take_all(chromium.new_page(viewport=browser.PHONE), url, "-phone", PHONE_PAGES)
        finally:
            process.terminate()
            process.wait(timeout=30)


def take_all(p: Any, url: str, suffix: str, wanted: tuple[str, ...] | None = None) -> None:
    p.goto(f"{url}/ui#catalog")
    catalog = p.get_by_role("region", name="Catalog")
    catalog.get_by_label("Search").fill("smollm2")
    catalog.get_by_role("button", name="smollm2-instruct").click()
    catalog.get_by_text("Total").wait_for()
    catalog.locator("tr.chosen").wait_for()
    shoot(p, f"catalog{suffix}", wanted, full=not suffix)

    p.goto(f"{url}/ui#launch")
    form = p.get_by_role("region", name="Launch a model")
    for label, value in (
        ("Model name", "smollm2-instruct"),
        ("Format", "ggufv2"),
        ("Quantization", "Q4_1"),
    ):
        form.get_by_label(label).fill(value)
    form.get_by_label("Model uid").fill("second")
    form.get_by_role("button", name="Add parameter").click()
    form.get_by_label("Parameter 1 name").fill("n_ctx")
    form.get_by_label("Parameter 1 value").fill("lots")
    form.get_by_role("button", name="Launch", exact=True).click()
    form.locator(".param-row .field-error").wait_for()
    shoot(p, f"launch{suffix}", wanted)

    p.goto(f"{url}/ui#models")
    p.get_by_role("button", name="Show log of smollm2-instruct").click()
    p.get_by_label("Log of smollm2-instruct", exact=True).wait_for()
    shoot(p, f"running{suffix}", wanted)

    p.goto(f"{url}/ui#playground?model=smollm2-instruct")
    play = p.get_by_role("region", name="Playground")
    play.get_by_label("Temperature").fill("0")
    play.get_by_label("Message").fill("What is the capital of France?")
    play.get_by_role("button", name="Send").click()
    play.get_by_text("tokens/s").wait_for(timeout=120_000)
    play.get_by_role("button", name="Send").wait_for()
    p.wait_for_timeout(3000)
    shoot(p, f"playground{suffix}", wanted)

    p.goto(f"{url}/ui#register")
    p.get_by_text("None yet.").wait_for()
    shoot(p, f"register{suffix}", wanted)


if __name__ == "__main__":
    main()
