"""An RTL-SDR (R820T2 tuner + RTL2832U) as the simulator's receiver: incident field in, cu8 bytes out.

The simulator computes the complex baseband field at each sensor's antenna in
units of sqrt(mW) (``|x|**2`` is the power in mW, so a ``-60 dBm`` carrier has
``|x| = 1e-3``) and hands it to :meth:`RtlSdrModel.process`, which returns the
interleaved unsigned 8-bit I/Q bytes a dongle would deliver over USB. The steps,
in the order the hardware applies them:

1. **Crystal error.** One 28.8 MHz crystal clocks the R820T's synthesizer and the
   RTL2832U's IF downconverter. A crystal ``ppm_error`` fast (librtlsdr's
   convention: the value ``rtl_sdr -p`` would correct) tunes the effective LO to
   ``center_freq_hz * (1 + ppm_error * 1e-6)``, so a signal at true offset
   ``f`` appears at ``f - center_freq_hz * ppm_error * 1e-6``
   (:func:`frequency_error_hz`). The same crystal also clocks the ADC: the
   resulting sample-rate error (``ppm_error`` ppm of time drift and a
   ``f * ppm_error * 1e-6`` in-band frequency scaling, below 60 Hz at 50 ppm)
   is not modelled, so the simulator's truth stays on one time base.
2. **Thermal noise** ``kTB·F``: ``-174 dBm/Hz + noise_figure_db +
   10·log10(sample_rate_hz)``, white over the complex sampling band, referred to
   the antenna; plus the tuner's **LO leakage**, a carrier at exactly 0 Hz of
   ``lo_leakage_dbm`` (antenna-referred, so it grows with gain as the real
   centre spike does).
3. **Gain** to digital full scale (``|x| = 1`` is 0 dBFS, :mod:`dsp.iq`):
   ``power_dbfs = power_dbm + gain_db + gain_offset_db - dbfs_at_0db_gain_dbm``
   (:func:`dbm_to_dbfs`; :func:`dbfs_to_dbm` is the inverse the service uses; both
   live in :mod:`calibration.gain` and are re-exported here).
4. **I/Q imbalance**: amplitude and phase mismatch split symmetrically between
   the rails, which leaves an image at ``-image_rejection_db`` (:func:`image_rejection_db`).
5. **DC offset** of the ADC, in 8-bit LSBs, and the ADC's own noise.
6. **Quantization** with :func:`dsp.iq.complex64_to_cu8`, clipping at the rails.
7. **Dropped USB transfers**: each 16 KiB transfer (8192 samples, aligned to the
   stream's first sample) is lost with ``drop_probability``; lost samples are
   *removed* from the output, as a host that cannot keep up loses them without a
   marker, and counted.

Level calibration (the choice of ``DEFAULT_DBFS_AT_0DB_GAIN_DBM = -15 dBm``): a
lab measurement of an RTL-SDR v3 (N8UR, osmocom-sdr list, March 2018) put the
first ADC overload at about -25 dBm with 20 dB of gain, i.e. full scale near
-5 dBm at 0 dB; dongles run at high gain show a thermal floor of -40..-30 dBFS
over the full 2.4 MHz. -15 dBm sits between the two: with NF 6.5 dB at
2.4 MS/s (thermal noise -103.7 dBm) the floor is -39 dBFS at 49.6 dB of gain
(about 1 LSB rms per rail, 4 LSB peaks), and below the 8-bit quantization floor
(-49.9 dBFS) under about 40 dB of gain. Full scale at the antenna is
``-15 - gain_db`` dBm: -43 dBm at 28 dB, -15 dBm at 0 dB, so the -30..-70 dBm a
phone a few metres away through walls delivers fits between the rails and the
quantization floor at gains of about 0-15 dB, and stronger bursts clip.

Streaming: :meth:`RtlSdrModel.process` takes blocks in stream order with the
absolute index of their first sample; splitting a stream into blocks of any
length yields the same bytes (the LO rotation is computed from the absolute
sample index, the noise is drawn in stream order, drops are a hash of the
transfer index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import special

from calibration.gain import DEFAULT_DBFS_AT_0DB_GAIN_DBM, dbfs_to_dbm, dbm_to_dbfs  # noqa: F401  (re-exported)
from dsp.iq import CU8_SCALE, complex64_to_cu8, cu8_to_complex64

# rtlsdr_get_tuner_gains() for an R820T/R820T2/R828D, in dB (librtlsdr tuner_r82xx.c).
R820T_GAINS_DB: tuple[float, ...] = (
    0.0, 0.9, 1.4, 2.7, 3.7, 7.7, 8.7, 12.5, 14.4, 15.7, 16.6, 19.7, 20.7, 22.9, 25.4,
    28.0, 29.7, 32.8, 33.8, 36.4, 37.2, 38.6, 40.2, 42.1, 43.4, 43.9, 44.5, 48.0, 49.6,
)  # fmt: skip

ADC_BITS = 8
LSB = 1.0 / CU8_SCALE  # one ADC step in full-scale units (|x| = 1 is 0 dBFS)
# Unit of loss: a 16 KiB block, 2 bytes a sample (USB bulk packets are 512 B; librtlsdr's
# async buffers are 256 KiB, so a lost buffer is 32 consecutive units).
SAMPLES_PER_TRANSFER = 16384 // 2
THERMAL_NOISE_DBM_PER_HZ = 10.0 * math.log10(1.380649e-23 * 290.0 * 1e3)  # kT at 290 K: -173.98

# Quantization noise of a complex sample: LSB**2 / 12 on each rail (uniform error model).
QUANTIZATION_NOISE_DBFS = 10.0 * math.log10(2.0 * LSB**2 / 12.0)

_ROTATOR_RUN = 4096  # samples per coarse step of the LO-error rotator

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def nearest_gain_db(gain_db: float) -> float:
    """The R820T gain step closest to ``gain_db``, as gr-osmosdr and pyrtlsdr users get it."""
    steps = np.asarray(R820T_GAINS_DB)
    return float(steps[int(np.argmin(np.abs(steps - gain_db)))])


@dataclass(frozen=True)
class ReceiverConfig:
    """One dongle's settings and imperfections.

    ``gain_db`` is the tuner gain asked for; it is set to the nearest of the
    29 R820T steps (:data:`R820T_GAINS_DB`) on construction, as the driver does,
    so ``config.gain_db`` is always the gain really applied and recorded.
    ``gain_offset_db`` is this unit's deviation from the nominal gain (what a
    per-sensor level calibration measures). ``dbfs_at_0db_gain_dbm`` is the
    antenna power that reaches 0 dBFS at 0 dB of gain (see the module notes).
    ``ppm_error`` is the crystal's error, positive when it runs fast.
    ``dc_offset_lsb`` is the ADC's offset in 8-bit steps (I + jQ);
    ``lo_leakage_dbm`` the antenna-referred power of the centre spike.
    ``adc_noise_lsb`` is the RTL2832U's own noise (ADC, IF amplifier, decimation
    requantization), rms per rail in LSB and independent of gain: it sets the
    floor at low gain (about -51 dBFS before quantization at 0.4 LSB, in line
    with the ~-53 dBFS over 2.4 MHz reported for a dongle at 0 dB).
    """

    gain_db: float = 28.0
    noise_figure_db: float = 6.5  # R820T2 near 900 MHz at medium-to-high gain
    gain_offset_db: float = 0.0
    dbfs_at_0db_gain_dbm: float = DEFAULT_DBFS_AT_0DB_GAIN_DBM
    ppm_error: float = 0.0
    iq_amplitude_db: float = 0.2
    iq_phase_deg: float = 1.0
    dc_offset_lsb: complex = complex(0.9, -0.6)
    lo_leakage_dbm: float = -110.0
    adc_noise_lsb: float = 0.4
    drop_probability: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "gain_db", "noise_figure_db", "gain_offset_db", "dbfs_at_0db_gain_dbm", "ppm_error",
            "iq_amplitude_db", "iq_phase_deg", "lo_leakage_dbm", "adc_noise_lsb", "drop_probability",
        ):  # fmt: skip
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"ReceiverConfig.{name} must be finite")
        if not -0.5 <= self.gain_db <= R820T_GAINS_DB[-1] + 0.5:
            raise ValueError(f"gain_db {self.gain_db} is outside the R820T's 0..49.6 dB")
        object.__setattr__(self, "gain_db", nearest_gain_db(self.gain_db))
        object.__setattr__(self, "dc_offset_lsb", complex(self.dc_offset_lsb))
        if self.noise_figure_db < 0:
            raise ValueError("noise_figure_db must not be negative")
        if self.adc_noise_lsb < 0:
            raise ValueError("adc_noise_lsb must not be negative")
        if not 0.0 <= self.drop_probability <= 1.0:
            raise ValueError("drop_probability must lie in [0, 1]")
        if abs(self.iq_phase_deg) >= 45.0:
            raise ValueError("iq_phase_deg must lie in (-45, 45)")

    @property
    def total_gain_db(self) -> float:
        """Gain actually applied: the tuner step plus this unit's offset."""
        return self.gain_db + self.gain_offset_db


