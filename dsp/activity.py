"""A phone's activity as a list of bursts: voice call, data session, SMS, idle periodic update.

Each technology module knows its own channels and timing (``dsp.gsm``, ``dsp.lte``,
``dsp.nr``, ``dsp.umts``); this module composes them into what a person with a phone
does, with realistic signalling before the user-visible part:

* GSM call: random access (RACH), call setup on SDCCH (~2 s), then TCH/F bursts.
* GSM SMS / location update: RACH, then a short SDCCH exchange.
* GSM data (GPRS): RACH, then uplink radio blocks in bursts of activity with pauses.
* LTE/NR/UMTS: the technology module's own session models.

:func:`schedule` takes a phone description (any object with the attributes of
``sdr.scenario.PhoneSpec``: dsp imports none of our other packages) and a random
generator, and returns the phone's bursts in time order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from dsp import gsm
from dsp.waveform import TxBurst

DEFAULT_GSM_ARFCN = 62  # 902.4 MHz uplink, mid GSM-900
DEFAULT_CARRIER_HZ = {"lte": 902.5e6, "nr": 718.0e6, "umts": 902.4e6}
DEFAULT_CARRIER_N_RB = {"lte": 25, "nr": 25}
DEFAULT_DURATION_S = {"call": 30.0, "data": 20.0, "sms": 3.0, "idle_update": 1.0}


class PhoneActivity(Protocol):
    """What the schedules read of a phone. Read-only properties, so that a description
    whose fields are narrower (``sdr.scenario.PhoneSpec``'s ``Literal`` tech and
    activity) matches: the schedules never write to the phone."""

    @property
    def id(self) -> str: ...

    @property
    def tech(self) -> str: ...

    @property
    def activity(self) -> str: ...

    @property
    def start_s(self) -> float: ...

    @property
    def duration_s(self) -> float | None: ...

    @property
    def arfcn(self) -> int | None: ...

    @property
    def timeslot(self) -> int | None: ...

    @property
    def tsc(self) -> int | None: ...

    @property
    def dtx(self) -> bool: ...

    @property
    def established(self) -> bool: ...

    @property
    def hopping_arfcns(self) -> Sequence[int] | None: ...

    @property
    def carrier_freq_hz(self) -> float | None: ...

    @property
    def carrier_n_rb(self) -> int | None: ...


def nominal_freq_hz(phone: PhoneActivity) -> float:
    """The centre frequency the phone's traffic sits on (to tune a receiver to it)."""
    if phone.tech == "gsm":
        return float(gsm.uplink_freq_hz(phone.arfcn if phone.arfcn is not None else DEFAULT_GSM_ARFCN))
    return float(phone.carrier_freq_hz or DEFAULT_CARRIER_HZ[phone.tech])


def _gsm_schedule(phone: PhoneActivity, t0_s: float, duration_s: float, rng: np.random.Generator) -> list[TxBurst]:
    arfcn = phone.arfcn if phone.arfcn is not None else DEFAULT_GSM_ARFCN
    timeslot = phone.timeslot if phone.timeslot is not None else int(rng.integers(1, 8))
    tsc = phone.tsc if phone.tsc is not None else int(rng.integers(0, 8))
    session = f"{phone.id}:{phone.activity}"
    if phone.established and phone.activity in ("call", "data"):
        bursts: list[TxBurst] = []
        t_s = t0_s
    else:
        bursts = gsm.rach_bursts(t0_s, arfcn, rng, n=int(rng.integers(1, 3)), session=f"{session}:rach")
        t_s = (bursts[-1].t_end_s if bursts else t0_s) + float(rng.uniform(0.05, 0.2))
    if phone.activity == "call" and phone.established:
        bursts += gsm.call_bursts(t_s, duration_s, arfcn, timeslot, rng, tsc=tsc, dtx=phone.dtx,
                                  hopping_arfcns=phone.hopping_arfcns, session=session)
    elif phone.activity == "call":
        setup = gsm.sdcch_bursts(t_s, arfcn, timeslot, rng, n_messages=8, tsc=tsc, session=f"{session}:setup")
        bursts += setup
        t_call_s = setup[-1].t_end_s + float(rng.uniform(0.1, 0.4))
        bursts += gsm.call_bursts(t_call_s, max(t0_s + duration_s - t_call_s, 0.0), arfcn, timeslot, rng, tsc=tsc,
                                  dtx=phone.dtx, hopping_arfcns=phone.hopping_arfcns, session=session)
    elif phone.activity in ("sms", "idle_update"):
        n_messages = 12 if phone.activity == "sms" else 6
        bursts += gsm.sdcch_bursts(t_s, arfcn, timeslot, rng, n_messages=n_messages, tsc=tsc, session=session)
    else:  # GPRS data: radio blocks on one timeslot in spells of activity (page loads, uploads)
        end_s = t0_s + duration_s
        while t_s < end_s:
            spell_s = float(rng.exponential(1.5))
            bursts += gsm.call_bursts(t_s, min(spell_s, end_s - t_s), arfcn, timeslot, rng, tsc=tsc, session=session)
            t_s += spell_s + float(rng.exponential(2.0))
    return bursts


def _other_schedule(phone: PhoneActivity, t0_s: float, duration_s: float, rng: np.random.Generator) -> list[TxBurst]:
    carrier_hz = float(phone.carrier_freq_hz or DEFAULT_CARRIER_HZ[phone.tech])
    session = f"{phone.id}:{phone.activity}"
    if phone.tech == "umts":
        from dsp import umts

        return umts.call_bursts(t0_s, duration_s, carrier_hz, rng, session=session)
    n_rb = phone.carrier_n_rb or DEFAULT_CARRIER_N_RB[phone.tech]
    if phone.tech == "nr":
        from dsp import nr

        return nr.data_session_bursts(t0_s, duration_s, carrier_hz, n_rb, rng, session=session)
    from dsp import lte

    makers: dict[str, Any] = {
        "call": lte.voice_call_bursts,
        "data": lte.data_session_bursts,
        "sms": lte.sms_bursts,
        "idle_update": lte.idle_update_bursts,
    }
    return makers[phone.activity](t0_s, duration_s, carrier_hz, n_rb, rng, session=session)


def schedule(phone: PhoneActivity, horizon_s: float, rng: np.random.Generator) -> list[TxBurst]:
    """Every burst ``phone`` transmits between its start and ``horizon_s``, in time order."""
    duration_s = phone.duration_s if phone.duration_s is not None else DEFAULT_DURATION_S[phone.activity]
    duration_s = max(0.0, min(duration_s, horizon_s - phone.start_s))
    if duration_s <= 0.0:
        return []
    if phone.tech == "gsm":
        bursts = _gsm_schedule(phone, phone.start_s, duration_s, rng)
    else:
        bursts = _other_schedule(phone, phone.start_s, duration_s, rng)
    return sorted((b for b in bursts if b.t_start_s < horizon_s), key=lambda b: b.t_start_s)
