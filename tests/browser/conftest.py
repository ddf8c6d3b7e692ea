"""Fixtures of the dashboard's browser tests: one ``cellwatch demo`` and one Chromium per module.

The demo runs as a subprocess exactly as an operator starts it (service, ZeroMQ ingest,
simulated sensor nodes as separate processes), on the light scenario
``tests/data/scenarios/browser.toml``; its ``--info-json`` file gives the URL, the login
and the process ids. Chromium is Debian's (``/usr/bin/chromium``) driven by Playwright:
nothing is downloaded. Every console error and uncaught page error during a test fails it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCENARIO = REPO / "tests" / "data" / "scenarios" / "browser.toml"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DEMO_DURATION_S = 240  # a safety net: the fixture stops the demo as soon as the module is done
DEMO_START_TIMEOUT_S = 90.0
OFFLINE_AFTER_S = 8


@dataclass
class Demo:
    info: dict[str, Any]
    process: subprocess.Popen[bytes]
    workdir: Path
    started_s: float

    @property
    def url(self) -> str:
        return str(self.info["url"])


@dataclass
class BrowserErrors:
    """Console errors and uncaught exceptions, as they come."""

    messages: list[str] = field(default_factory=list)


def _stop(process: subprocess.Popen[bytes], info: dict[str, Any] | None) -> None:
    if process.poll() is not None:
        return
    # The simulated nodes hold nothing worth flushing after the tests: end them at once (the
    # demo waits up to 10 s for each to deliver its outbox), then let the demo stop the service.
    for node in (info or {}).get("nodes", {}).values():
        try:
            os.kill(int(node["pid"]), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError):
            pass
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def demo(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("browser-demo")
    info_path = tmp / "info.json"
    log_path = tmp / "demo.log"
    command = [sys.executable, "-m", "service.cli", "demo", "--port", "0", "--duration", str(DEMO_DURATION_S),
               "--scenario", str(SCENARIO), "--workdir", str(tmp / "work"), "--info-json", str(info_path),
               "--offline-after", str(OFFLINE_AFTER_S)]
    started_s = time.time()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    info: dict[str, Any] | None = None
    try:
        deadline = time.monotonic() + DEMO_START_TIMEOUT_S
        while not info_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"cellwatch demo did not start (exit {process.poll()}):\n{output}")
            time.sleep(0.1)
        info = json.loads(info_path.read_text())
        yield Demo(info, process, tmp / "work", started_s)
    finally:
        _stop(process, info)


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser_errors() -> BrowserErrors:
    return BrowserErrors()


@pytest.fixture(scope="module")
def page(browser: Any, demo: Demo, browser_errors: BrowserErrors) -> Iterator[Any]:
    """One tab for the whole module (the session carries over, as for an operator)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True, locale="fr-FR")
    tab = context.new_page()
    tab.set_default_timeout(15_000)

    def on_console(message: Any) -> None:
        if message.type == "error":
            browser_errors.messages.append(f"console error: {message.text} at {message.location}")

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: browser_errors.messages.append(f"page error: {error}"))
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture(autouse=True)
def no_browser_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any browser test during which the page logged an error or threw."""
    if "page" not in request.fixturenames:
        yield
        return
    errors: BrowserErrors = request.getfixturevalue("browser_errors")
    errors.messages.clear()
    yield
    assert errors.messages == [], "\n".join(errors.messages)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