def thermal_noise_dbm(noise_figure_db: float, bandwidth_hz: float) -> float:
    """kTB·F at 290 K referred to the antenna, in dBm."""
    return THERMAL_NOISE_DBM_PER_HZ + noise_figure_db + 10.0 * math.log10(bandwidth_hz)


def noise_floor_dbfs(
    config: ReceiverConfig, sample_rate_hz: float, *, thermal_only: bool = False
) -> float:
    """Expected noise power (variance) of the cu8 output with no signal, in dBFS over the band.

    By default this is exact for the model: the variance of the 8-bit mid-rise
    quantizer's output (levels ``(b - 127.5)`` LSB, clipped at the rails) for the
    Gaussian thermal and ADC noise on each rail, sitting on that rail's DC offset
    and LO leakage, summed from the normal distribution over the 256 codes. It
    tends to the analog noise plus ``LSB**2/6`` (:data:`QUANTIZATION_NOISE_DBFS`,
    -49.9 dBFS) once that noise spans an LSB. With ``thermal_only``: ``kTB·F``
    moved to dBFS by the gain, nothing else. The mean (the DC spike) is not noise
    and is excluded.
    """
    thermal_dbfs = float(
        dbm_to_dbfs(
            thermal_noise_dbm(config.noise_figure_db, sample_rate_hz),
            config.gain_db,
            config.gain_offset_db,
            config.dbfs_at_0db_gain_dbm,
        )
    )
    if thermal_only:
        return thermal_dbfs
    m = iq_imbalance_matrix(config.iq_amplitude_db, config.iq_phase_deg)
    sigma2_fs = 10.0 ** (thermal_dbfs / 10.0) / 2.0  # per rail before the imbalance
    leak_fs = 10.0 ** (
        (config.lo_leakage_dbm + config.total_gain_db - config.dbfs_at_0db_gain_dbm) / 20.0
    )
    dc = config.dc_offset_lsb
    rails = (
        (m[0, 0] ** 2 + m[0, 1] ** 2, m[0, 0] * leak_fs / LSB + dc.real),
        (m[1, 0] ** 2 + m[1, 1] ** 2, m[1, 0] * leak_fs / LSB + dc.imag),
    )
    total_lsb2 = sum(
        _quantized_variance_lsb2(
            mean_lsb, math.sqrt(gain2 * sigma2_fs / LSB**2 + config.adc_noise_lsb**2)
        )
        for gain2, mean_lsb in rails
    )
    return 10.0 * math.log10(total_lsb2 * LSB**2)


