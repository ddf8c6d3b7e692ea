"""A local RTL-SDR dongle through pyrtlsdr, streamed asynchronously, every loss counted.

pyrtlsdr is imported here only, inside functions, so the rest of cellwatch runs on a
machine without librtlsdr. Install it as ``pyrtlsdr[lib]``: Debian's librtlsdr0 lacks
``rtlsdr_set_dithering``, which pyrtlsdr 0.5 binds at import.

What this module does differently from pyrtlsdr's conveniences, and why:

* bytes, not ``read_samples``: pyrtlsdr scales to complex128 as ``x/127.5 - 1``; the raw
  cu8 bytes go through :func:`dsp.iq.cu8_to_complex64`, the converter replayed files use;
* ``read_bytes_async`` into a queue of our own, not ``stream()``, whose queue drops
  buffers silently when the consumer is slow; ours counts them (``n_dropped_samples``) and
  the sample indexes skip them, and :class:`~sdr.sources.base.LiveClock` finds the buffers
  the dongle itself lost from their arrival times;
* the device is found by USB serial (``rtlsdr_get_index_by_serial``); when opened by
  index, its serial is read first, so a reconnection after an unplug finds the same dongle
  even if USB enumerates it elsewhere;
* the integer ppm correction is set only when it is not zero (librtlsdr refuses an
  unchanged value and pyrtlsdr closes the device on that error); the fraction is mixed
  in DSP;
* the centre frequency is the integer Hz requested (``get_center_freq`` rounds to kHz);
* retuning while streaming and cancelling call librtlsdr directly through pyrtlsdr's
  bindings: pyrtlsdr's setters close the device on an error, which would free it under
  the running asynchronous read.

Unplugging: librtlsdr's asynchronous read returns (often with 0, sometimes with
LIBUSB_ERROR_NO_DEVICE) when the dongle goes; either way, without a ``close()`` it is a
lost dongle: the source goes ``"retrying"`` and reopens it by serial with backoff.
"""

from __future__ import annotations

import logging
import time
from types import ModuleType
from typing import Any

import numpy as np

from sdr.sources.base import LiveSource, SourceError

logger = logging.getLogger(__name__)

DEFAULT_BUFFER_COUNT = 32  # USB transfers in flight: 32 x 27 ms of slack at 2.4 MS/s


def load_pyrtlsdr(source: str = "rtlsdr") -> ModuleType:
    """pyrtlsdr's ``rtlsdr.rtlsdr`` module (RtlSdr, LibUSBError, librtlsdr), or SourceError.

    Importing it loads librtlsdr (pyrtlsdrlib's bundled copy first, then
    ``LD_LIBRARY_PATH``/``librtlsdr.so``, then the system's), once per process.
    """
    try:
        from rtlsdr import rtlsdr as module
    except (ImportError, AttributeError, OSError) as exc:
        raise SourceError(
            source, f"pyrtlsdr/librtlsdr unavailable ({exc}); install it with: pip install 'pyrtlsdr[lib]'"
        ) from None
    if getattr(module, "RtlSdr", None) is None:
        raise SourceError(source, "pyrtlsdr runs in client-only mode (RTLSDR_CLIENT_MODE is set)")
    return module


