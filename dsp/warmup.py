"""Compile the detector's kernels ahead of need (numba keeps them in a disk cache).

The first detection of a fresh install compiles some fifty numba kernels (about 25 s of
one core); every later process loads them from the cache beside the sources in a fraction
of a second. A parent that starts several detector processes at once (the demo's twelve
nodes, the test suite's node tests) calls :func:`compile_kernels` first, so they do not all
compile at the same time. The scene is chosen to reach every stage: a GSM call, two calls
on consecutive timeslots of one ARFCN (the time cut), a call on the neighbouring ARFCN (the
frequency cut) and an LTE data session, in noise.
"""

from __future__ import annotations

import math
import time

import numpy as np

from dsp import gsm, lte
from dsp.iq import cu8_to_complex64
from dsp.pipeline import DetectionPipeline
from dsp.records import IQBlock
from dsp.waveform import render_burst

_SAMPLE_RATE_HZ = 2.4e6
_ARFCN = 50
_DURATION_S = 0.6
_BLOCK_SAMPLES = 262_144


def compile_kernels(seed: int = 0) -> float:
    """Run the pipeline over a short synthetic scene that uses every kernel; seconds taken
    (a fraction of a second once the kernels are cached)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    fc_hz = gsm.uplink_freq_hz(_ARFCN)
    bursts = []
    for arfcn, slot, snr_db in ((_ARFCN, 2, 30.0), (_ARFCN, 3, 20.0), (_ARFCN + 1, 2, 25.0), (_ARFCN - 3, 5, 12.0)):
        bursts += [(b, snr_db) for b in gsm.call_bursts(0.3, _DURATION_S - 0.3, arfcn, slot, rng)]
    bursts += [(b, 15.0) for b in lte.data_session_bursts(0.3, _DURATION_S - 0.3, fc_hz - 600e3, 6, rng)]
    n = int(_DURATION_S * _SAMPLE_RATE_HZ)
    noise_power = 1e-4
    x = (rng.standard_normal(2 * n, dtype=np.float32) * np.float32(math.sqrt(noise_power / 2))).view(np.complex64)
    for burst, snr_db in bursts:  # a loop over bursts
        s = render_burst(burst, rng, _SAMPLE_RATE_HZ, fc_hz)
        scale = math.sqrt(10 ** (snr_db / 10) * noise_power / _SAMPLE_RATE_HZ * max(burst.bandwidth_hz, 200e3))
        i0 = round(burst.t_start_s * _SAMPLE_RATE_HZ)
        m = min(s.shape[0], n - i0)
        x[i0 : i0 + m] += s[:m] * np.float32(scale)
    pipeline = DetectionPipeline("warm-up", _SAMPLE_RATE_HZ, fc_hz)
    raw = np.clip(np.round(x.view(np.float32) * 127.5 / 0.1 + 127.5), 0, 255).astype(np.uint8)
    for i, first in enumerate(range(0, n, _BLOCK_SAMPLES)):  # a loop over blocks
        data = raw[2 * first : 2 * min(n, first + _BLOCK_SAMPLES)]
        t_s = first / _SAMPLE_RATE_HZ
        # samples as other formats give them, and cu8 bytes as a dongle does, writable (read into
        # a buffer) or not (rtl_tcp's, from bytes): numba compiles a kernel for each kind of array
        if i % 3 == 0:
            block = IQBlock(cu8_to_complex64(data), fc_hz, _SAMPLE_RATE_HZ, t_s, sample_index=first)
        else:
            data = data.copy()
            data.flags.writeable = i % 3 == 1
            block = IQBlock.from_cu8(data, fc_hz, _SAMPLE_RATE_HZ, t_s, sample_index=first)
        pipeline.process(block)
    pipeline.flush()
    return time.perf_counter() - started
