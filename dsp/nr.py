"""5G NR uplink (TS 38.211) bursts on n28: CP-OFDM PUSCH, long PRACH, and a data session.

Free runs 4G/5G on 700 MHz (n28, uplink 703–748 MHz) with 15 kHz subcarriers, where
NR's numerology coincides with LTE's: 14 symbols per 1 ms slot, cyclic prefix 160·Ts
on symbols 0 and 7, 144·Ts elsewhere (§5.3.1 with κ = 64, μ = 0). What differs:

* ``nr_pusch`` is CP-OFDM (transform precoding disabled, the default for data): QAM
  symbols straight onto ``12·n_rb`` subcarriers, no DFT spreading, so its envelope is
  Gaussian-like (higher PAPR than LTE's SC-FDMA) while its spectrum by energy looks
  the same. DMRS type 1, single symbol at ``l0`` (2 or 3) plus the additional
  positions of Table 6.4.1.1.3-3, on every other subcarrier (CDM group 0, the other
  group left empty, so the DMRS REs carry 3 dB more power, TS 38.214 Table 6.2.2-1),
  built from the Gold sequence of §6.4.1.1.1.1.
* No half-subcarrier shift: subcarrier ``k`` of the carrier sits at
  ``(k − N/2)·15 kHz`` from the carrier frequency (§5.4), so an allocation's band
  centre is 7.5 kHz below where LTE's would be.
* ``nr_prach`` is long preamble format 0 (§6.3.3.1): the same 839-point Zadoff-Chu
  on 1.25 kHz as LTE's format 0, with k̄ = 7 (Table 6.3.3.2-1).

Rendering, power normalization and the meaning of ``freq_hz``/``bandwidth_hz`` follow
:mod:`dsp.lte` (whose synthesis engine this module uses). PUCCH is not modelled: the
schedules carry uplink control on PUSCH.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from dsp import lte
from dsp.errors import InputError
from dsp.iq import ComplexArray
from dsp.waveform import TxBurst

NR_N28_UPLINK_HZ = (703e6, 748e6)  # TS 38.101-1 Table 5.2-1
SUBCARRIER_SPACING_HZ = 15_000.0
SLOT_S = 1e-3
N_SYMBOLS_PER_SLOT = 14
# TS 38.101-1 Table 5.3.2-1, 15 kHz SCS: N_RB of 5/10/15/20/25/30 MHz channels.
CARRIER_N_RB = (25, 52, 79, 106, 133, 160)


def allocation_center_hz(
    carrier_freq_hz: float, carrier_n_rb: int, start_rb: int, n_rb: int
) -> float:
    """Centre of the band occupied by RBs ``start_rb..start_rb+n_rb-1`` (subcarrier N/2 at the carrier)."""
    k_first = start_rb * lte.N_SC_PER_RB
    n_sc = n_rb * lte.N_SC_PER_RB
    return carrier_freq_hz + (k_first + n_sc / 2 - carrier_n_rb * lte.N_SC_PER_RB / 2 - 0.5) * (
        SUBCARRIER_SPACING_HZ
    )


def dmrs_symbols(l0: int, additional_position: int) -> tuple[int, ...]:
    """DMRS symbols of a 14-symbol type-A PUSCH, single-symbol DMRS (TS 38.211 Table 6.4.1.1.3-3)."""
    table = {0: (l0,), 1: (l0, 11), 2: (l0, 7, 11), 3: (l0, 5, 8, 11)}
    if additional_position == 3 and l0 != 2:
        return table[2]
    return table[additional_position]


def _pusch_plan(burst: TxBurst, rng: np.random.Generator) -> lte.OfdmPlan:
    default_n_rb = max(1, round(burst.bandwidth_hz / lte.RB_BANDWIDTH_HZ))
    carrier_n_rb = lte.param_int(burst, "carrier_n_rb", default_n_rb, 1, 275)
    carrier_freq = burst.params.get("carrier_freq_hz", burst.freq_hz)
    if not isinstance(carrier_freq, (int, float)) or not math.isfinite(carrier_freq):
        raise InputError(None, "params.carrier_freq_hz", f"expected Hz, got {carrier_freq!r}")
    n_rb = lte.param_int(burst, "n_rb", default_n_rb, 1, carrier_n_rb)
    start_rb = lte.param_int(burst, "start_rb", 0, 0, carrier_n_rb - n_rb)
    modulation = burst.params.get("modulation", "qpsk")
    if modulation not in ("qpsk", "16qam", "64qam"):
        raise InputError(None, "params.modulation", "expected qpsk, 16qam or 64qam")
    l0 = lte.param_int(burst, "dmrs_symbol", 2, 2, 3)
    extra = lte.param_int(burst, "dmrs_additional_position", 2, 0, 3)
    n_id = lte.param_int(burst, "n_id", int(rng.integers(1008)), 0, 65535)
    slot0 = lte.param_int(burst, "slot", 0, 0, 9)
    n_slots = max(1, math.ceil(burst.duration_s / SLOT_S - 1e-6))
    dmrs = np.array(dmrs_symbols(l0, extra))
    n_sc = n_rb * lte.N_SC_PER_RB
    k_alloc = start_rb * lte.N_SC_PER_RB
    n_dmrs = n_sc // 2
    dmrs_first = start_rb * lte.N_SC_PER_RB // 2  # r(n) is indexed from common RB 0

    def fill(lo: int, hi: int, k_lo: int, k_hi: int) -> lte.GridChunk:
        chunk = lte.zero_grid(hi - lo, k_lo, k_hi)
        sym = np.arange(lo, hi)
        slot, sym_in_slot = np.divmod(sym, N_SYMBOLS_PER_SLOT)
        is_dmrs = np.isin(sym_in_slot, dmrs)
        rows = np.flatnonzero(~is_dmrs)
        lte.place(
            chunk, rows, k_alloc, 1, lte.qam_symbols(rng, (rows.size, n_sc), modulation), k_lo
        )
        rows = np.flatnonzero(is_dmrs)
        if rows.size:
            n_slot = (slot0 + slot[rows]) % 10
            c_init = (
                (2**17) * (N_SYMBOLS_PER_SLOT * n_slot + sym_in_slot[rows] + 1) * (2 * n_id + 1)
                + 2 * n_id
            ) % 2**31
            r = _dmrs_sequence(c_init, dmrs_first + n_dmrs)[:, dmrs_first:]
            lte.place(chunk, rows, k_alloc, 2, math.sqrt(2.0) * r, k_lo)
        return chunk

    return lte.OfdmPlan(
        carrier_freq_hz=float(carrier_freq),
        subcarrier0_offset_hz=-carrier_n_rb * lte.N_SC_PER_RB / 2 * SUBCARRIER_SPACING_HZ,
        spacing_hz=SUBCARRIER_SPACING_HZ,
        useful_ts=lte.USEFUL_TS,
        cp_ts=lte.slot_cp_ts(2 * n_slots),
        fill=fill,
        occupied=(k_alloc, k_alloc + n_sc - 1),
        active_s=burst.duration_s,
    )


def _prach_plan(burst: TxBurst, rng: np.random.Generator) -> lte.OfdmPlan:
    carrier_n_rb = lte.param_int(burst, "carrier_n_rb", lte.PRACH_N_RB, 1, 275)
    carrier_freq = float(burst.params.get("carrier_freq_hz", burst.freq_hz))
    start_rb = lte.param_int(burst, "start_rb", 0, 0, carrier_n_rb - lte.PRACH_N_RB)
    root = lte.param_int(burst, "root", int(rng.integers(1, lte.PRACH_N_ZC)), 1, 838)
    shift = lte.param_int(burst, "cyclic_shift", 0, 0, lte.PRACH_N_ZC - 1)
    # §5.3.2: subcarrier k at (k + k̄ + K·k1)·Δf_RA with k1 = 12·n_RA_start − N_grid·12/2.
    k1 = start_rb * lte.N_SC_PER_RB - carrier_n_rb * lte.N_SC_PER_RB // 2
    return lte.prach_plan(
        carrier_freq,
        k1 * SUBCARRIER_SPACING_HZ,
        root,
        shift,
        min(burst.duration_s, lte.PRACH_DURATION_S),
    )


_PLANS: dict[str, Callable[[TxBurst, np.random.Generator], lte.OfdmPlan]] = {
    "nr_pusch": _pusch_plan,
    "nr_prach": _prach_plan,
}


def render(
    burst: TxBurst, rng: np.random.Generator, sample_rate_hz: float, offset_hz: float
) -> ComplexArray:
    """Samples of an ``nr_*`` burst for a receiver centred ``offset_hz`` below ``burst.freq_hz``.

    ``ceil(duration_s·sample_rate_hz)`` complex64 samples; mean power over the
    transmitted part is the burst's in-band energy share (see :mod:`dsp.lte`).
    """
    make = _PLANS.get(burst.kind)
    if make is None:
        raise InputError(None, "kind", f"unknown NR burst kind {burst.kind!r}")
    n_out = int(np.ceil(burst.duration_s * sample_rate_hz))
    return lte.synthesize(make(burst, rng), sample_rate_hz, burst.freq_hz - offset_hz, n_out)


def pusch_burst(
    t_start_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    start_rb: int,
    n_rb: int,
    n_slots: int = 1,
    **params: Any,
) -> TxBurst:
    """A CP-OFDM PUSCH on RBs ``start_rb..start_rb+n_rb-1`` for ``n_slots`` 1 ms slots."""
    return TxBurst(
        t_start_s=t_start_s,
        duration_s=n_slots * SLOT_S,
        freq_hz=allocation_center_hz(carrier_freq_hz, carrier_n_rb, start_rb, n_rb),
        bandwidth_hz=n_rb * lte.RB_BANDWIDTH_HZ,
        tech="nr",
        kind="nr_pusch",
        power_offset_db=lte.pc_offset_db(n_rb),
        params={
            "carrier_freq_hz": carrier_freq_hz,
            "carrier_n_rb": carrier_n_rb,
            "start_rb": start_rb,
            "n_rb": n_rb,
            **params,
        },
    )


def prach_burst(
    t_start_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    start_rb: int,
    *,
    root: int = 129,
    cyclic_shift: int = 0,
    power_offset_db: float = 0.0,
    **params: Any,
) -> TxBurst:
    """A long format-0 preamble on RBs ``start_rb..start_rb+5`` (903 µs)."""
    k_first = start_rb * lte.N_SC_PER_RB - carrier_n_rb * lte.N_SC_PER_RB // 2
    center = carrier_freq_hz + k_first * SUBCARRIER_SPACING_HZ + (7 + 419) * lte.PRACH_SPACING_HZ
    return TxBurst(
        t_start_s=t_start_s,
        duration_s=lte.PRACH_DURATION_S,
        freq_hz=center,
        bandwidth_hz=lte.PRACH_BANDWIDTH_HZ,
        tech="nr",
        kind="nr_prach",
        power_offset_db=power_offset_db,
        params={
            "carrier_freq_hz": carrier_freq_hz,
            "carrier_n_rb": carrier_n_rb,
            "start_rb": start_rb,
            "root": root,
            "cyclic_shift": cyclic_shift,
            **params,
        },
    )


def data_session_bursts(
    t0_s: float,
    duration_s: float,
    carrier_freq_hz: float,
    carrier_n_rb: int,
    rng: np.random.Generator,
    *,
    mean_rate_kbps: float = 100.0,
    mean_on_s: float = 2.0,
    mean_off_s: float = 8.0,
    rrc_release_s: float = 10.0,
    session: str = "data",
) -> list[TxBurst]:
    """An NR phone browsing: random access, then bursty PUSCH grants in 1 ms slots.

    Like :func:`dsp.lte.data_session_bursts` (exponential activity and reading times,
    runs of grants, HARQ retransmissions 8 ms later at 10 % BLER, a new random access
    after ``rrc_release_s`` of silence), with uplink control carried on PUSCH: during
    activity a small 1–2 RB PUSCH every 4–8 ms stands for the HARQ-ACK/CSI reports.
    Slot 0 starts at ``t0_s``; bursts have ``tech="nr"`` and ``params["session"]``.
    """
    if carrier_n_rb not in CARRIER_N_RB:
        raise InputError(None, "carrier_n_rb", f"expected one of {CARRIER_N_RB}")
    n_slots = int(duration_s / SLOT_S)
    used: dict[int, tuple[int, int, str]] = {}
    prach: list[int] = []
    edge = 2

    def grant(max_n_rb: int) -> tuple[int, int]:
        sizes = np.arange(1, max_n_rb + 1)
        weights = 1.0 / sizes
        n_rb = int(rng.choice(sizes, p=weights / weights.sum()))
        return int(rng.integers(edge, carrier_n_rb - edge - n_rb + 1)), n_rb

    def add(slot: int, start_rb: int, n_rb: int, modulation: str = "qpsk") -> None:
        while 0 <= slot < n_slots:
            used.setdefault(slot, (start_rb, n_rb, modulation))
            if rng.random() >= 0.1:
                break
            slot += 8

    max_grant = min(50, carrier_n_rb - 2 * edge)
    slot = 0
    connected = False
    while slot < n_slots:
        if not connected:
            prach.append(slot)
            msg3 = slot + 9 + int(rng.integers(4))
            add(msg3, *grant(3))
            add(msg3 + 15 + int(rng.integers(10)), *grant(4))
            slot = msg3 + 40
            connected = True
        on_end = min(n_slots, slot + max(1, int(rng.exponential(mean_on_s) / SLOT_S)))
        s = slot
        while s < on_end:
            start_rb, n_rb = grant(max_grant)
            modulation = "16qam" if rng.random() < 0.4 else "qpsk"
            bits = n_rb * 12 * 12 * (2.4 if modulation == "16qam" else 1.2)
            run = int(rng.geometric(1 / 3))
            for i in range(min(run, on_end - s)):
                add(s + i, start_rb, n_rb, modulation)
            s += (
                run
                + 1
                + int(rng.exponential(max(run * bits / max(mean_rate_kbps, 1e-3) - run, 1.0)))
            )
        s = slot + int(rng.integers(4, 9))
        while s < on_end:
            add(s, *grant(2))
            s += int(rng.integers(4, 9))
        next_on = on_end + int(rng.exponential(mean_off_s) / SLOT_S)
        connected = next_on - on_end < int(rrc_release_s / SLOT_S)
        slot = next_on

    out: list[TxBurst] = []
    prach_rb = edge
    for p in prach:
        if p < n_slots:
            out.append(
                prach_burst(
                    t0_s + p * SLOT_S,
                    carrier_freq_hz,
                    carrier_n_rb,
                    prach_rb,
                    root=int(rng.integers(1, lte.PRACH_N_ZC)),
                    power_offset_db=lte.pc_offset_db(lte.PRACH_N_RB) - 6.0,
                    session=session,
                )
            )
    slots = sorted(s for s in used if s not in prach)
    i = 0
    while i < len(slots):
        j = i
        while (
            j + 1 < len(slots)
            and slots[j + 1] == slots[j] + 1
            and used[slots[j + 1]] == used[slots[i]]
        ):
            j += 1
        start_rb, n_rb, modulation = used[slots[i]]
        out.append(
            pusch_burst(
                t0_s + slots[i] * SLOT_S,
                carrier_freq_hz,
                carrier_n_rb,
                start_rb,
                n_rb,
                j - i + 1,
                modulation=modulation,
                slot=slots[i] % 10,
                session=session,
            )
        )
        i = j + 1
    out.sort(key=lambda b: b.t_start_s)
    return out


def _dmrs_sequence(c_init: npt.ArrayLike, length: int) -> npt.NDArray[np.complex128]:
    """r(n) = ((1 − 2c(2n)) + j(1 − 2c(2n+1)))/√2, TS 38.211 §6.4.1.1.1.1, one row per c_init."""
    c = lte.gold_sequence(c_init, 2 * length).astype(np.float64)
    i_part = (1 - 2 * c[:, 0::2]) / math.sqrt(2.0)
    q_part = (1 - 2 * c[:, 1::2]) / math.sqrt(2.0)
    return np.asarray(i_part + 1j * q_part, dtype=np.complex128)
