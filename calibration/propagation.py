"""Indoor path loss from any point to any sensor of a site: a deterministic mean plus random parts.

The **mean** (:meth:`PropagationModel.mean_path_loss_db`) is the COST 231
multi-wall model (COST Action 231 final report, §4.7.2.2), the part a locator
may know and shares with the simulator::

    L = L_c + FSPL(d0, f) + 10·n·log10(max(d, d0) / d0)
        + s(f) · ( Σ L_wall  +  L_floor(n_f) )  -  G_antenna

* ``FSPL(d0, f) = 20·log10(f_MHz) - 27.55 + 20·log10(d0_m)``, free space at the
  reference distance (ITU-R P.525 §2.2).
* ``n = 2`` by default. ITU-R P.1238's site-general office coefficient
  (N ≈ 30 at 900 MHz, i.e. n ≈ 3) folds the walls of a typical office into the
  distance slope; here every wall and slab is modelled explicitly from the site
  file, so the distance term stays at free space and walls are not counted
  twice, as in the multi-wall model.
* ``Σ L_wall``: the losses of the walls the straight path crosses, given in the
  site file at 900 MHz (:meth:`calibration.site.Site.wall_loss_db`).
* ``L_floor(n_f) = L_f · n_f ** ((n_f + 2)/(n_f + 1) - b)`` with ``b = 0.46``:
  COST 231's multi-floor term, which grows less than linearly because paths
  through several slabs find other routes (stairwells, facades); ``"linear"``
  gives ``n_f · L_f``. ``L_f`` is the site's ``floor_loss_db``.
* ``s(f) = (f / 900 MHz) ** alpha`` scales wall and slab losses from the
  900 MHz figures of the site file. ``alpha = 0.5`` matches concrete in 3GPP
  TR 38.901 Table 7.4.3-1 (``5 + 4·f_GHz`` dB: 8.6 dB at 0.9 GHz, 12.2 dB at
  1.8 GHz, a ratio of 2**0.5); ITU-R P.2040 §3 gives concrete a conductivity
  growing as ``f**0.78``, the upper bound for a thick wall whose loss is mostly
  absorption rather than interface reflection.
* ``G_antenna``: the sensor's ``antenna_gain_dbi``, applied when the receiver is
  named by sensor index (the loss is then to the antenna connector), plus, for a
  directional antenna (``antenna_azimuth_deg``), the horizontal pattern of 3GPP
  TR 38.901 Table 7.3-1, ``A(φ) = -min(12 (φ/φ_3dB)², A_m)``, with ``φ`` the angle
  between the boresight and the direction the path *arrives* from (the corridor leg
  for the corridor route), ``φ_3dB`` the beamwidth and ``A_m`` the front-to-back
  ratio. Only the horizontal cut: paths through slabs keep their horizontal angle.

**Corridor route** (``corridor_paths``, on by default): the straight line from a
cell to a sensor down the corridor crosses every partition in between (six at
18 m on the demo prison: ~70 dB too much). Indoors the dominant path leaves the
room through its corridor wall and runs along the corridor (Wölfle &
Landstorfer's dominant-path model). The mean loss is therefore the smaller of the
straight line's and that of the route via :func:`corridor_waypoints` (the two legs'
walls and slabs, free-space spreading over the route's whole length, plus
``corridor_turn_loss_db`` for the bend). Sites without ``corridor`` zones keep the
plain multi-wall model.

The **random** parts, which a locator must cope with rather than know:

* static log-normal shadowing (:class:`ShadowingField`): one Gaussian field in
  dB per sensor and floor, with standard deviation ``shadowing_sigma_db`` and
  Gudmundson's exponential spatial correlation ``exp(-r / decorrelation_m)``
  (the correlation-distance convention of 3GPP TR 38.901 §7.5). It is a fixed
  function of (seed, sensor, position): a phone that does not move sees the same
  shadowing on every burst, and two positions 20 cm apart almost the same.
* fast fading per burst (:func:`fading_db`): Rician with factor K
  (``rician_k_db``, ``-inf`` for Rayleigh), power gains of unit mean. A burst
  much narrower than the channel's coherence bandwidth fades flat (a 200 kHz
  GSM burst indoors, where rms delay spreads of 20-50 ns give a coherence
  bandwidth of ~5 MHz); a wider one averages ``1 + floor(B / B_c)``
  independently fading sub-bands, which shrinks its spread in dB.

A site's ``[propagation]`` table overrides any default by field name; unknown
keys are an :class:`~dsp.errors.InputError` naming ``propagation.<key>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration import geometry
from calibration.site import Site
from dsp.errors import InputError

FloatArray = npt.NDArray[np.float64]

FLOOR_LOSS_MODELS = ("cost231", "linear")
_SHADOWING_CHUNK = 8192  # points per vectorized pass (keeps the (N, n_components) block in cache)


@dataclass(frozen=True)
class PropagationModel:
    """Parameters of the path-loss model; see the module notes for the equation and sources.

    ``floor_loss_db`` of ``None`` takes the site's per-slab figure. Construction
    validates every field (an :class:`InputError` naming ``propagation.<field>``).
    """

    path_loss_exponent: float = 2.0
    reference_distance_m: float = 1.0
    constant_loss_db: float = 0.0  # COST 231's L_c
    wall_reference_freq_hz: float = 900e6
    wall_loss_freq_exponent: float = 0.5
    floor_loss_db: float | None = None
    floor_loss_model: str = "cost231"
    floor_loss_b: float = 0.46
    shadowing_sigma_db: float = 4.0
    shadowing_decorrelation_m: float = 1.5
    rician_k_db: float = 3.0
    coherence_bandwidth_hz: float = 5e6
    corridor_paths: bool = True
    corridor_turn_loss_db: float = 3.0

    def __post_init__(self) -> None:
        for name, (low, high, low_open) in _NUMBER_RANGES.items():
            value = getattr(self, name)
            if value is None and name == "floor_loss_db":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(
                    None, f"propagation.{name}", f"expected a number, got {_type_name(value)}"
                )
            if math.isnan(value) or (
                math.isinf(value) and not (name == "rician_k_db" and value < 0)
            ):
                raise InputError(None, f"propagation.{name}", "must be finite")
            if value < low or (low_open and value == low) or value > high:
                bound = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
                raise InputError(None, f"propagation.{name}", f"must lie in {bound}, got {value:g}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.corridor_paths, bool):
            raise InputError(None, "propagation.corridor_paths", f"expected true or false, got {_type_name(self.corridor_paths)}")
        if self.floor_loss_model not in FLOOR_LOSS_MODELS:
            raise InputError(
                None,
                "propagation.floor_loss_model",
                f"must be one of {', '.join(FLOOR_LOSS_MODELS)}, got {self.floor_loss_model!r}",
            )

    # ------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, table: Mapping[str, Any], source: str | None = None) -> PropagationModel:
        """The model with ``table``'s entries (a site's ``[propagation]``) over the defaults."""
        if not isinstance(table, Mapping):
            raise InputError(source, "propagation", "expected a table")
        known = {f.name for f in fields(cls)}
        for key in table:
            if key not in known:
                raise InputError(source, f"propagation.{key}", "unknown key")
        try:
            return cls(**dict(table))
        except InputError as exc:
            raise exc.with_source(source) if source else exc from None

    @classmethod
    def for_site(cls, site: Site) -> PropagationModel:
        """The model a site's file asks for (its ``[propagation]`` table, possibly empty)."""
        return cls.from_dict(site.propagation, source=site.source)

    # ------------------------------------------------------------ deterministic part
    def wall_loss_scale(self, freq_hz: npt.ArrayLike) -> FloatArray:
        """Factor on the 900 MHz wall and slab losses at ``freq_hz``: ``(f / f_ref) ** alpha``."""
        f = np.asarray(freq_hz, dtype=np.float64)
        return (f / self.wall_reference_freq_hz) ** self.wall_loss_freq_exponent

    def floor_loss(self, n_floors: npt.ArrayLike, floor_loss_db: float) -> FloatArray:
        """Loss (dB, at the reference frequency) of crossing ``n_floors`` slabs of ``floor_loss_db`` each."""
        n = np.asarray(n_floors, dtype=np.float64)
        if self.floor_loss_model == "linear":
            return n * floor_loss_db
        safe = np.maximum(n, 1.0)
        exponent = (safe + 2.0) / (safe + 1.0) - self.floor_loss_b
        return np.where(n > 0, safe**exponent * floor_loss_db, 0.0)

    def free_space_reference_db(self, freq_hz: npt.ArrayLike) -> FloatArray:
        """Free-space loss at the reference distance ``d0`` (ITU-R P.525)."""
        f_mhz = np.asarray(freq_hz, dtype=np.float64) / 1e6
        return 20.0 * np.log10(f_mhz) - 27.55 + 20.0 * math.log10(self.reference_distance_m)

    def mean_path_loss_db(
        self, site: Site, tx_xyz: npt.ArrayLike, rx: npt.ArrayLike, freq_hz: npt.ArrayLike
    ) -> FloatArray:
        """Deterministic path loss ``(N,)`` in dB from ``tx_xyz`` to ``rx``.

        ``tx_xyz``: points ``(N, 3)`` or one ``(3,)`` in the site's frame (metres).
        ``rx``: points ``(N, 3)``/``(3,)`` (an isotropic receiver there), or integer
        sensor indices ``(N,)``/scalar (the sensor's antenna, its gain included).
        ``freq_hz``: scalar or ``(N,)``. Rows broadcast against each other.
        """
        tx = np.asarray(tx_xyz, dtype=np.float64)
        rx_xyz, antenna_gain_dbi = _receivers(site, rx)
        tx, rx_xyz = np.broadcast_arrays(np.atleast_2d(tx), rx_xyz)
        pattern = AntennaPattern.of(site, rx, tx.shape[0])
        n = tx.shape[0]
        freq = np.broadcast_to(np.asarray(freq_hz, dtype=np.float64), (n,))
        if np.any(~np.isfinite(freq)) or np.any(freq <= 0):
            raise ValueError("freq_hz must be positive")
        loss = self._straight_path_loss_db(site, tx, rx_xyz, freq)
        if pattern is not None:
            loss = loss - pattern.gain_db(tx, rx_xyz)
        if self.corridor_paths:
            waypoints = corridor_waypoints(site, tx)
            via = np.isfinite(waypoints[:, 0])
            if np.any(via):
                leg1 = self._straight_path_loss_db(site, tx[via], waypoints[via], freq[via], spreading=False)
                leg2 = self._straight_path_loss_db(site, waypoints[via], rx_xyz[via], freq[via], spreading=False)
                total_m = site.distance_m(tx[via], waypoints[via]) + site.distance_m(waypoints[via], rx_xyz[via])
                routed = (
                    leg1 + leg2 - self.constant_loss_db - self.free_space_reference_db(freq[via])
                    + self._spreading_db(total_m) + self.corridor_turn_loss_db
                )
                if pattern is not None:
                    routed = routed - pattern.gain_db(waypoints[via], rx_xyz[via], via)
                loss[via] = np.minimum(loss[via], routed)
        return loss - antenna_gain_dbi

    def _spreading_db(self, distance_m: FloatArray) -> FloatArray:
        d0 = self.reference_distance_m
        return 10.0 * self.path_loss_exponent * np.log10(np.maximum(distance_m, d0) / d0)

    def _straight_path_loss_db(
        self, site: Site, tx: FloatArray, rx_xyz: FloatArray, freq: FloatArray, *, spreading: bool = True
    ) -> FloatArray:
        """Multi-wall loss of the straight line tx -> rx (``spreading=False``: no distance term)."""
        slab_db = self.floor_loss_db if self.floor_loss_db is not None else site.floor_loss_db
        obstruction_db = site.wall_loss_db(tx, rx_xyz) + self.floor_loss(site.floors_crossed(tx, rx_xyz), slab_db)
        out = self.constant_loss_db + self.free_space_reference_db(freq) + self.wall_loss_scale(freq) * obstruction_db
        if spreading:
            out = out + self._spreading_db(site.distance_m(tx, rx_xyz))
        return np.asarray(out, dtype=np.float64)

    # ------------------------------------------------------------ the whole channel
    def received_power_dbm(
        self,
        site: Site,
        tx_power_dbm: npt.ArrayLike,
        tx_xyz: npt.ArrayLike,
        rx: npt.ArrayLike,
        freq_hz: npt.ArrayLike,
        *,
        shadowing: ShadowingField | None = None,
        rng: np.random.Generator | None = None,
        bandwidth_hz: float | None = None,
    ) -> FloatArray:
        """Power ``(N,)`` at each receiver: transmit power minus the mean loss, the shadowing
        (when a field is given; ``rx`` must then be sensor indices) and plus one fast-fading
        draw per row (when ``rng`` is given)."""
        loss = self.mean_path_loss_db(site, tx_xyz, rx, freq_hz)
        power = np.asarray(tx_power_dbm, dtype=np.float64) - loss
        if shadowing is not None:
            sensors = np.asarray(rx)
            if not np.issubdtype(sensors.dtype, np.integer):
                raise ValueError("shadowing needs rx given as sensor indices")
            tx = np.broadcast_to(
                np.atleast_2d(np.asarray(tx_xyz, dtype=np.float64)), (loss.shape[0], 3)
            )
            power = power - shadowing.sample(np.broadcast_to(sensors, loss.shape), tx)
        if rng is not None:
            power = power + fading_db(
                rng,
                loss.shape[0],
                self.rician_k_db,
                bandwidth_hz=bandwidth_hz,
                coherence_bandwidth_hz=self.coherence_bandwidth_hz,
            )
        return np.asarray(power, dtype=np.float64)


