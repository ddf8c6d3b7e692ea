"""The warm-up scene reaches every compiled kernel the detector calls."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import dsp
from dsp.warmup import compile_kernels

KERNEL_MODULES = ("fastgrid", "labelling", "measure_kernels", "split_kernels")


def test_the_warm_up_compiles_every_kernel_the_pipeline_calls() -> None:
    assert compile_kernels() > 0
    package = Path(dsp.__file__).parent
    called: set[tuple[str, str]] = set()
    for source in ("detector.py", "noise.py", "iq.py"):
        text = (package / source).read_text()
        for module in KERNEL_MODULES:
            called |= {(module, name) for name in re.findall(rf"\b{module}\.(\w+)\(", text)}
    assert len(called) > 20  # the pipeline's kernels were found in its sources
    missing = []
    for module, name in sorted(called):
        kernel = getattr(importlib.import_module(f"dsp.{module}"), name)
        if hasattr(kernel, "signatures") and not kernel.signatures:
            missing.append(f"{module}.{name}")
    assert not missing, f"not reached by dsp.warmup: {missing}"
