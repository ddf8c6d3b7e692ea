"""The malloc thresholds the detecting cellwatch commands raise (dsp.allocator): freed arrays are reused,
not handed back to the kernel and page-faulted in again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# a measurement batch's arrays (2-5 MiB, every page touched), made together and dropped
# together, 20 times: count the page faults
_PROBE = """
import json, resource, sys
import numpy as np
from dsp.allocator import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tune" else None
sizes = [1 << 18, 3 << 17, 1 << 19, 5 << 17]  # float64 counts: 2, 3, 4, 5 MiB
for _ in range(2):  # glibc's dynamic thresholds settle
    held = [np.ones(n) for n in sizes]
    del held
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    held = [np.ones(n) for n in sizes]
    del held
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_tuned_process_reuses_freed_arrays_without_page_faults() -> None:
    plain = _probe("plain")
    tuned = _probe("tune")
    assert tuned["tuned"] is True  # glibc here
    assert plain["faults"] > 5_000  # glibc's defaults: the batch's memory goes back to the kernel ...
    assert tuned["faults"] < 500  # ... tuned, it is reused (14 MiB a batch would be 3,584 pages)


def test_tune_malloc_answers_once() -> None:
    from dsp.allocator import tune_malloc

    assert tune_malloc() == tune_malloc()


_COMMAND_PROBE = """
import json, sys
import dsp.allocator
from service.cli import main
main(sys.argv[1:])
print(json.dumps(dsp.allocator._tuned))
"""


def test_only_the_detecting_commands_tune() -> None:
    """A node or ``cellwatch detect`` tunes malloc; the service and the other commands, which
    make no batch arrays, keep glibc's defaults."""
    def tuned_by(*argv: str) -> object:
        done = subprocess.run([sys.executable, "-c", _COMMAND_PROBE, *argv], cwd=REPO, capture_output=True,
                              text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert tuned_by("detect", "/nonexistent.cu8") is True  # a bad path: an error, but tuned first
    assert tuned_by("info", "/nonexistent.cu8") is None