def _quantized_variance_lsb2(mean_lsb: float, sigma_lsb: float) -> float:
    """Variance (LSB^2) of ``clip(rint(u + 127.5), 0, 255) - 127.5`` for ``u ~ N(mean, sigma^2)``."""
    codes = np.arange(256, dtype=np.float64)
    # Code b is output for u in [b - 128, b - 127); the end codes take the tails.
    edges = np.concatenate(([-np.inf], codes[1:] - 128.0, [np.inf]))
    cdf = special.ndtr((edges - mean_lsb) / max(sigma_lsb, 1e-12))
    p = np.diff(cdf)
    levels = codes - 127.5
    mean = float(np.sum(p * levels))
    return float(np.sum(p * (levels - mean) ** 2))


def full_scale_dbm(config: ReceiverConfig) -> float:
    """Antenna power of a constant-envelope signal that just reaches the rails (0 dBFS)."""
    return config.dbfs_at_0db_gain_dbm - config.total_gain_db


def frequency_error_hz(center_freq_hz: float, ppm_error: float) -> float:
    """Apparent shift of every signal for a crystal ``ppm_error`` fast: ``-center * ppm * 1e-6``."""
    return -float(center_freq_hz) * ppm_error * 1e-6


def iq_imbalance_matrix(amplitude_db: float, phase_deg: float) -> npt.NDArray[np.float64]:
    """Real 2x2 map ``[I', Q'] = M @ [I, Q]``: the mismatch split half on each rail.

    I is scaled by ``10**(-amplitude_db/40)`` and Q by ``10**(+amplitude_db/40)``,
    and each rail leans ``phase_deg/2`` toward the other, so the mean power is
    kept (to 1e-3 dB at 0.2 dB) and only the image appears.
    """
    a = 10.0 ** (amplitude_db / 40.0)
    half = math.radians(phase_deg) / 2.0
    c, s = math.cos(half), math.sin(half)
    return np.array([[c / a, s / a], [a * s, a * c]])


