"""Detector benchmarks behind ``make bench``: sensitivity against theory, false alarms, throughput.

Run ``python -m bench.run`` (all of them) or ``python -m bench.run --only sensitivity``;
``--quick`` runs tiny versions in a few seconds (the smoke test does). Figures go to
``bench/results/`` as JSON plus PNG. See ``bench/README.md`` for the definitions.

Importing this package pins numerical libraries to one thread *before* numpy loads
(when it is the first to load it, as under ``python -m bench.run``): the figures are
per core, and FFT or BLAS threads do not pay on these 2-vCPU machines (DESIGN.md).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
