"""Shared fixtures: paths of the bundled sites and a temporary output folder per test."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_SITE = REPO / "calibration" / "sites" / "demo_prison.toml"
ANNEX_SITE = REPO / "tests" / "data" / "sites" / "annex.toml"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hardware", action="store_true", help="run tests that need a real RTL-SDR dongle")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--hardware"):
        return
    skip = pytest.mark.skip(reason="needs a real RTL-SDR dongle: run with --hardware")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_site_path() -> Path:
    return DEMO_SITE


@pytest.fixture(scope="session")
def annex_site_path() -> Path:
    return ANNEX_SITE
