"""Keep freed array memory in the process instead of handing it back to the kernel.

glibc's malloc serves blocks above its mmap threshold (128 KiB at start) with ``mmap``
and gives freed memory above its trim threshold back to the kernel. The detector makes
and drops megabyte arrays all the time (the frames of a measurement batch, FFT outputs,
gathers); each one came back page-faulted and zero-filled by the kernel: 5 % of a busy
band's time (``bench/detect_throughput.py``), about a third of a simulated node's CPU
(DESIGN.md's performance facts). :func:`tune_malloc` raises both thresholds for the
calling process, as the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` /
``MALLOC_TOP_PAD_`` environment variables would had they been set before it started.
The cost is up to ``TRIM_THRESHOLD_BYTES`` of freed memory kept for reuse.
The ``cellwatch`` commands that run the detector (``node``, ``detect``, ``calibrate``) call it
first (:func:`service.cli.main`); the service does not (it would only hold more memory).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 16 << 20  # blocks under this come from the heap, reused when freed
TRIM_THRESHOLD_BYTES = 64 << 20  # free memory at the top of the heap kept up to this
TOP_PAD_BYTES = 16 << 20  # the heap grows by at least this much at a time

# mallopt parameters, glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_tuned: bool | None = None


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once; later calls return the
    first answer). False where the C library is not glibc (nothing changed)."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
                (_M_TOP_PAD, TOP_PAD_BYTES))
    _tuned = all(mallopt(param, value) == 1 for param, value in settings)  # 1: accepted
    if not _tuned:
        log.debug("malloc thresholds not raised (mallopt refused)")
    return _tuned