class RtlSdrSource(LiveSource):
    """A dongle on this machine, by USB serial (preferred) or index.

    ``buffer_samples`` is the size of one USB transfer and one block (65536 samples, 27 ms
    at 2.4 MS/s); ``buffer_count`` transfers are in flight, the slack the USB side has
    before the dongle's FIFO overflows while this process is busy.
    """

    def __init__(
        self,
        *,
        serial: str | None = None,
        index: int | None = None,
        spec: str | None = None,
        sensor_id: str | None = None,
        sample_rate_hz: float | None,
        center_freq_hz: int | None,
        gain_db: float | None,
        ppm: float = 0.0,
        allow_agc: bool = False,
        bias_tee: bool = False,
        buffer_count: int = DEFAULT_BUFFER_COUNT,
        **live_options: Any,
    ) -> None:
        if serial is None and index is None:
            index = 0
        self._serial = serial
        self._index = index
        self._bias_tee = bool(bias_tee)
        self._buffer_count = int(buffer_count)
        self._device: Any = None
        self._lib: Any = None
        spec = spec or (f"rtlsdr:{serial}" if serial is not None else f"rtlsdr:{index}")
        self._sensor_id_given = sensor_id is not None
        super().__init__(
            spec,
            sensor_id=sensor_id or (serial if serial is not None else f"rtlsdr{index}"),
            sample_rate_hz=sample_rate_hz,  # type: ignore[arg-type]  # checked by LiveSource
            center_freq_hz=center_freq_hz,  # type: ignore[arg-type]
            gain_db=gain_db,
            ppm=ppm,
            allow_agc=allow_agc,
            **live_options,
        )

    @property
    def serial(self) -> str | None:
        """The dongle's USB serial (known after the first open when opened by index)."""
        return self._serial

    # -- LiveSource hooks -----------------------------------------------------------------------

    def _connect(self) -> None:
        module = load_pyrtlsdr(self._spec)
        rtl_sdr, usb_error, lib = module.RtlSdr, module.LibUSBError, module.librtlsdr
        self._lib = lib
        if self._serial is not None:
            try:
                index = rtl_sdr.get_device_index_by_serial(self._serial)
            except (usb_error, OSError):
                raise SourceError(
                    self._spec, f"no RTL-SDR with serial {self._serial!r} (connected: {self._list_serials(rtl_sdr)})"
                ) from None
        else:
            index = int(self._index or 0)
            count = int(lib.rtlsdr_get_device_count())
            if index >= count:
                raise SourceError(self._spec, f"no RTL-SDR at index {index} ({count} connected)")
            try:
                self._serial = rtl_sdr.get_device_serial_addresses()[index]
            except (usb_error, OSError, IndexError) as exc:
                raise SourceError(self._spec, f"cannot read the serial of RTL-SDR {index}: {exc}") from None
            if not self._sensor_id_given:
                self._sensor_id = self._serial
        try:
            device = rtl_sdr(device_index=index)
        except (usb_error, OSError) as exc:
            raise SourceError(self._spec, f"cannot open RTL-SDR {index}: {exc}") from None
        try:
            self._configure(device)
        except (usb_error, OSError) as exc:
            device.close()
            raise SourceError(self._spec, f"cannot configure RTL-SDR {index}: {exc}") from None
        self._device = device
        logger.info("rtlsdr_open source=%s serial=%s index=%d gain_db=%s ppm_tuner=%d ppm_dsp=%.3f",
                    self._spec, self._serial, index, self._gain_applied_db, self._ppm_int, self._ppm_frac)

    def _configure(self, device: Any) -> None:
        device.set_sample_rate(self._requested_rate_hz)
        device.set_center_freq(self._center_freq_hz)
        if self._ppm_int:
            device.set_freq_correction(self._ppm_int)
        if self._gain_requested_db is None:
            device.set_gain("auto")  # tuner AGC: only reachable with allow_agc (a listening test)
            self._gain_applied_db = None
        else:
            device.set_gain(self._gain_requested_db)  # manual mode, nearest supported step
            self._gain_applied_db = float(device.get_gain())
            if abs(self._gain_applied_db - self._gain_requested_db) > 0.05:
                logger.info("gain_snapped source=%s requested_db=%.1f applied_db=%.1f",
                            self._spec, self._gain_requested_db, self._gain_applied_db)
        device.set_agc_mode(False)  # the RTL2832's digital AGC would rescale levels too
        device.set_bias_tee(self._bias_tee)
        device.DEFAULT_ASYNC_BUF_NUMBER = self._buffer_count
        result = self._lib.rtlsdr_reset_buffer(device.dev_p)
        if result < 0:
            raise OSError(f"rtlsdr_reset_buffer returned {result}")

    def _stream(self) -> None:
        device = self._device
        if device is None or self._stopping.is_set():
            return
        device.read_bytes_async(self._on_bytes, 2 * self._buffer_samples)
        if not self._stopping.is_set():
            raise SourceError(self._spec, "the dongle stopped streaming (unplugged?)")

    def _on_bytes(self, values: Any, context: Any) -> None:
        """librtlsdr's callback, in the worker thread: time first, copy, hand over."""
        t_arrival_s = time.monotonic()
        if self._stopping.is_set():
            self._cancel()
            return
        try:
            raw = np.frombuffer(values, dtype=np.uint8).copy()  # librtlsdr reuses the buffer
            self._deliver(raw, t_arrival_s)
        except Exception:
            logger.exception("rtlsdr_callback_failed source=%s", self._spec)
            self._cancel()

    def _cancel(self) -> None:
        device = self._device
        if device is not None and device.device_opened:
            self._lib.rtlsdr_cancel_async(device.dev_p)

    def _interrupt(self) -> None:
        with self._device_lock:
            self._cancel()

    def _disconnect(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.close()

    def _send_center_freq(self, center_freq_hz: int) -> None:
        device = self._device
        if device is None or not device.device_opened:
            raise SourceError(self._spec, "dongle not open")
        result = self._lib.rtlsdr_set_center_freq(device.dev_p, int(center_freq_hz))
        if result < 0:
            raise SourceError(self._spec, f"rtlsdr_set_center_freq({center_freq_hz}) returned {result}")

    @staticmethod
    def _list_serials(rtl_sdr: Any) -> str:
        try:
            serials = rtl_sdr.get_device_serial_addresses()
        except OSError:
            return "unknown"
        return ", ".join(repr(s) for s in serials) or "none"
