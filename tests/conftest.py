"""Shared fixtures: paths of the bundled sites and a temporary output folder per test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_SITE = REPO / "calibration" / "sites" / "demo_prison.toml"
ANNEX_SITE = REPO / "tests" / "data" / "sites" / "annex.toml"
FAKE_LIBRTLSDR_DIR = REPO / "tests" / "sdr" / "fake_librtlsdr"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hardware", action="store_true", help="run tests that need a real RTL-SDR dongle")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--hardware"):
        return
    skip = pytest.mark.skip(reason="needs a real RTL-SDR dongle: run with --hardware")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _detector_compiled() -> None:
    """The detector's numba kernels compiled into their disk cache before any test starts node
    or CLI processes (a fresh clone would otherwise compile them in every process at once)."""
    from dsp.warmup import compile_kernels

    compile_kernels()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_site_path() -> Path:
    return DEMO_SITE


@pytest.fixture(scope="session")
def annex_site_path() -> Path:
    return ANNEX_SITE


@pytest.fixture(scope="session")
def fake_librtlsdr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake librtlsdr (tests/sdr/fake_librtlsdr), compiled once into a folder of its own as ``librtlsdr.so``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build the fake librtlsdr")
    folder = tmp_path_factory.mktemp("fake_librtlsdr")
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(folder / "librtlsdr.so"),
                    str(FAKE_LIBRTLSDR_DIR / "fake_rtlsdr.c")], check=True)
    return folder
