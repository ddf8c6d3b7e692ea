"""What a phone transmits, as a list of :class:`TxBurst`, and how each burst is rendered to IQ.

Activity models (``dsp.activity``, ``dsp.gsm``, ``dsp.lte`` ...) decide *when* and *where*
a phone transmits and return ``TxBurst`` records; :func:`render_burst` turns one record
into complex baseband samples as a receiver tuned to ``center_freq_hz`` would see them.
The simulator then scales them by the received power and adds them into the sensor's
stream. Keeping schedule and synthesis apart lets the truth file, the simulator and the
benchmarks share one description of every burst.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dsp.iq import ComplexArray


@dataclass(frozen=True, slots=True)
class TxBurst:
    """One transmission burst of one phone.

    ``t_start_s`` is relative to the scenario start (the simulator adds the UTC epoch).
    ``freq_hz`` is the centre of the occupied band, ``bandwidth_hz`` its nominal width.
    ``kind`` names the waveform (``gsm_normal``, ``gsm_access``, ``lte_pusch``,
    ``lte_pucch``, ``lte_srs``, ``lte_prach``, ``umts``, ``nr_pusch``, ``cw``);
    ``params`` holds what that waveform needs (training sequence, resource blocks, ...).
    ``power_offset_db`` is relative to the phone's transmit power (power ramps,
    SRS boost, ...): the burst's mean power over ``duration_s`` is ``tx + offset``.
    """

    t_start_s: float
    duration_s: float
    freq_hz: float
    bandwidth_hz: float
    tech: str
    kind: str
    power_offset_db: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def t_end_s(self) -> float:
        return self.t_start_s + self.duration_s


def render_burst(
    burst: TxBurst,
    rng: np.random.Generator,
    sample_rate_hz: float,
    center_freq_hz: float,
) -> ComplexArray:
    """Complex baseband of ``burst`` seen by a receiver at ``center_freq_hz``, unit mean power.

    Returns ``ceil(duration_s * sample_rate_hz)`` complex64 samples starting at
    ``burst.t_start_s``, already shifted to the burst's offset from the receiver's
    centre; content outside ``±sample_rate_hz/2`` is not synthesized. Mean power over
    the burst's active part is 1 (0 dBFS) so the caller scales by the received power.
    """
    offset_hz = burst.freq_hz - center_freq_hz
    if burst.tech == "gsm" or burst.kind.startswith("gsm"):
        from dsp.gsm import render as render_gsm

        return render_gsm(burst, rng, sample_rate_hz, offset_hz)
    if burst.kind.startswith("lte"):
        from dsp.lte import render as render_lte

        return render_lte(burst, rng, sample_rate_hz, offset_hz)
    if burst.kind.startswith("nr"):
        from dsp.nr import render as render_nr

        return render_nr(burst, rng, sample_rate_hz, offset_hz)
    if burst.kind.startswith("umts"):
        from dsp.umts import render as render_umts

        return render_umts(burst, rng, sample_rate_hz, offset_hz)
    if burst.kind == "cw":
        n = int(np.ceil(burst.duration_s * sample_rate_hz))
        t = np.arange(n, dtype=np.float64) / sample_rate_hz
        phase = rng.uniform(0.0, 2.0 * np.pi)
        return np.exp(1j * (2.0 * np.pi * offset_hz * t + phase)).astype(np.complex64)
    raise ValueError(f"unknown burst kind {burst.kind!r}")


def mix(samples: ComplexArray, offset_hz: float, sample_rate_hz: float, t0_s: float = 0.0) -> ComplexArray:
    """``samples`` shifted up by ``offset_hz`` (a new array; the phase is referenced to ``t0_s``)."""
    if offset_hz == 0.0:
        return samples.astype(np.complex64, copy=True)
    n = samples.shape[0]
    t = t0_s + np.arange(n, dtype=np.float64) / sample_rate_hz
    return (samples * np.exp(2j * np.pi * offset_hz * t)).astype(np.complex64)