def image_rejection_db(amplitude_db: float, phase_deg: float) -> float:
    """Ratio of a tone to its mirror image that :func:`iq_imbalance_matrix` produces, in dB.

    Writing the output as ``mu * x + nu * conj(x)``, the image rejection is
    ``|mu|**2 / |nu|**2`` (about 37 dB for 0.2 dB and 1 degree).
    """
    m = iq_imbalance_matrix(amplitude_db, phase_deg)
    mu = complex(m[0, 0] + m[1, 1], m[1, 0] - m[0, 1]) / 2.0
    nu = complex(m[0, 0] - m[1, 1], m[1, 0] + m[0, 1]) / 2.0
    if abs(nu) == 0.0:
        return math.inf
    return 20.0 * math.log10(abs(mu) / abs(nu))


def _uniform_hash(key: np.uint64, index: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Uniform [0, 1) numbers, a pure function of ``(key, index)`` (SplitMix64)."""
    z = key + index.astype(np.uint64) * _GOLDEN_GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)


@dataclass
class RtlSdrModel:
    """One simulated dongle: a plan built from its config, then fed block after block.

    ``rng`` supplies the thermal noise (drawn in stream order) and, once at
    construction, the key of the transfer-drop hash. Counters
    ``n_dropped_transfers`` and ``n_dropped_samples`` accumulate over the stream.
    """

    config: ReceiverConfig
    sample_rate_hz: float
    center_freq_hz: float
    rng: np.random.Generator
    n_dropped_transfers: int = field(default=0, init=False)
    n_dropped_samples: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sample_rate_hz) and self.sample_rate_hz > 0):
            raise ValueError("sample_rate_hz must be positive")
        cfg = self.config
        self._lo_leakage = math.sqrt(10.0 ** (cfg.lo_leakage_dbm / 10.0))
        self._amplitude_gain = 10.0 ** ((cfg.total_gain_db - cfg.dbfs_at_0db_gain_dbm) / 20.0)
        iq = iq_imbalance_matrix(cfg.iq_amplitude_db, cfg.iq_phase_deg)
        self._iq = iq.astype(np.float32)
        self._dc = (
            np.float32(cfg.dc_offset_lsb.real * LSB),
            np.float32(cfg.dc_offset_lsb.imag * LSB),
        )
        # Thermal noise (through gain and imbalance) and ADC noise are independent Gaussians:
        # draw their sum at the ADC directly, two normals a sample, shaped by a Cholesky factor.
        thermal_fs2 = (
            10.0 ** (thermal_noise_dbm(cfg.noise_figure_db, self.sample_rate_hz) / 10.0) / 2.0
        )
        thermal_fs2 *= self._amplitude_gain**2  # per rail, full-scale units
        covariance = thermal_fs2 * (iq @ iq.T) + (cfg.adc_noise_lsb * LSB) ** 2 * np.eye(2)
        self._noise_shape = np.linalg.cholesky(covariance).astype(np.float32)
        self._cycles_per_sample = (
            frequency_error_hz(self.center_freq_hz, cfg.ppm_error) / self.sample_rate_hz
        )
        fine_cycles = np.mod(
            np.arange(_ROTATOR_RUN, dtype=np.float64) * self._cycles_per_sample, 1.0
        )
        self._fine_rotator = np.exp(2j * np.pi * fine_cycles)
        self._drop_key = np.uint64(self.rng.integers(0, 2**63, dtype=np.int64))
        self._started = False

    def _rotator(self, t0_sample: int, n: int) -> npt.NDArray[np.complex64]:
        """``exp(2j*pi*shift*k/rate)`` for absolute samples ``k = t0 .. t0+n-1``.

        Factored as a coarse phase per run of ``_ROTATOR_RUN`` samples times a fine
        table, so the value at ``k`` depends on ``k`` only (any block split gives the
        same bytes) and the cost is one complex multiply per sample instead of an exp.
        """
        run = _ROTATOR_RUN
        first, last = t0_sample // run, (t0_sample + n - 1) // run
        coarse_cycles = np.mod(
            np.arange(first, last + 1, dtype=np.float64) * (self._cycles_per_sample * run), 1.0
        )
        coarse = np.exp(2j * np.pi * coarse_cycles)
        table = (
            np.multiply(coarse[:, None], self._fine_rotator[None, :])
            .astype(np.complex64)
            .reshape(-1)
        )
        start = t0_sample - first * run
        return table[start : start + n]

    @property
    def frequency_shift_hz(self) -> float:
        """Where a signal at true offset 0 appears (see :func:`frequency_error_hz`)."""
        return frequency_error_hz(self.center_freq_hz, self.config.ppm_error)

    @property
    def noise_floor_dbfs(self) -> float:
        return noise_floor_dbfs(self.config, self.sample_rate_hz)

    def process(self, incident: npt.ArrayLike, t0_sample: int) -> tuple[npt.NDArray[np.uint8], int]:
        """cu8 bytes ``(2 * n_kept,)`` for the field ``incident`` ``(n,)`` (sqrt(mW)) from sample ``t0_sample``.

        Returns the bytes and the number of samples lost to dropped transfers in
        this block (``n - n_kept``). ``incident`` is not modified. The noise is drawn
        from ``rng`` in stream order: :meth:`adc_noise`, then :meth:`digitize`.
        """
        x = np.asarray(incident)
        if x.ndim != 1:
            raise ValueError(f"incident must be one-dimensional, got shape {x.shape}")
        n = x.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.uint8), 0
        raw = self.digitize(x, t0_sample, self.adc_noise(n))
        keep = self.drop_transfers(t0_sample, n)
        if keep is None:
            return raw, 0
        return raw.reshape(n, 2)[keep].reshape(-1), int(n - np.count_nonzero(keep))

    def adc_noise(self, n: int, rng: np.random.Generator | None = None) -> npt.NDArray[np.complex64]:
        """``(n,)`` samples of what the ADC adds to the signal: thermal noise (through gain and
        I/Q imbalance), ADC noise and DC offset, in full-scale units, before quantization.

        Drawn from ``rng`` (default the model's own stream). :class:`NoiseBank` draws it once
        and replays it, the cheap source of a live simulated dongle.
        """
        gen = self.rng if rng is None else rng
        shape = self._noise_shape
        z = gen.standard_normal(2 * n, dtype=np.float32).view(np.complex64)
        z1, z2 = z.real, z.imag
        noise = np.empty(n, dtype=np.complex64)
        noise.real = self._dc[0] + shape[0, 0] * z1
        noise.imag = self._dc[1] + shape[1, 0] * z1 + shape[1, 1] * z2
        return noise

    def digitize(self, incident: npt.ArrayLike, t0_sample: int,
                 noise: npt.NDArray[np.complex64]) -> npt.NDArray[np.uint8]:
        """cu8 bytes ``(2 * n,)`` for the field ``incident`` ``(n,)`` from sample ``t0_sample``
        plus ``noise`` ``(n,)`` from :meth:`adc_noise`: crystal error, LO leakage, gain, I/Q
        imbalance, then 8-bit quantization (module notes, steps 1-6). No transfer is dropped."""
        field_mw = np.asarray(incident).astype(np.complex64, copy=True)
        if self._cycles_per_sample != 0.0:
            field_mw *= self._rotator(t0_sample, field_mw.shape[0])
        field_mw += np.complex64(self._lo_leakage)
        field_mw *= np.float32(self._amplitude_gain)
        m = self._iq
        i, q = field_mw.real, field_mw.imag
        digital = np.empty(field_mw.shape[0], dtype=np.complex64)
        digital.real = m[0, 0] * i + m[0, 1] * q + noise.real
        digital.imag = m[1, 0] * i + m[1, 1] * q + noise.imag
        return complex64_to_cu8(digital)

    def drop_transfers(self, t0_sample: int, n: int) -> npt.NDArray[np.bool_] | None:
        """Which of samples ``t0_sample .. t0_sample+n-1`` survive (module notes, step 7), or None
        when all do; counts the lost transfers and samples. Call once per block, in stream order."""
        keep = None
        n_lost = 0
        if self.config.drop_probability > 0.0 and n > 0:
            first = t0_sample // SAMPLES_PER_TRANSFER
            last = (t0_sample + n - 1) // SAMPLES_PER_TRANSFER
            transfers = np.arange(first, last + 1, dtype=np.int64)
            dropped = _uniform_hash(self._drop_key, transfers) < self.config.drop_probability
            if np.any(dropped):
                sample_transfer = (
                    np.arange(t0_sample, t0_sample + n, dtype=np.int64) // SAMPLES_PER_TRANSFER
                )
                keep = ~dropped[sample_transfer - first]
                n_lost = int(n - np.count_nonzero(keep))
                # A transfer split across blocks is counted by the block holding its start
                # (or by the stream's first block).
                starts = transfers[dropped] * SAMPLES_PER_TRANSFER
                counted = (starts >= t0_sample) | (not self._started)
                self.n_dropped_transfers += int(np.count_nonzero(counted))
        self._started = True
        self.n_dropped_samples += n_lost
        return keep


@dataclass
class NoiseBank:
    """A dongle's noise drawn once and replayed from random offsets: a live simulated sensor's cheap noise.

    Drawing fresh Gaussian noise and quantizing every sample is most of what a simulated
    dongle costs (about a tenth of a core at 2.4 MS/s); twelve of them in real time do not
    fit on a two-core laptop. The bank holds ``n_samples`` of :meth:`RtlSdrModel.adc_noise`
    and, once quantized, the dongle's output with no signal (``idle``). A block of output
    is then ``idle`` read from a random offset (a copy), and only the spans that carry a
    signal are digitized, against the very noise samples ``idle`` was made of. Every
    sample therefore has the model's exact distribution (noise floor, DC spike, image,
    quantization); what is lost is independence between blocks: the noise repeats, shifted,
    which no power detector can tell. Offsets come from ``rng``, so a seeded stream is
    reproducible. Not used by ``cellwatch simulate``, whose recordings keep fresh noise.
    The bank does not depend on the tuning (the LO error rotates the signal, not the noise).

    ``noise`` and ``idle_cu8`` hold ``n_samples + max_block`` samples (the start repeated at
    the end), ``idle`` the same as complex64, ``idle_rails`` the running count of I/Q
    components at the ADC rails in ``idle``.
    """

    model: RtlSdrModel
    n_samples: int
    rng: np.random.Generator
    max_block: int = 65_536

    def __post_init__(self) -> None:
        if self.n_samples < 1 or self.max_block < 1:
            raise ValueError("n_samples and max_block must be positive")
        noise = self.model.adc_noise(self.n_samples, self.rng)
        # wrapped copy of the start, so that any offset below n_samples reads max_block samples in one slice
        reps = -(-(self.n_samples + self.max_block) // self.n_samples)
        self.noise = np.tile(noise, reps)[: self.n_samples + self.max_block]
        self.idle_cu8 = self.model.digitize(np.zeros(self.noise.shape[0], np.complex64), 0, self.noise)
        self.idle = cu8_to_complex64(self.idle_cu8)
        at_rail = ((self.idle_cu8 == 0) | (self.idle_cu8 == 255)).reshape(-1, 2).sum(axis=1)
        # idle_rails[b] - idle_rails[a]: I/Q components at the ADC rails in idle samples a..b-1
        self.idle_rails = np.concatenate(([0], np.cumsum(at_rail, dtype=np.int64)))

    def offset(self) -> int:
        """A random start in the bank for the next block."""
        return int(self.rng.integers(0, self.n_samples))