# Valid ranges: (low, high, low bound excluded).
_NUMBER_RANGES: dict[str, tuple[float, float, bool]] = {
    "corridor_turn_loss_db": (0.0, 40.0, False),
    "path_loss_exponent": (1.0, 6.0, False),
    "reference_distance_m": (0.0, 100.0, True),
    "constant_loss_db": (-50.0, 100.0, False),
    "wall_reference_freq_hz": (0.0, 1e11, True),
    "wall_loss_freq_exponent": (0.0, 3.0, False),
    "floor_loss_db": (0.0, 100.0, False),
    "floor_loss_b": (0.0, 2.0, False),
    "shadowing_sigma_db": (0.0, 20.0, False),
    "shadowing_decorrelation_m": (0.0, 1000.0, True),
    "rician_k_db": (-math.inf, 40.0, False),
    "coherence_bandwidth_hz": (0.0, 1e10, True),
}


def _type_name(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "an array", dict: "a table"}.get(
        type(value), type(value).__name__
    )


def _receivers(site: Site, rx: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Receiver points ``(N, 3)`` and antenna gains ``(N,)`` from points or sensor indices."""
    array = np.asarray(rx)
    if np.issubdtype(array.dtype, np.integer) and array.ndim <= 1:
        indices = np.atleast_1d(array)
        _check_sensor_indices(site, indices)
        gains = np.array([s.antenna_gain_dbi for s in site.sensors], dtype=np.float64)
        return site.sensor_xyz()[indices], gains[indices]
    points = np.atleast_2d(np.asarray(rx, dtype=np.float64))
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(
            f"rx must be points (N, 3) or sensor indices (N,), got shape {array.shape}"
        )
    return points, np.zeros(points.shape[0])


@dataclass(frozen=True)
class AntennaPattern:
    """Per-row horizontal antenna patterns of the receiving sensors (rows of omni antennas: 0 dB)."""

    azimuth_rad: FloatArray  # NaN: omnidirectional
    beamwidth_deg: FloatArray
    front_to_back_db: FloatArray

    @classmethod
    def of(cls, site: Site, rx: npt.ArrayLike, n_rows: int) -> AntennaPattern | None:
        array = np.asarray(rx)
        if not (np.issubdtype(array.dtype, np.integer) and array.ndim <= 1):
            return None
        if all(s.antenna_azimuth_deg is None for s in site.sensors):
            return None
        indices = np.broadcast_to(np.atleast_1d(array), (n_rows,))
        azimuth = np.array([math.nan if s.antenna_azimuth_deg is None else math.radians(s.antenna_azimuth_deg)
                            for s in site.sensors])
        beamwidth = np.array([s.antenna_beamwidth_deg for s in site.sensors])
        ratio = np.array([s.antenna_front_to_back_db for s in site.sensors])
        return cls(azimuth[indices], beamwidth[indices], ratio[indices])

    def gain_db(self, source_xyz: FloatArray, rx_xyz: FloatArray, rows: npt.NDArray[np.bool_] | None = None) -> FloatArray:
        """Pattern gain (<= 0 dB) toward ``source_xyz``, the point the path arrives from."""
        azimuth = self.azimuth_rad if rows is None else self.azimuth_rad[rows]
        beamwidth = self.beamwidth_deg if rows is None else self.beamwidth_deg[rows]
        ratio = self.front_to_back_db if rows is None else self.front_to_back_db[rows]
        d = source_xyz[:, :2] - rx_xyz[:, :2]
        arrival = np.arctan2(d[:, 1], d[:, 0])
        off_deg = np.degrees(np.abs(np.angle(np.exp(1j * (arrival - azimuth)))))
        gain = -np.minimum(12.0 * (off_deg / beamwidth) ** 2, ratio)
        return np.where(np.isfinite(azimuth), gain, 0.0)


def _check_sensor_indices(site: Site, indices: npt.NDArray[np.integer[Any]]) -> None:
    if indices.size and (indices.min() < 0 or indices.max() >= len(site.sensors)):
        raise IndexError(f"sensor index out of range 0..{len(site.sensors) - 1}")


class ShadowingField:
    """Static log-normal shadowing: a seeded Gaussian random field (dB) per sensor and floor.

    Each (sensor, floor) field is a sum of ``n_components`` cosines with random
    phases and random wave vectors drawn from the 2-D spectrum of the exponential
    correlation ``exp(-r / decorrelation_m)``: the radial wavenumber has CDF
    ``1 - (1 + (k·L)**2) ** -0.5``, inverted in closed form. The field at a point
    depends only on (seed, sensor, floor, x, y): repeated calls, any batching and
    any order give the same values, and nothing is stored per point. Floors get
    independent fields (a slab changes the path entirely).

    ``model`` supplies ``shadowing_sigma_db`` and ``shadowing_decorrelation_m``;
    ``sigma_db`` and ``decorrelation_m`` override them.
    """

    def __init__(
        self,
        site: Site,
        model: PropagationModel | None = None,
        seed: int = 0,
        *,
        sigma_db: float | None = None,
        decorrelation_m: float | None = None,
        n_components: int = 128,
    ) -> None:
        base = model if model is not None else PropagationModel()
        self.site = site
        self.sigma_db = float(base.shadowing_sigma_db if sigma_db is None else sigma_db)
        self.decorrelation_m = float(
            base.shadowing_decorrelation_m if decorrelation_m is None else decorrelation_m
        )
        if not (math.isfinite(self.sigma_db) and self.sigma_db >= 0):
            raise ValueError("sigma_db must be >= 0")
        if not (math.isfinite(self.decorrelation_m) and self.decorrelation_m > 0):
            raise ValueError("decorrelation_m must be > 0")
        if int(seed) < 0:
            raise ValueError("seed must be >= 0")
        if n_components < 1:
            raise ValueError("n_components must be >= 1")
        self.seed = int(seed)
        self.n_components = int(n_components)
        self._components: dict[tuple[int, int], tuple[FloatArray, FloatArray, FloatArray]] = {}

    def _field(self, sensor_index: int, floor: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Wave vectors ``kx, ky`` (rad/m) and phases of one (sensor, floor) field, memoized."""
        key = (sensor_index, floor)
        if key not in self._components:
            floor_code = 2 * floor if floor >= 0 else -2 * floor - 1  # SeedSequence wants >= 0
            rng = np.random.default_rng(
                np.random.SeedSequence([self.seed, sensor_index, floor_code])
            )
            u = rng.random(self.n_components)
            k = np.sqrt((1.0 - u) ** -2 - 1.0) / self.decorrelation_m
            direction = rng.uniform(0.0, 2.0 * np.pi, self.n_components)
            phase = rng.uniform(0.0, 2.0 * np.pi, self.n_components)
            self._components[key] = (k * np.cos(direction), k * np.sin(direction), phase)
        return self._components[key]

    def sample(self, sensor_index: npt.ArrayLike, xyz: npt.ArrayLike) -> FloatArray:
        """Shadowing ``(N,)`` in dB (add it to the path loss) of the paths from ``xyz`` to the sensors.

        ``sensor_index``: int or ``(N,)``; ``xyz``: ``(N, 3)`` or ``(3,)`` metres.
        """
        points = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"xyz must have shape (N, 3), got {points.shape}")
        sensors = np.asarray(sensor_index)
        if not np.issubdtype(sensors.dtype, np.integer):
            raise ValueError("sensor_index must hold integers")
        sensors, _ = np.broadcast_arrays(np.atleast_1d(sensors), points[:, 0])
        n = sensors.shape[0]
        if points.shape[0] == 1 and n > 1:
            points = np.broadcast_to(points, (n, 3))
        _check_sensor_indices(self.site, sensors)
        out = np.zeros(n, dtype=np.float64)
        if self.sigma_db == 0.0 or n == 0:
            return out
        floors = self.site.floor_of_z(points[:, 2])
        groups, group_of = np.unique(
            np.stack([sensors, floors], axis=1), axis=0, return_inverse=True
        )
        amplitude = self.sigma_db * math.sqrt(2.0 / self.n_components)
        for g, (sensor, floor) in enumerate(groups):  # loop over (sensor, floor) fields, not points
            rows = np.flatnonzero(group_of.reshape(-1) == g)
            kx, ky, phase = self._field(int(sensor), int(floor))
            for start in range(0, rows.size, _SHADOWING_CHUNK):
                chunk = rows[start : start + _SHADOWING_CHUNK]
                arg = np.outer(points[chunk, 0], kx) + np.outer(points[chunk, 1], ky) + phase
                out[chunk] = amplitude * np.sum(np.cos(arg), axis=1)
        return out


