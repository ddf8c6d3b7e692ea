"""The project installs as cellwatch, its packages come from this repository, and its layers hold."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["dsp", "sdr", "service", "calibration"])
def test_our_packages_are_imported_from_this_repository(name: str) -> None:
    # PyPI has unrelated packages called `sdr` and `service`: they must never shadow ours.
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == REPO / name


def test_package_boundaries_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of the dev extras"
    result = subprocess.run([lint_imports], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout and "BROKEN" not in result.stdout


def test_console_script_shows_help() -> None:
    exe = shutil.which("cellwatch", path=str(Path(sys.executable).parent))
    assert exe
    result = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "info" in result.stdout and "simulate" in result.stdout


def test_dsp_imports_none_of_our_other_packages() -> None:
    code = (
        "import sys, dsp.records, dsp.iq, dsp.waveform, dsp.errors;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('sdr','service','calibration')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_unknown_subcommand_is_a_usage_error() -> None:
    from service.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