def fading_db(
    rng: np.random.Generator,
    n: int,
    k_factor_db: float = 3.0,
    *,
    bandwidth_hz: float | None = None,
    coherence_bandwidth_hz: float = 5e6,
) -> FloatArray:
    """``n`` fast-fading power gains in dB, Rician with factor K (``-inf`` dB: Rayleigh), unit mean.

    Each draw is ``|sqrt(K/(K+1)) + sqrt(1/(K+1))·w|**2`` with ``w`` circular
    complex Gaussian of unit power, so the mean linear gain is 1 (0 dB mean power;
    the mean in dB is below 0: -2.5 dB for Rayleigh). With ``bandwidth_hz``, the
    burst averages ``1 + floor(bandwidth_hz / coherence_bandwidth_hz)``
    independently fading sub-bands before the conversion to dB.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if math.isnan(k_factor_db) or k_factor_db == math.inf:
        raise ValueError("k_factor_db must be a number below +inf")
    n_looks = 1
    if bandwidth_hz is not None:
        if bandwidth_hz < 0 or coherence_bandwidth_hz <= 0:
            raise ValueError("bandwidth_hz must be >= 0 and coherence_bandwidth_hz > 0")
        n_looks = 1 + int(bandwidth_hz // coherence_bandwidth_hz)
    k = 0.0 if k_factor_db == -math.inf else 10.0 ** (k_factor_db / 10.0)
    line_of_sight = math.sqrt(k / (k + 1.0))
    diffuse = math.sqrt(1.0 / (k + 1.0) / 2.0)
    w = rng.standard_normal((n, n_looks, 2))
    power = (line_of_sight + diffuse * w[..., 0]) ** 2 + (diffuse * w[..., 1]) ** 2
    return 10.0 * np.log10(np.maximum(np.mean(power, axis=1), 1e-30))


CORRIDOR_KIND = "corridor"
_WAYPOINT_INSET_M = 0.3


def corridor_waypoints(site: Site, xyz: npt.ArrayLike) -> FloatArray:
    """For each point, the nearest point just inside a corridor of its floor (NaN rows: none).

    The dominant-path idea (Wölfle & Landstorfer; COST 231 §4.7): indoors, the
    strongest path from a closed room to a corridor receiver leaves through the room's
    corridor wall and runs along the corridor, not straight through every partition
    in between. The straight multi-wall line badly overestimates such losses (six
    partitions between a cell and a sensor 18 m down the corridor). The waypoint is the
    nearest point of the nearest corridor polygon on the point's floor, moved
    ``0.3 m`` inside so the path crosses the corridor wall properly; a point already in
    a corridor is its own waypoint.
    """
    points = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
    out = np.full(points.shape, np.nan)
    floors = site.floor_of_z(points[:, 2])
    corridors = [z for z in site.zones if z.kind == CORRIDOR_KIND]
    best_m = np.full(points.shape[0], np.inf)
    for corridor in corridors:
        rows = np.flatnonzero(floors == corridor.floor)
        if rows.size == 0:
            continue
        xy = points[rows, :2]
        poly = corridor.polygon
        q, d_m = geometry.nearest_on_segments(xy, *geometry.polygon_edges(poly))
        inside = geometry.points_in_polygon(xy, poly)
        direction = q - xy
        norm = np.linalg.norm(direction, axis=1, keepdims=True)
        step = np.where(norm > 1e-9, direction / np.maximum(norm, 1e-9), 0.0)
        waypoint = np.where(inside[:, None], xy, q + _WAYPOINT_INSET_M * step)
        d_m = np.where(inside, 0.0, d_m)
        better = d_m < best_m[rows]
        best_m[rows[better]] = d_m[better]
        out[rows[better], :2] = waypoint[better]
        out[rows[better], 2] = points[rows[better], 2]
    return out
